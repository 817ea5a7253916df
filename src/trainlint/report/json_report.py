"""JSON output. Stable schema, documented in README ("JSON output")."""

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

    def on_file(self, result: FileResult) -> None:
        self.findings.extend(f.to_dict() for f in result.findings)
        if result.error:
            self.errors.append(
                {"path": result.display, "line": result.error_line, "message": result.error}
            )

    def on_discovery_error(self, path: str, reason: str) -> None:
        self.errors.append({"path": path, "line": None, "message": reason})

    def finish(self, summary: Summary) -> None:
        document = {
            "version": __version__,
            "schema_version": SCHEMA_VERSION,
            "findings": self.findings,
            "errors": self.errors,
            "summary": {
                "files": summary.files,
                "parsed": summary.parsed,
                "cached": summary.cached,
                "skipped": summary.skipped,
                "findings": summary.findings,
            },
        }
        json.dump(document, self.stream, indent=2)
        self.stream.write("\n")
