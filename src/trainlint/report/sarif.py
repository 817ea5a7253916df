"""SARIF 2.1.0 output, for GitHub code scanning and other SARIF viewers.

One run: the driver describes every rule that ran (so viewers can show the documentation of
a rule even when this run found nothing for it), each finding is a result pointing at its rule
by id and index, with ``partialFingerprints`` (the baseline fingerprint, which survives
unrelated edits, so code scanning tracks a finding across commits) and, when the fix is an
edit, a ``fix`` whose replacements are the real edit. Files that could not be analyzed become
tool execution notifications, which also turn ``executionSuccessful`` false.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from trainlint import __version__
from trainlint.report import Reporter, Summary, shown
from trainlint.rule import Finding, Rule, Severity

if TYPE_CHECKING:
    from trainlint.engine import FileResult

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://pypi.org/project/trainlint/"
SRCROOT = "%SRCROOT%"
#: partialFingerprints key; the version part changes if the fingerprint's recipe ever does.
FINGERPRINT_KEY = "trainlintFinding/v1"

LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}

_SECTION = re.compile(r"^##\s+(?P<title>.+?)\s*$", re.MULTILINE)


def artifact_location(path: str) -> dict[str, str]:
    """A path as the report shows it (relative to the cwd) as a SARIF artifact location.

    Relative paths become URI references against ``%SRCROOT%`` (the directory trainlint ran
    in); a path that has no relative form (another drive on Windows) becomes a file URI.
    """
    pure = PurePath(path)
    if pure.is_absolute():
        return {"uri": Path(path).as_uri()}  # percent-encodes the file system bytes
    # surrogateescape: a file name that is not UTF-8 keeps its bytes, percent-encoded.
    uri = quote(pure.as_posix(), safe="/-._~!$&'()*+,;=@", errors="surrogateescape")
    return {"uri": uri, "uriBaseId": SRCROOT}


def region(finding: Finding) -> dict[str, int]:
    return {
        "startLine": finding.line,
        "startColumn": finding.column,
        "endLine": max(finding.end_line, finding.line),
        "endColumn": max(finding.end_column, 1),
    }


def _doc_section(documentation: str, title: str) -> str:
    """The text of one ``## title`` section of a rule's Markdown documentation."""
    matches = list(_SECTION.finditer(documentation))
    for index, match in enumerate(matches):
        if match.group("title").strip().lower().rstrip("?") == title.lower():
            end = matches[index + 1].start() if index + 1 < len(matches) else len(documentation)
            return " ".join(documentation[match.end() : end].split())
    return ""


def rule_descriptor(rule: type[Rule]) -> dict[str, Any]:
    """The reportingDescriptor of one rule: names, descriptions, help and default level."""
    # cleandoc, not just dedent: a docstring's first line carries no indentation of its own.
    documentation = inspect.cleandoc(rule.documentation())
    short = rule.one_line()
    full = _doc_section(documentation, "What it does") or short
    heading = f"# {rule.code} {rule.name}\n\n"
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {
            "text": documentation or short,
            "markdown": heading + (documentation or short),
        },
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "frameworks": list(rule.frameworks),
            "tags": ["training-loop", *rule.frameworks],
        },
    }


class SarifReporter(Reporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rule_index = {code: index for index, code in enumerate(self.registry)}
        self.results: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.failed = False

    def on_file(self, result: FileResult) -> None:
        self.results.extend(self._result(finding) for finding in result.findings)
        if result.error:
            self._notify("error", result.display, result.error, result.error_line)
        if result.skipped:
            self._notify("warning", result.display, result.skipped, None)
        for note in getattr(result, "notes", ()):
            self._notify("note", result.display, note, None)

    def on_discovery_error(self, path: str, reason: str) -> None:
        self._notify("error", path, reason, None)

    def _notify(self, level: str, path: str, reason: str, line: int | None) -> None:
        physical: dict[str, Any] = {"artifactLocation": artifact_location(path)}
        if line is not None and line >= 1:
            physical["region"] = {"startLine": line}
        self.notifications.append(
            {
                "level": level,
                "message": {"text": shown(f"{path}: {reason}")},
                "locations": [{"physicalLocation": physical}],
            }
        )
        self.failed = self.failed or level == "error"

    def _result(self, finding: Finding) -> dict[str, Any]:
        location = {"artifactLocation": artifact_location(finding.path), "region": region(finding)}
        result: dict[str, Any] = {"ruleId": finding.code}
        if finding.code in self.rule_index:
            result["ruleIndex"] = self.rule_index[finding.code]
        result["level"] = LEVELS[finding.severity]
        result["message"] = {"text": shown(finding.message, newlines=True)}
        result["locations"] = [{"physicalLocation": location}]
        if finding.fingerprint:
            result["partialFingerprints"] = {FINGERPRINT_KEY: finding.fingerprint}
        if finding.fix:
            result["fixes"] = [self._fix(finding, location["artifactLocation"])]
        return result

    @staticmethod
    def _fix(finding: Finding, artifact: dict[str, str]) -> dict[str, Any]:
        if finding.edits:
            replacements = [
                {
                    "deletedRegion": {
                        "startLine": edit.span.line,
                        "startColumn": edit.span.column,
                        "endLine": edit.span.end_line,
                        "endColumn": edit.span.end_column,
                    },
                    "insertedContent": {"text": edit.content},
                }
                for edit in finding.edits
            ]
            return {
                "description": {"text": f"{finding.fix} ({finding.applicability} fix)"},
                "artifactChanges": [{"artifactLocation": artifact, "replacements": replacements}],
            }
        # SARIF demands at least one artifact change per fix, but this fix is advice (a
        # sentence and maybe the code to write), not an edit known to be right to apply.
        # So the change is an empty insertion at the finding's start: viewers show the
        # description, and a tool that applies fixes automatically changes nothing.
        insertion_point = {
            "startLine": finding.line,
            "startColumn": finding.column,
            "endLine": finding.line,
            "endColumn": finding.column,
        }
        return {
            "description": {"text": shown(finding.fix or "", newlines=True)},
            "artifactChanges": [
                {"artifactLocation": artifact, "replacements": [{"deletedRegion": insertion_point}]}
            ],
        }

    def document(self, summary: Summary) -> dict[str, Any]:
        invocation: dict[str, Any] = {"executionSuccessful": not self.failed}
        if self.notifications:
            invocation["toolExecutionNotifications"] = self.notifications
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "trainlint",
                    "version": __version__,
                    "semanticVersion": __version__,
                    "informationUri": INFORMATION_URI,
                    "rules": [rule_descriptor(rule) for rule in self.registry.values()],
                }
            },
            "invocations": [invocation],
            "originalUriBaseIds": {SRCROOT: {"uri": Path.cwd().as_uri().rstrip("/") + "/"}},
            # libcst counts columns in code points, and so does every Finding.
            "columnKind": "unicodeCodePoints",
            "results": self.results,
            "properties": {"filesChecked": summary.files, "filesParsed": summary.parsed},
        }
        return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}

    def finish(self, summary: Summary) -> None:
        self.failed = self.failed or bool(summary.errors)
        json.dump(self.document(summary), self.stream, indent=2)
        self.stream.write("\n")
