"""Reporters: they receive each file's result as it is ready, then the run's summary."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from trainlint.rule import Rule, Severity

if TYPE_CHECKING:
    from trainlint.engine import FileResult


@dataclass
class Summary:
    """What the whole run saw (reporters and the exit code read it)."""

    files: int = 0
    parsed: int = 0
    cached: int = 0
    skipped: int = 0
    unreadable: int = 0  # errors before parsing (binary, undecodable, unreadable, vanished)
    by_code: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[Severity] = field(default_factory=Counter)
    errors: list[tuple[str, int | None, str]] = field(default_factory=list)  # path, line, reason
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.parsed += result.parsed and not result.cached
        self.cached += result.cached
        if result.skipped:
            self.skipped += 1
            self.skipped_files.append((result.display, result.skipped))
        if result.error:
            self.errors.append((result.display, result.error_line, result.error))
            self.unreadable += not result.parsed
        for finding in result.findings:
            self.by_code[finding.code] += 1
            self.by_severity[finding.severity] += 1

    @property
    def findings(self) -> int:
        return sum(self.by_code.values())

    @property
    def not_training_code(self) -> int:
        """Files the prefilter passed over: no selected rule's trigger word in their text."""
        return self.files - self.parsed - self.cached - self.skipped - self.unreadable

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


# Controls (C0 but tab/newline, DEL, C1) and lone surrogates: from file names that are not
# UTF-8 (surrogateescape) or from analyzed code. Never sent raw to a terminal or a report.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name: show the byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"


def shown(text: str, newlines: bool = False) -> str:
    """``text`` safe to print or encode: control characters and lone surrogates become
    ``\\xNN`` escapes (a non-UTF-8 file name keeps its bytes visible, so nothing is lost).
    ``newlines`` keeps tabs and line breaks (multi-line fixes)."""
    return (_UNSAFE if newlines else _UNSAFE_LINE).sub(_escape_char, text)


class Reporter:
    """Base class; subclasses override ``on_file`` and/or ``finish``."""

    def __init__(
        self,
        stream: TextIO,
        registry: dict[str, type[Rule]],
        *,
        show_fixes: bool = True,
        quiet: bool = False,
        statistics: bool = False,
        color: bool | None = None,
    ) -> None:
        self.stream = stream
        self.registry = registry
        self.show_fixes = show_fixes
        self.quiet = quiet
        self.statistics = statistics
        self.color = color

    def on_file(self, result: FileResult) -> None:
        pass

    def on_discovery_error(self, path: str, reason: str) -> None:
        pass

    def finish(self, summary: Summary) -> None:
        pass


#: format -> (module, class); a run imports only the reporter it uses.
REPORTERS = {
    "text": ("trainlint.report.text", "TextReporter"),
    "json": ("trainlint.report.json_report", "JsonReporter"),
    "sarif": ("trainlint.report.sarif", "SarifReporter"),
    "github": ("trainlint.report.github", "GithubReporter"),
    "junit": ("trainlint.report.junit", "JunitReporter"),
}


def get_reporter(name: str) -> type[Reporter]:
    import importlib

    module, attribute = REPORTERS[name]
    reporter: type[Reporter] = getattr(importlib.import_module(module), attribute)
    return reporter
