"""GitHub Actions workflow commands: each finding becomes an annotation on the pull request.

``::error file=train.py,line=8,col=5,endLine=8,endColumn=24,title=TL405 missing-call-parens::msg``

Escaping follows the Actions toolkit: in the message ``%``, CR and LF are percent-encoded;
in property values ``:`` and ``,`` are too, since they delimit the properties.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from trainlint.report import Reporter, Summary, shown
from trainlint.rule import Finding, Rule, Severity

if TYPE_CHECKING:
    from trainlint.engine import FileResult

COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}
#: Set by GitHub Actions to a file whose Markdown is shown on the run's summary page.
STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"


def escape_data(text: str) -> str:
    # Lone surrogates (non-UTF-8 file names) and control characters become visible escapes.
    text = shown(text, newlines=True)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties: object) -> str:
    """``::command key=value,...::message``, properties in the given order, None ones left out."""
    rendered = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in properties.items()
        if value is not None
    )
    head = f"{command} {rendered}" if rendered else command
    return f"::{head}::{escape_data(message)}"


def _file(path: str) -> str:
    # GitHub matches annotation paths against the repository with forward slashes.
    return PurePath(path).as_posix()


class GithubReporter(Reporter):
    def on_file(self, result: FileResult) -> None:
        for finding in result.findings:
            self.stream.write(self.annotation(finding) + "\n")
        if result.error:
            self.stream.write(
                workflow_command(
                    "error",
                    result.error,
                    file=_file(result.display),
                    line=result.error_line,
                    title="trainlint: file not analyzed",
                )
                + "\n"
            )
        for note in getattr(result, "notes", ()):
            self.stream.write(
                workflow_command(
                    "notice", note, file=_file(result.display), title="trainlint: note"
                )
                + "\n"
            )
        if result.skipped and not self.quiet:
            self.stream.write(
                workflow_command(
                    "warning",
                    result.skipped,
                    file=_file(result.display),
                    title="trainlint: file skipped",
                )
                + "\n"
            )

    def annotation(self, finding: Finding) -> str:
        message = finding.message
        if self.show_fixes and finding.fix:
            message += f"\nfix: {finding.fix}"
        return workflow_command(
            COMMANDS[finding.severity],
            message,
            file=_file(finding.path),
            line=finding.line,
            col=finding.column,
            endLine=finding.end_line,
            endColumn=finding.end_column,
            title=f"{finding.code} {finding.name}",
        )

    def on_discovery_error(self, path: str, reason: str) -> None:
        self.stream.write(
            workflow_command(
                "error", reason, file=_file(path), title="trainlint: path not analyzed"
            )
            + "\n"
        )

    def finish(self, summary: Summary) -> None:
        summary_file = os.environ.get(STEP_SUMMARY_VARIABLE)
        if summary_file:
            self._write_step_summary(Path(summary_file), summary)
        if self.quiet:
            return
        # A plain log line (not a command): the job log says what was checked.
        errors = f", {len(summary.errors)} not analyzed" if summary.errors else ""
        self.stream.write(
            f"trainlint: {summary.findings} finding{'s' if summary.findings != 1 else ''} "
            f"in {summary.files} file{'s' if summary.files != 1 else ''}{errors}\n"
        )

    def _write_step_summary(self, path: Path, summary: Summary) -> None:
        """Append the run's table (one row per rule) to the job summary; never fail the run."""
        try:
            with open(path, "a", encoding="utf-8") as stream:
                stream.write(step_summary(summary, self.registry))
        except OSError:
            pass  # the annotations are the report; the summary page is a courtesy


def step_summary(summary: Summary, registry: dict[str, type[Rule]]) -> str:
    """The job summary block: counts per rule, then what could not be analyzed."""
    lines = ["## trainlint", ""]
    errors = f", {len(summary.errors)} not analyzed" if summary.errors else ""
    lines.append(f"{summary.findings} findings in {summary.files} files{errors}.")
    lines.append("")
    if summary.by_code:
        lines += ["| Rule | Name | Severity | Findings |", "| --- | --- | --- | ---: |"]
        for code, count in sorted(summary.by_code.items()):
            rule = registry.get(code)
            name = rule.name if rule else ""
            severity = rule.severity.label if rule else ""
            lines.append(f"| {code} | {name} | {severity} | {count} |")
        lines.append("")
    if summary.errors:
        lines += ["| Not analyzed | Why |", "| --- | --- |"]
        for path, _, reason in summary.errors:
            lines.append(f"| `{_cell(path)}` | {_cell(reason)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    text = shown(text)  # a non-UTF-8 file name must not fail the summary's UTF-8 write
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")
