"""One file's outcome: what every stage after the analysis (cache, reporters) reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainlint.rule import Finding


@dataclass
class FileResult:
    path: Path
    display: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # could not be analyzed: the one-line reason
    error_line: int | None = None
    skipped: str | None = None  # deliberately not analyzed (too large)
    parsed: bool = False  # False when the prefilter skipped it
    cached: bool = False
    notes: list[str] = field(default_factory=list)  # liberties taken reading it (sources)
    #: Summaries of other modules the analysis used: [path from the file's folder, name, digest].
    deps: list[list[str]] = field(default_factory=list)
