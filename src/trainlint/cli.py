"""The command line: thin glue between click options, the engine and a reporter."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from trainlint import __version__
from trainlint.cache import unusable_reason
from trainlint.config import (
    FORMATS,
    Config,
    ConfigError,
    RuleSelection,
    check_codes,
    find_configs,
    load_config,
    path_problem,
    resolve_selection,
)
from trainlint.discovery import DEFAULT_EXCLUDES, Discovery, discover
from trainlint.engine import FileResult, RunOptions, run
from trainlint.options import OptionError, bounded_jobs, enter_a_directory, warn
from trainlint.report import Summary, get_reporter
from trainlint.report.output import OutputError, check_not_an_input, report_stream
from trainlint.rule import RegistryError, Rule, Severity, load_registry

EXIT_OK, EXIT_FINDINGS, EXIT_FAILURE = 0, 1, 2
_SEVERITIES = click.Choice(["info", "warning", "error"], case_sensitive=False)
_TRACEBACK_VARIABLE = "TRAINLINT_TRACEBACK"


class _Failure(click.ClickException):
    """trainlint could not do its job: one line on stderr, exit 2."""

    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"trainlint: error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns any unexpected exception into one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C is not "findings found" (exit 1): 130, as shells do
            click.echo("trainlint: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `trainlint check | head`: the reader left, stop quietly
            _silence_stdout()
            sys.exit(EXIT_FAILURE)
        except Exception as exc:
            if os.environ.get(_TRACEBACK_VARIABLE):
                raise
            raise _Failure(
                f"internal error: {type(exc).__name__}: {exc} "
                f"(please report it; {_TRACEBACK_VARIABLE}=1 shows the traceback)"
            ) from None


def _silence_stdout() -> None:
    with suppress(OSError, ValueError, AttributeError):  # not a real descriptor under test
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _registry() -> dict[str, type[Rule]]:
    try:
        return load_registry()
    except RegistryError as exc:  # a broken rule pack: trainlint cannot do its job (exit 2)
        raise _Failure(str(exc)) from None


def _codes(values: tuple[str, ...], known: list[str], option: str) -> list[str]:
    """``--select TL1,TL2 --select TL3`` -> checked codes/prefixes."""
    codes = [c for value in values for c in value.replace(" ", ",").split(",") if c]
    if option == "--select" and not codes:
        # `--select "$RULES"` with an unset variable must not turn the gate off silently.
        raise ConfigError(f"{option}: no rule code given (an empty value selects no rule)")
    return check_codes(codes, known, option)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "-V", "--version", prog_name="trainlint", message="%(prog)s %(version)s"
)
def main() -> None:
    """trainlint: finds silent bugs in PyTorch and TensorFlow/Keras training loops.

    \b
    Examples:
      trainlint check .                     analyze a repository
      trainlint check train.py --select TL1 only the gradient-cycle rules
      trainlint check . --format sarif -o trainlint.sarif
      trainlint rules                       list every rule
      trainlint explain TL101               what a rule finds, why, and the fix
      trainlint inspect train.py            what trainlint saw in one file
    """


_CODES_HELP = "Comma-separated codes, prefixes (TL1) or ALL; repeatable."


@main.command(short_help="Analyze files and directories (default: .).")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, readable=False))
@click.option(
    "--select", multiple=True, help=f"Rules to run instead of the default (all). {_CODES_HELP}"
)
@click.option("--ignore", multiple=True, help=f"Rules to leave out. {_CODES_HELP}")
@click.option(
    "--extend-select", multiple=True, help=f"Rules to add to the selection. {_CODES_HELP}"
)
@click.option(
    "--fail-on",
    type=_SEVERITIES,
    help="Exit 1 when a finding at or above this severity is reported.  [default: warning]",
)
@click.option(
    "--format", "output_format", type=click.Choice(FORMATS), help="Report format.  [default: text]"
)
@click.option(
    "-o",
    "--output",
    type=click.Path(readable=False),
    help="Write the report to FILE (replaced only once the report is complete).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write the results cache.")
@click.option(
    "--no-summaries",
    is_flag=True,
    envvar="TRAINLINT_NO_SUMMARIES",
    help="Analyze each file on its own: do not read the project's other modules.",
)
@click.option(
    "--cache-dir",
    type=click.Path(readable=False),
    help="Where the results cache lives.  [default: .trainlint_cache next to the config]",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    help="Worker processes; 0 means one per CPU.  [default: 0]",
)
@click.option("-q", "--quiet", is_flag=True, help="Report findings and errors only: no summary.")
@click.option(
    "--show-fixes/--no-show-fixes",
    default=True,
    help="Show the suggested fix under each finding.  [default: show]",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, readable=False),
    help="Use this pyproject.toml or trainlint.toml instead of searching upwards from PATHS.",
)
@click.option(
    "--exit-zero",
    is_flag=True,
    help="Exit 0 even when findings are reported (errors still exit 2).",
)
@click.option("--statistics", is_flag=True, help="Also print how many findings each rule produced.")
@click.option(
    "--include-notebooks",
    is_flag=True,
    default=None,
    help="Also analyze Jupyter notebooks (.ipynb) found in directories.",
)
@click.option(
    "--force-exclude",
    is_flag=True,
    help="Apply excludes to files named on the command line too (for pre-commit hooks).",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Force colour on or off.  [default: on a terminal, unless NO_COLOR is set]",
)
@click.option(
    "--fix", is_flag=True, help="Apply the safe fixes in place, then report what remains."
)
@click.option(
    "--unsafe-fixes",
    is_flag=True,
    help="With --fix or --diff: also apply fixes that may change behaviour beyond the bug.",
)
@click.option(
    "--diff",
    is_flag=True,
    help="Print what --fix would change as a unified diff; change nothing "
    "(exit 1 when there is something to fix).",
)
@click.option(
    "--add-noqa",
    is_flag=True,
    help="Append `# noqa: CODE` to every line with a finding (keeps existing comments).",
)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Report only findings not recorded in this baseline file.",
)
@click.option(
    "--create-baseline",
    is_flag=True,
    help="With --baseline: record today's findings in it and exit 0.",
)
def check(paths: tuple[Path, ...], **opts: Any) -> None:
    """Analyze PATHS: files and directories (default: the current directory).

    Directories are searched for .py files (and .ipynb with --include-notebooks), honouring
    .gitignore and skipping virtualenvs, build/, dist/, caches and configured excludes; a file
    named explicitly is always analyzed. Options override the [tool.trainlint] configuration.

    \b
    Exit status:
      0  nothing at or above --fail-on was found
      1  something at or above --fail-on was found
      2  trainlint could not do its job: bad option or configuration, unknown rule code,
         or a file that could not be analyzed (every other file is still reported)
    """
    registry = _registry()
    paths = paths or (Path("."),)
    known = list(registry)
    try:
        enter_a_directory(paths)
    except OptionError as exc:
        raise _Failure(str(exc)) from None
    quiet = opts["quiet"]
    try:
        for option in ("output", "cache_dir"):
            problem = opts[option] is not None and path_problem(opts[option])
            if problem:
                raise ConfigError(f"--{option.replace('_', '-')} {problem}")
        config = _load_config(opts["config_path"], paths, known, quiet)
        selection = RuleSelection(
            _codes(opts["select"], known, "--select") if opts["select"] else None,
            _codes(opts["ignore"], known, "--ignore"),
            _codes(opts["extend_select"], known, "--extend-select"),
        )
    except ConfigError as exc:
        raise _Failure(str(exc)) from None
    codes = resolve_selection(known, config.selection, selection)
    cwd = Path.cwd()
    cache_dir = None
    if not opts["no_cache"]:
        given = Path(opts["cache_dir"]) if opts["cache_dir"] else None
        cache_dir = given or config.cache_dir or config.root / ".trainlint_cache"
        unusable = unusable_reason(cache_dir)
        if unusable:
            warn(f"cache directory {cache_dir} {unusable}: running without the cache", quiet)
            cache_dir = None
    options = RunOptions(
        codes=tuple(codes),
        severity_overrides=tuple(sorted(config.severity_overrides(codes).items())),
        per_file_ignores=tuple(
            (relative_glob(glob, config.root, cwd), frozenset(ignored))
            for glob, ignored in config.per_file_ignores.items()
        ),
        max_file_size=config.max_file_size,
        cache_dir=cache_dir,
        jobs=bounded_jobs(opts["jobs"], quiet),
        root=cwd,
        summaries=not opts["no_summaries"],
    )
    notebooks = opts["include_notebooks"]
    found = discover(
        paths,
        root=config.root,
        exclude=DEFAULT_EXCLUDES if config.exclude is None else config.exclude,
        extend_exclude=config.extend_exclude,
        include_notebooks=config.include_notebooks if notebooks is None else notebooks,
        respect_gitignore=config.respect_gitignore,
        force_exclude=opts["force_exclude"] or config.force_exclude,
    )
    for warning in found.warnings:
        warn(warning, quiet)
    if not found.files and not found.errors:
        warn("no Python files found under the given paths", quiet)
    baseline_path = opts["baseline_path"] or config.baseline
    if opts["create_baseline"]:
        _create_baseline(baseline_path, found, options, opts["quiet"])
    if opts["diff"]:
        sys.exit(_diff(found, options, opts["unsafe_fixes"]))
    results = _results(found, options, opts, baseline_path)
    ran = {code: registry[code] for code in codes if code in registry}  # reports list these
    summary = _report(
        opts["output_format"] or config.format, ran, found, results, len(found.files), opts
    )
    if summary.errors or found.errors:
        sys.exit(EXIT_FAILURE)
    fail_on = Severity.parse(opts["fail_on"]) if opts["fail_on"] else config.fail_on
    over = sum(n for severity, n in summary.by_severity.items() if severity >= fail_on)
    sys.exit(EXIT_FINDINGS if over and not opts["exit_zero"] else EXIT_OK)


def relative_glob(glob: str, config_root: Path, cwd: Path) -> str:
    """Re-anchor a per-file-ignores glob from the config's directory to the cwd.

    The engine matches globs against paths as displayed (relative to the cwd). A glob without
    a slash names files anywhere, and one starting with ``*`` is unanchored: both stay as they
    are; ``tests/*.py`` written next to the config becomes ``sub/tests/*.py`` or ``../tests/*.py``.
    """
    if "/" not in glob or glob.startswith("*"):
        return glob
    try:
        return Path(os.path.relpath(config_root / glob, cwd)).as_posix()
    except ValueError:  # another drive (Windows)
        return glob


def _load_config(
    config_path: Path | None, paths: tuple[Path, ...], known: list[str], quiet: bool = False
) -> Config:
    if config_path is not None:
        return load_config(config_path, known)
    found = find_configs(paths[0])
    if len(found) > 1:
        ignored = ", ".join(p.name for p in found[1:])
        warn(f"using {found[0]}; {ignored} in the same directory is ignored", quiet, "note")
    return load_config(found[0], known) if found else Config()


def _results(
    found: Discovery, options: RunOptions, opts: Any, baseline_path: Path | None
) -> Iterator[FileResult]:
    """The engine's results, after --fix/--add-noqa and the baseline when asked for."""
    results: Iterable[FileResult] = run(found.files, options)
    if opts["fix"] or opts["add_noqa"]:
        results = _fixed(results, options, opts)
    if baseline_path is None:
        yield from results
        return
    from trainlint.baseline import Baseline, BaselineError

    try:
        baseline = Baseline.load(baseline_path)
    except BaselineError as exc:
        raise _Failure(str(exc)) from None
    for result in results:
        result.findings = baseline.new_findings(result.findings)
        yield result
    if baseline.unmatched and not opts["quiet"]:
        click.echo(
            f"trainlint: {baseline.unmatched} baseline entries no longer match a finding "
            f"(fixed or changed): run --create-baseline to shrink {baseline_path}",
            err=True,
        )


def _fixed(results: Iterable[FileResult], options: RunOptions, opts: Any) -> list[FileResult]:
    from trainlint.fixrun import fix_results, write_fixed

    final, report = fix_results(
        list(results), options, unsafe=opts["unsafe_fixes"], add_noqa=opts["add_noqa"]
    )
    written = 0
    for outcome in report.changed:
        error = write_fixed(outcome)
        if error:
            click.echo(f"trainlint: error: {outcome.display}: {error}", err=True)
        else:
            written += 1
    for outcome in report.files:
        for finding, reason in outcome.skipped:
            click.echo(
                f"trainlint: {finding.path}:{finding.line}: {finding.code} fix skipped: {reason}",
                err=True,
            )
    if not opts["quiet"]:
        what = "noqa comments added" if opts["add_noqa"] else "fixed"
        line = f"trainlint: {report.fixed} {what} in {_count(written, 'file')}"
        if report.unsafe_available and not opts["add_noqa"]:
            line += f" ({report.unsafe_available} more fixable with --unsafe-fixes)"
        click.echo(line + ".", err=True)
    return final


def _diff(found: Discovery, options: RunOptions, unsafe: bool) -> int:
    from trainlint.fixes import unified_diff
    from trainlint.fixrun import fix_results

    _, report = fix_results(list(run(found.files, options)), options, unsafe=unsafe)
    for outcome in report.changed:
        click.echo(unified_diff(outcome.display, outcome.original, outcome.fixed), nl=False)
    fixes = sum(len(o.applied) for o in report.changed)
    click.echo(
        f"trainlint: {fixes} fixes would be applied to {len(report.changed)} files.", err=True
    )
    return EXIT_FINDINGS if report.changed else EXIT_OK


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("x") else "s")
    return f"{number} {noun if number == 1 else plural}"


def _create_baseline(path: Path | None, found: Discovery, options: RunOptions, quiet: bool) -> None:
    from trainlint.baseline import BaselineError, write_baseline

    if path is None:
        raise _Failure('--create-baseline needs --baseline FILE (or baseline = "FILE" in config)')
    results = list(run(found.files, options))
    try:
        count = write_baseline(path, [f for r in results for f in r.findings])
    except BaselineError as exc:
        raise _Failure(str(exc)) from None
    for result in results:
        if result.error:
            click.echo(f"trainlint: error: {result.display}: {result.error}", err=True)
    if not quiet:
        click.echo(f"trainlint: recorded {count} findings in {path}", err=True)
    sys.exit(EXIT_OK)


def _report(
    fmt: str,
    registry: dict[str, type[Rule]],
    found: Discovery,
    results: Iterable[FileResult],
    total: int,
    opts: Any,
) -> Summary:
    """Feed the reporter as results come in."""
    summary = Summary()
    output = Path(opts["output"]) if opts["output"] else None
    try:
        if output is not None:
            check_not_an_input(output, found.files)
        with report_stream(output) as stream:
            reporter = get_reporter(fmt)(
                stream,
                registry,
                show_fixes=opts["show_fixes"],
                quiet=opts["quiet"],
                statistics=opts["statistics"],
                color=opts["color"] if output is None else False,
            )
            for path, reason in found.errors:
                reporter.on_discovery_error(str(path), reason)
            with _progress(total, opts["quiet"] or not sys.stderr.isatty()) as advance:
                for result in results:
                    summary.add(result)
                    reporter.on_file(result)
                    advance()
            reporter.finish(summary)
    except OutputError as exc:
        raise _Failure(str(exc)) from None
    return summary


@contextmanager
def _progress(total: int, disabled: bool) -> Iterator[Callable[[], object]]:
    """A progress bar on stderr for long runs on a terminal; yields an ``advance()``."""
    if disabled or total < 200:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True
    ) as progress:
        task = progress.add_task("checking", total=total)
        yield lambda: progress.advance(task)


@main.command("rules", short_help="List every rule.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text: a table; json: for tools; markdown: the table README embeds.",
)
def list_rules(output_format: str) -> None:
    """List every rule: code, name, severity, frameworks and what it finds."""
    registry = _registry()
    if output_format == "json":
        click.echo(json.dumps([_rule_row(r) for r in registry.values()], indent=2))
        return
    if output_format == "markdown":
        click.echo(rules_markdown(registry))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("code", "name", "severity", "frameworks", "fix", "finds"):
        table.add_column(column, no_wrap=column != "finds")
    for rule in registry.values():
        row = _rule_row(rule)
        table.add_row(
            row["code"], row["name"], row["severity"], row["frameworks"], row["fix"], row["summary"]
        )
    terminal = sys.stdout.isatty()
    # Piped or redirected: one rule per line (greppable), however long.
    console = Console(no_color="NO_COLOR" in os.environ, width=None if terminal else 10_000)
    console.print(table)


def _rule_row(rule: type[Rule]) -> dict[str, str]:
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity.label,
        "frameworks": ",".join(rule.frameworks),
        "fix": _fix_label(rule),
        "summary": rule.one_line(),
    }


def _fix_label(rule: type[Rule]) -> str:
    """``always (safe)``, ``sometimes (unsafe)`` or ``never``."""
    if rule.fix_availability == "never":
        return "never"
    return f"{rule.fix_availability} ({rule.fix_applicability.value})"


def rules_markdown(registry: dict[str, type[Rule]]) -> str:
    """The rule table in Markdown (README embeds it; a test keeps the two in sync)."""
    columns = ("code", "name", "severity", "frameworks", "fix", "summary")
    lines = [
        "| Code | Name | Severity | Frameworks | Fix | What it finds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule in registry.values():
        row = _rule_row(rule)
        lines.append("| " + " | ".join(row[c] for c in columns) + " |")
    return "\n".join(lines)


@main.command(short_help="Show what a rule finds, why it is a bug, and the fix.")
@click.argument("code")
def explain(code: str) -> None:
    """Show a rule's documentation: what it finds, why it is a bug, an example and the fix.

    CODE is a rule code (TL101) or name (missing-call-parens).
    """
    registry = _registry()
    wanted = code.strip()
    rule = registry.get(wanted.upper()) or next(
        (r for r in registry.values() if r.name == wanted.lower()), None
    )
    if rule is None:
        try:
            check_codes([wanted], list(registry), "explain")
            message = f"{code!r} is a prefix, not a rule; `trainlint rules` lists them"
        except ConfigError as exc:
            message = f"{exc}; `trainlint rules` lists every rule"
        raise _Failure(message)
    header = (
        f"# {rule.code} {rule.name}\n\n*{rule.severity.label} · {', '.join(rule.frameworks)}"
        f" · fix: {_fix_label(rule)}*"
    )
    text = f"{header}\n\n{rule.documentation()}"
    if sys.stdout.isatty():
        from rich.markdown import Markdown  # slow to import; only needed here

        Console(no_color="NO_COLOR" in os.environ).print(Markdown(text))
    else:
        click.echo(text)


@main.command(short_help="Show what trainlint saw in one file: train steps, roles, windows.")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: for reading; json: the shape documented in docs/inspect-output.md.",
)
def inspect(file: Path, output_format: str) -> None:
    """Show what trainlint's model saw in FILE (a .py file or a notebook).

    Prints the train steps (loops that run backward and step) and eval loops (loops that call
    a model with no backward) it found; each loop's events in order with their line, kind and
    the conditions they run under (accumulation guards are marked); accumulation windows
    (guard, window length, how each backward is scaled); the roles of the names involved
    (optimizer, model, scheduler...) and the evidence for each; and what it could not
    resolve (a backward with no optimizer step it recognises, calls to functions it cannot
    see). Use it to understand a finding, or a silence.
    """
    from trainlint.inspection import InspectError, inspect_file, render_text

    try:
        report = inspect_file(file)
    except InspectError as exc:
        raise _Failure(str(exc)) from None
    if output_format == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_text(report))
