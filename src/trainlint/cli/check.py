"""``trainlint check``: its options, and turning them into a run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from trainlint.cache import unusable_reason
from trainlint.cli import base
from trainlint.cli.base import EXIT_FAILURE, EXIT_FINDINGS, EXIT_OK, Failure
from trainlint.cli.running import checked, record_baseline, report_results, show_diff
from trainlint.config import (
    FORMATS,
    Config,
    ConfigError,
    RuleSelection,
    find_configs,
    load_config,
    path_problem,
    resolve_selection,
)
from trainlint.discovery import DEFAULT_EXCLUDES, discover
from trainlint.engine import RunOptions
from trainlint.options import OptionError, bounded_jobs, enter_a_directory, warn
from trainlint.rule import Severity

_SEVERITIES = click.Choice(["info", "warning", "error"], case_sensitive=False)
_CODES_HELP = "Comma-separated codes, prefixes (TL1) or ALL; repeatable."


@click.command()
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
    "--slicing/--no-slicing",
    default=False,
    envvar="TRAINLINT_SLICING",
    help="Parse only the top-level blocks a selected rule can care about (experimental; the "
    "findings are the same).  [default: no-slicing]",
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
    registry = base.registry()
    paths = paths or (Path("."),)
    known = list(registry)
    try:
        enter_a_directory(paths)
    except OptionError as exc:
        raise Failure(str(exc)) from None
    quiet = opts["quiet"]
    try:
        for option in ("output", "cache_dir"):
            problem = opts[option] is not None and path_problem(opts[option])
            if problem:
                raise ConfigError(f"--{option.replace('_', '-')} {problem}")
        config = _load_config(opts["config_path"], paths, known, quiet)
        selection = RuleSelection(
            base.codes(opts["select"], known, "--select") if opts["select"] else None,
            base.codes(opts["ignore"], known, "--ignore"),
            base.codes(opts["extend_select"], known, "--extend-select"),
        )
    except ConfigError as exc:
        raise Failure(str(exc)) from None
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
        # Fixes are computed on, and applied to, whole trees.
        slicing=opts["slicing"] and not (opts["fix"] or opts["diff"] or opts["add_noqa"]),
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
        record_baseline(baseline_path, found, options, opts["quiet"])
    if opts["diff"]:
        sys.exit(show_diff(found, options, opts["unsafe_fixes"]))
    results = checked(found, options, opts, baseline_path)
    ran = {code: registry[code] for code in codes if code in registry}  # reports list these
    summary = report_results(
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
