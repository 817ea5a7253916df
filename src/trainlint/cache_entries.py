"""Results as cache entries and back; an entry that looks wrong in any way is not trusted."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainlint.results import FileResult
from trainlint.rule import Finding


def cache_entry(result: FileResult) -> dict[str, Any] | None:
    """What the cache keeps of a fresh result; None for results that must not be cached."""
    if result.skipped is not None:
        return None
    if result.error is not None and not _deterministic(result.error):
        return None  # internal errors and resource limits deserve a retry next time
    return {
        "findings": [f.to_dict() for f in result.findings],
        "error": result.error,
        "error_line": result.error_line,
        "parsed": result.parsed,
        "notes": result.notes,
        "deps": result.deps,
    }


_FINDING_FIELDS: dict[str, tuple[type, ...]] = {
    "code": (str,),
    "name": (str,),
    "severity": (str,),
    "line": (int,),
    "column": (int,),
    "end_line": (int,),
    "end_column": (int,),
    "message": (str,),
    "fix": (str, type(None)),
}


def line_bound(path: Path, raw: bytes) -> int:
    """The highest line a finding in this file can be on (notebooks: a loose bound, as their
    lines are those of the cells joined, not of the JSON)."""
    if path.suffix == ".ipynb":
        return len(raw) + 1
    return raw.count(b"\n") + 1


def result_from_entry(
    path: Path, display: str, data: dict[str, Any], codes: Iterable[str], max_line: int
) -> FileResult | None:
    """Rebuild a result from a cache entry; None when anything about it looks wrong.

    Positions are checked against the file (``max_line``, see :func:`line_bound`): a damaged
    or forged entry must not put ``startLine: -5`` into SARIF. A rejected entry is recomputed
    and rewritten.
    """
    known = set(codes)
    findings = []
    try:
        for item in data["findings"]:
            if not all(isinstance(item.get(k), t) for k, t in _FINDING_FIELDS.items()):
                return None
            if item["code"] not in known:
                return None
            finding = Finding.from_dict({**item, "path": display})
            if not _plausible(finding, max_line):
                return None
            findings.append(finding)
        error, error_line = data.get("error"), data.get("error_line")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not isinstance(error, (str, type(None))) or not isinstance(error_line, (int, type(None))):
        return None
    if error_line is not None and not (type(error_line) is int and 1 <= error_line <= max_line):
        return None
    return FileResult(
        path,
        display,
        findings=findings,
        error=error,
        error_line=error_line,
        parsed=bool(data.get("parsed")),
        cached=True,
        notes=[n for n in _list(data.get("notes")) if isinstance(n, str)],
        deps=_list(data.get("deps")),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _plausible(finding: Finding, max_line: int) -> bool:
    spans = [
        (finding.line, finding.column, finding.end_line, finding.end_column),
        *((e.span.line, e.span.column, e.span.end_line, e.span.end_column) for e in finding.edits),
    ]
    for line, column, end_line, end_column in spans:
        numbers = (line, column, end_line, end_column)
        if not all(type(n) is int for n in numbers):  # bool is an int subclass: not a line
            return False
        if not (1 <= line <= end_line <= max_line and column >= 1 and end_column >= 1):
            return False
        if max(column, end_column) > _MAX_COLUMN:
            return False
    return True


#: No line of a file under any size cap is longer than this.
_MAX_COLUMN = 1 << 31


def _deterministic(error: str) -> bool:
    """Errors that a retry would repeat (syntax errors, limits): worth caching. Imported
    here, not at the top: a warm run, which never reaches this, must not load libcst."""
    from trainlint import parsing

    return error.startswith(parsing.DETERMINISTIC_PREFIXES)
