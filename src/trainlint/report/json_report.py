"""JSON output. A stable schema, documented in docs/json-output.md.

Additions keep ``schema_version``; a change that removes or renames a key, or changes what a
value means, bumps it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from trainlint import __version__
from trainlint.report import Reporter, Summary

if TYPE_CHECKING:
    from trainlint.engine import FileResult

SCHEMA_VERSION = 1


class JsonReporter(Reporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.findings: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []

    def on_file(self, result: FileResult) -> None:
        self.findings.extend(f.to_dict() for f in result.findings)
        if result.error:
            self.errors.append(
                {"path": result.display, "message": result.error, "line": result.error_line}
            )
        if result.skipped:
            self.skipped.append({"path": result.display, "reason": result.skipped})
        for note in getattr(result, "notes", ()):
            self.notes.append({"path": result.display, "message": note})

    def on_discovery_error(self, path: str, reason: str) -> None:
        self.errors.append({"path": path, "message": reason, "line": None})

    def document(self, summary: Summary) -> dict[str, Any]:
        return {
            "version": __version__,
            "schema_version": SCHEMA_VERSION,
            "findings": self.findings,
            "errors": self.errors,
            "skipped": self.skipped,
            "notes": self.notes,
            "summary": {
                "files": summary.files,
                "parsed": summary.parsed,
                "cached": summary.cached,
                "skipped": summary.skipped,
                "findings": summary.findings,
                "by_code": dict(sorted(summary.by_code.items())),
                "by_severity": {
                    severity.label: summary.by_severity[severity]
                    for severity in sorted(summary.by_severity, reverse=True)
                },
            },
        }

    def finish(self, summary: Summary) -> None:
        json.dump(self.document(summary), self.stream, indent=2)
        self.stream.write("\n")
