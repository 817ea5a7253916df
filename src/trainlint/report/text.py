"""Human output: findings grouped by file, the source line with a marker, the fix, a summary."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from trainlint import sources
from trainlint.report import Reporter, Summary
from trainlint.rule import Severity

if TYPE_CHECKING:
    from trainlint.engine import FileResult

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _source_lines(result: FileResult) -> list[str]:
    try:
        return sources.load(result.path, max_bytes=0).text.splitlines()
    except (sources.SourceError, sources.SkippedFile):
        return []


class TextReporter(Reporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        color = self.color
        if color is None:
            color = self.stream.isatty() and "NO_COLOR" not in os.environ
        self.console = Console(
            file=self.stream,
            force_terminal=color,
            no_color=not color,
            highlight=False,
            soft_wrap=True,
            width=10_000 if not color else None,
        )

    def on_file(self, result: FileResult) -> None:
        out = self.console.print
        if result.error:
            line = f":{result.error_line}" if result.error_line else ""
            out(
                f"[bold red]error[/]: [bold]{escape(result.display)}{line}[/]: {escape(result.error)}"
            )
        if not result.findings or self.quiet:
            return
        lines = _source_lines(result)
        for finding in result.findings:
            style = _STYLE[finding.severity]
            out(
                f"[bold]{escape(finding.path)}:{finding.line}:{finding.column}:[/] "
                f"[{style}]{finding.code}[/] [{style}]\\[{finding.severity.label}][/] "
                f"{escape(finding.message)}"
            )
            if 0 < finding.line <= len(lines):
                text = lines[finding.line - 1].expandtabs(1)
                start = finding.column - 1
                end = finding.end_column - 1 if finding.end_line == finding.line else len(text)
                width = max(1, min(end, len(text)) - start)
                gutter = f"{finding.line} | "
                out(f"[dim]{gutter}[/]{escape(text)}")
                out(" " * len(gutter) + " " * start + f"[{style}]{'^' * width}[/]")
            if self.show_fixes and finding.fix:
                out(f"  [green]fix[/]: {escape(finding.fix)}")
            out("")

    def on_discovery_error(self, path: str, reason: str) -> None:
        self.console.print(f"[bold red]error[/]: [bold]{escape(path)}[/]: {escape(reason)}")

    def finish(self, summary: Summary) -> None:
        out = self.console.print
        if self.statistics and summary.by_code:
            for code, count in sorted(summary.by_code.items(), key=lambda kv: (-kv[1], kv[0])):
                rule = self.registry.get(code)
                name = rule.name if rule else ""
                out(f"{count:>5}  {code}  {name}")
            out("")
        parts = [
            f"{summary.by_severity[s]} {s.label}{'s' if summary.by_severity[s] != 1 else ''}"
            for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
            if summary.by_severity[s]
        ]
        checked = (
            f"{summary.files} file{'s' if summary.files != 1 else ''} checked "
            f"({summary.parsed} parsed, {summary.cached} cached, "
            f"{summary.files - summary.parsed - summary.cached - summary.skipped} not training code"
            + (f", {summary.skipped} skipped" if summary.skipped else "")
            + f") in {summary.elapsed:.2f}s"
        )
        if summary.findings:
            codes = ", ".join(f"{c}×{n}" for c, n in sorted(summary.by_code.items()))
            out(
                f"[bold]Found {summary.findings} problem{'s' if summary.findings != 1 else ''}[/] "
                f"({', '.join(parts)}; {codes}). {checked}."
            )
        elif not self.quiet:
            out(f"[bold green]All checks passed![/] {checked}.")
        for path, reason in summary.skipped_files:
            out(f"[yellow]warning[/]: {escape(path)}: {escape(reason)}")
        if summary.errors:
            out(f"[bold red]{len(summary.errors)} file(s) could not be analyzed[/] (see above).")
