"""The run-level side of ``--fix``, ``--diff`` and ``--add-noqa``: which files to change, the
re-analysis between passes, and writing the results back (see :mod:`trainlint.fixes`)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainlint import sources
from trainlint.engine import FileAnalyzer, FileResult, RunOptions
from trainlint.fixes import Document, FileFix, applicable, fix_file, noqa_edits
from trainlint.rule import Finding


@dataclass
class FixReport:
    """What a fixing run did, for the summary line and the exit code."""

    files: list[FileFix] = field(default_factory=list)
    unsafe_available: int = 0  # fixes ``--unsafe-fixes`` would also apply

    @property
    def fixed(self) -> int:
        return sum(len(f.applied) for f in self.files)

    @property
    def changed(self) -> list[FileFix]:
        return [f for f in self.files if f.changed]


def fix_results(
    results: Iterable[FileResult],
    options: RunOptions,
    *,
    unsafe: bool = False,
    add_noqa: bool = False,
) -> tuple[list[FileResult], FixReport]:
    """Fix every file with fixable findings; the results as they stand after the fixes."""
    analyzer = FileAnalyzer(dataclasses.replace(options, cache_dir=None, slicing=False))
    report = FixReport()
    final: list[FileResult] = []
    for result in results:
        wanted = _wanted(result, unsafe, add_noqa)
        if not wanted:
            final.append(result)
            report.unsafe_available += 0 if unsafe else _unsafe_count(result.findings)
            continue
        try:
            document = _document(result.path, options.max_file_size)
        except (sources.SourceError, sources.SkippedFile) as exc:
            final.append(dataclasses.replace(result, error=f"cannot fix: {exc}"))
            continue

        def analyze(path: Path, raw: bytes, display: str = result.display) -> list[Finding] | None:
            again = analyzer.analyze_file(path, display, raw)
            return None if again.error else again.findings

        if add_noqa:
            noqa = noqa_edits(document.text, result.findings)
            outcome = fix_file(document, result.display, noqa, analyze, lambda f: True)
            outcome.remaining = analyze(result.path, outcome.fixed) or []
        else:
            outcome = fix_file(
                document,
                result.display,
                result.findings,
                analyze,
                lambda f: applicable(f, unsafe),
            )
        report.files.append(outcome)
        if not unsafe:
            report.unsafe_available += _unsafe_count(outcome.remaining)
        final.append(dataclasses.replace(result, findings=outcome.remaining, error=outcome.error))
    return final, report


def _wanted(result: FileResult, unsafe: bool, add_noqa: bool) -> bool:
    if result.error or not result.findings:
        return False
    return add_noqa or any(applicable(f, unsafe) for f in result.findings)


def _unsafe_count(findings: Iterable[Finding]) -> int:
    return sum(applicable(f, True) and not applicable(f, False) for f in findings)


def _document(path: Path, max_bytes: int) -> Document:
    raw = sources.read_bytes(path)
    return Document(path, raw, sources.from_bytes(path, raw, max_bytes))


def write_fixed(fix: FileFix) -> str | None:
    """Write the fixed bytes over the file, atomically, keeping its mode; an error or None."""
    path = fix.path
    temporary: str | None = None
    try:
        mode = path.stat().st_mode & 0o7777
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        with os.fdopen(handle, "wb") as stream:
            stream.write(fix.fixed)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return f"cannot write the fixed file: {exc.strerror or exc}"
    return None
