"""The command line: thin glue between click options, the engine and a reporter."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path

import click
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from trainlint import __version__
from trainlint.config import FORMATS, Config, ConfigError, check_codes, find_config, load_config
from trainlint.config import select_codes as resolve_selection
from trainlint.discovery import DEFAULT_EXCLUDES, discover
from trainlint.engine import RunOptions, run
from trainlint.report import Summary, get_reporter
from trainlint.rule import RegistryError, Rule, Severity, load_registry

EXIT_OK, EXIT_FINDINGS, EXIT_FAILURE = 0, 1, 2
_SEVERITIES = click.Choice(["info", "warning", "error"], case_sensitive=False)


def _registry() -> dict[str, type[Rule]]:
    try:
        return load_registry()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None


def _codes_option(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [c for c in value.replace(" ", ",").split(",") if c]


class _Failure(click.ClickException):
    exit_code = EXIT_FAILURE

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"trainlint: error: {self.format_message()}", err=True)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    invoke_without_command=False,
)
@click.version_option(__version__, "-V", "--version", prog_name="trainlint")
def main() -> None:
    """trainlint: finds silent bugs in PyTorch and TensorFlow/Keras training loops.

    \b
    Examples:
      trainlint check .                     analyze a repository
      trainlint check train.py --select TL1 only the gradient-cycle rules
      trainlint check . --format sarif -o trainlint.sarif
      trainlint rules                       list every rule
      trainlint explain TL101               what a rule finds, why, and the fix
    """


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--select", help="Rule codes or prefixes to enable (e.g. TL101,TL2 or ALL).")
@click.option("--ignore", help="Rule codes or prefixes to disable.")
@click.option("--extend-select", help="Codes or prefixes to enable on top of the selection.")
@click.option(
    "--fail-on",
    type=_SEVERITIES,
    help="Exit 1 when a finding at or above this severity is found. [default: warning]",
)
@click.option("--format", "output_format", type=click.Choice(FORMATS), help="Output format.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the report to FILE.",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the results cache.")
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Cache directory. [default: .trainlint_cache]",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=0), default=0, help="Processes to use (0: one per CPU)."
)
@click.option("-q", "--quiet", is_flag=True, help="Print findings only, no summary or progress.")
@click.option(
    "--show-fixes/--no-show-fixes", default=True, help="Show the suggested fix under each finding."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use this config file instead of searching for one.",
)
@click.option(
    "--exit-zero", is_flag=True, help="Exit 0 even when findings are found (2 still means failure)."
)
@click.option("--statistics", is_flag=True, help="Print the number of findings per rule.")
@click.option(
    "--include-notebooks", is_flag=True, default=None, help="Also analyze .ipynb notebooks."
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Force or disable colour (default: on a terminal, unless NO_COLOR is set).",
)
def check(
    paths: tuple[Path, ...],
    select: str | None,
    ignore: str | None,
    extend_select: str | None,
    fail_on: str | None,
    output_format: str | None,
    output: Path | None,
    no_cache: bool,
    cache_dir: Path | None,
    jobs: int,
    quiet: bool,
    show_fixes: bool,
    config_path: Path | None,
    exit_zero: bool,
    statistics: bool,
    include_notebooks: bool | None,
    color: bool | None,
) -> None:
    """Analyze PATHS (files or directories; default: the current directory).

    Exit status: 0 when nothing at or above --fail-on was found, 1 when something was,
    2 when trainlint could not do its job (bad usage or configuration, or a file that could
    not be analyzed; every other file is still analyzed and reported).
    """
    registry = _registry()
    paths = paths or (Path("."),)
    try:
        config = _load_config(config_path, paths, registry)
        known = list(registry)
        cli_select = check_codes(_codes_option(select) or [], known, "--select") if select else None
        cli_ignore = check_codes(_codes_option(ignore) or [], known, "--ignore")
        cli_extend = check_codes(_codes_option(extend_select) or [], known, "--extend-select")
    except ConfigError as exc:
        raise _Failure(str(exc)) from None
    codes = resolve_selection(
        known,
        cli_select if cli_select is not None else config.select,
        [*config.ignore, *cli_ignore],
        [*config.extend_select, *cli_extend],
    )
    threshold = Severity.parse(fail_on) if fail_on else config.fail_on
    root = Path.cwd()
    cache_location = None
    if not no_cache:
        cache_location = cache_dir or config.cache_dir or (config.root / ".trainlint_cache")
    options = RunOptions(
        codes=tuple(codes),
        severity_overrides=tuple(sorted(config.severity.items())),
        per_file_ignores=tuple(
            (_relative_glob(glob, config.root, root), frozenset(c))
            for glob, c in config.per_file_ignores.items()
        ),
        max_file_size=config.max_file_size,
        cache_dir=cache_location,
        jobs=jobs,
        root=root,
    )
    found = discover(
        paths,
        root=config.root,
        exclude=config.exclude if config.exclude is not None else DEFAULT_EXCLUDES,
        extend_exclude=config.extend_exclude,
        include_notebooks=include_notebooks
        if include_notebooks is not None
        else config.include_notebooks,
        respect_gitignore=config.respect_gitignore,
    )
    fmt = output_format or config.format
    summary = Summary()
    failed = _report(
        fmt, output, registry, found, options, summary, show_fixes, quiet, statistics, color
    )
    failed = failed or bool(summary.errors) or bool(found.errors)
    if failed:
        sys.exit(EXIT_FAILURE)
    over = sum(n for severity, n in summary.by_severity.items() if severity >= threshold)
    sys.exit(EXIT_FINDINGS if over and not exit_zero else EXIT_OK)


def _relative_glob(glob: str, config_root: Path, cwd: Path) -> str:
    """per-file-ignores globs are relative to the config file; findings to the cwd."""
    if glob.startswith(("*", "/")) or config_root == cwd:
        return glob
    try:
        prefix = config_root.relative_to(cwd).as_posix()
    except ValueError:
        return glob
    return f"{prefix}/{glob}"


def _load_config(config_path: Path | None, paths, registry) -> Config:
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"{config_path}: config file not found")
        return load_config(config_path, registry)
    found = find_config(paths[0])
    return load_config(found, registry) if found else Config()


def _report(
    fmt, output, registry, found, options, summary, show_fixes, quiet, statistics, color
) -> bool:
    try:
        stream = open(output, "w", encoding="utf-8") if output else nullcontext(sys.stdout)
    except OSError as exc:
        raise _Failure(f"{output}: cannot write report: {exc.strerror}") from None
    with stream as out:
        reporter = get_reporter(fmt)(
            out,
            registry,
            show_fixes=show_fixes,
            quiet=quiet,
            statistics=statistics,
            color=color if output is None else False,
        )
        for path, reason in found.errors:
            reporter.on_discovery_error(str(path), reason)
        progress = _progress(len(found.files), quiet or not sys.stderr.isatty())
        with progress:
            task = progress.add_task("checking", total=len(found.files)) if progress else None
            for result in run(found.files, options):
                summary.add(result)
                reporter.on_file(result)
                if task is not None:
                    progress.advance(task)
        reporter.finish(summary)
    return False


class _NoProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def __bool__(self) -> bool:
        return False


def _progress(total: int, disabled: bool):  # type: ignore[no-untyped-def]
    if disabled or total < 200:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


@main.command("rules")
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json", "markdown"]), default="text"
)
def list_rules(output_format: str) -> None:
    """List every rule: code, name, severity, frameworks and what it finds."""
    registry = _registry()
    if output_format == "json":
        import json

        click.echo(json.dumps([_rule_row(r) for r in registry.values()], indent=2))
        return
    if output_format == "markdown":
        click.echo(rules_markdown(registry))
        return
    table = Table(box=None, header_style="bold")
    for column in ("code", "name", "severity", "frameworks", "finds"):
        table.add_column(column)
    for rule in registry.values():
        row = _rule_row(rule)
        table.add_row(row["code"], row["name"], row["severity"], row["frameworks"], row["summary"])
    Console(no_color="NO_COLOR" in os.environ, soft_wrap=False).print(table)


def _rule_row(rule: type[Rule]) -> dict[str, str]:
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity.label,
        "frameworks": ",".join(rule.frameworks),
        "summary": rule.one_line(),
    }


def rules_markdown(registry: dict[str, type[Rule]]) -> str:
    lines = [
        "| Code | Name | Severity | Frameworks | What it finds |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in registry.values():
        row = _rule_row(rule)
        lines.append(
            f"| {row['code']} | {row['name']} | {row['severity']} | {row['frameworks']} | {row['summary']} |"
        )
    return "\n".join(lines)


@main.command()
@click.argument("code")
def explain(code: str) -> None:
    """Show a rule's documentation: what it finds, why it is a bug, and the fix."""
    registry = _registry()
    wanted = code.strip().upper()
    rule = registry.get(wanted) or next(
        (r for r in registry.values() if r.name == code.strip().lower()), None
    )
    if rule is None:
        raise _Failure(f"unknown rule {code!r}; `trainlint rules` lists them")
    header = (
        f"# {rule.code} {rule.name}\n\n*{rule.severity.label} · {', '.join(rule.frameworks)}*\n\n"
    )
    console = Console(no_color="NO_COLOR" in os.environ)
    if sys.stdout.isatty():
        console.print(Markdown(header + rule.documentation()))
    else:
        click.echo(header + rule.documentation())
