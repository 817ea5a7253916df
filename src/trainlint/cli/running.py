"""What ``trainlint check`` does with the engine's results: fixes, baseline, the report."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from trainlint.catalog import RuleInfo
from trainlint.cli.base import EXIT_FINDINGS, EXIT_OK, Failure
from trainlint.discovery import Discovery
from trainlint.engine import FileResult, RunOptions, run
from trainlint.report import Summary, get_reporter
from trainlint.report.output import OutputError, check_not_an_input, report_stream


def checked(
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
        raise Failure(str(exc)) from None
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


def show_diff(found: Discovery, options: RunOptions, unsafe: bool) -> int:
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


def record_baseline(path: Path | None, found: Discovery, options: RunOptions, quiet: bool) -> None:
    from trainlint.baseline import BaselineError, write_baseline

    if path is None:
        raise Failure('--create-baseline needs --baseline FILE (or baseline = "FILE" in config)')
    results = list(run(found.files, options))
    try:
        count = write_baseline(path, [f for r in results for f in r.findings])
    except BaselineError as exc:
        raise Failure(str(exc)) from None
    for result in results:
        if result.error:
            click.echo(f"trainlint: error: {result.display}: {result.error}", err=True)
    if not quiet:
        click.echo(f"trainlint: recorded {count} findings in {path}", err=True)
    sys.exit(EXIT_OK)


def report_results(
    fmt: str,
    registry: dict[str, RuleInfo],
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
        raise Failure(str(exc)) from None
    return summary


@contextmanager
def _progress(total: int, disabled: bool) -> Iterator[Callable[[], object]]:
    """A progress bar on stderr for long runs on a terminal; yields an ``advance()``."""
    if disabled or total < 200:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True
    ) as progress:
        task = progress.add_task("checking", total=total)
        yield lambda: progress.advance(task)
