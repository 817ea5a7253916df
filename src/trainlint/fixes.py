"""Applying fixes: ``--fix``, ``--unsafe-fixes``, ``--diff`` and ``--add-noqa``.

Every fix is a list of text edits located on the analyzed text (rules make them from libcst
nodes, so only the flagged code changes: comments, spacing and quotes elsewhere stay byte for
byte). Edits of one pass never overlap: an overlapping fix waits for the next pass, after the
file has been analyzed again. A pass whose result does not parse is retried fix by fix, and a
fix that breaks the file is skipped and said so. Passes repeat until nothing fixable remains
or :data:`MAX_PASSES` is reached.

Notebooks are edited cell by cell: only the ``source`` of the cells an edit touches changes,
outputs and metadata are kept, and the file stays nbformat JSON. An edit on a line that the
notebook reader rewrote (an IPython magic, a de-indented cell) is skipped.
"""

from __future__ import annotations

import difflib
import io
import json
import re
import tokenize
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlint import budget, limits, parsing, sources
from trainlint.rule import Applicability, Finding, Span, TextEdit

MAX_PASSES = 10
_NEWLINE = re.compile(r"\r\n|\r|\n")
_NOQA_CODES = re.compile(r"#\s*noqa\s*:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)", re.I)


class FixError(Exception):
    """An edit cannot be applied (out of range, in a rewritten notebook line...)."""


def applicable(finding: Finding, unsafe: bool) -> bool:
    """Whether ``--fix`` (``unsafe``: with ``--unsafe-fixes``) applies this finding's fix."""
    if not finding.edits or finding.applicability is None:
        return False
    if finding.applicability == Applicability.SAFE.value:
        return True
    return unsafe and finding.applicability == Applicability.UNSAFE.value


# ---------------------------------------------------------------------- text edits
def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(match.end() for match in _NEWLINE.finditer(text))
    return starts


def _offset(starts: list[int], text: str, line: int, column: int) -> int:
    if not 1 <= line <= len(starts):
        raise FixError(f"line {line} is outside the file")
    offset = starts[line - 1] + column - 1
    end = starts[line] if line < len(starts) else len(text)
    if not starts[line - 1] <= offset <= end:
        raise FixError(f"column {column} is outside line {line}")
    return offset


def _offsets(text: str, edits: Iterable[TextEdit]) -> list[tuple[int, int, str]]:
    starts = _line_starts(text)
    found = []
    for edit in edits:
        span = edit.span
        start = _offset(starts, text, span.line, span.column)
        end = _offset(starts, text, span.end_line, span.end_column)
        if end < start:
            raise FixError("an edit ends before it starts")
        found.append((start, end, edit.content))
    return found


def apply_edits(text: str, edits: Iterable[TextEdit]) -> str:
    """``text`` with non-overlapping ``edits`` applied (raises FixError otherwise)."""
    located = sorted(_offsets(text, edits))
    for (_, end, _), (start, _, _) in zip(located, located[1:], strict=False):
        if start < end:
            raise FixError("edits overlap")
    for start, end, content in reversed(located):
        text = text[:start] + content + text[end:]
    return text


def _parses(text: str) -> bool:
    try:
        budget.deep_call(lambda: parsing.parse(text))
    except (parsing.Unparsable, limits.TooManyTokens, RecursionError, MemoryError):
        return False
    return True


@dataclass
class Pass:
    """What one pass over one text did."""

    text: str
    applied: list[Finding] = field(default_factory=list)
    deferred: list[Finding] = field(default_factory=list)  # overlapped: next pass
    skipped: list[tuple[Finding, str]] = field(default_factory=list)  # never applicable


def fix_text(text: str, findings: Sequence[Finding], *, check: bool = True) -> Pass:
    """Apply the fixes of ``findings`` (already chosen as applicable) to ``text`` once."""
    result = Pass(text)
    chosen: list[tuple[Finding, list[tuple[int, int, str]]]] = []
    taken: list[tuple[int, int]] = []
    for finding in sorted(findings):
        try:
            located = _offsets(text, finding.edits)
        except FixError as exc:
            result.skipped.append((finding, str(exc)))
            continue
        if any(_overlaps(span, other) for span in located for other in taken):
            result.deferred.append(finding)
            continue
        chosen.append((finding, located))
        taken.extend((start, end) for start, end, _ in located)
    candidate = _apply_located(text, [edit for _, located in chosen for edit in located])
    if not check or _parses(candidate):
        result.text = candidate
        result.applied = [finding for finding, _ in chosen]
        return result
    # One of them breaks the file: keep those that do not, one at a time.
    current = text
    for finding, _ in chosen:
        trial = apply_edits(current, finding.edits) if _offsets_ok(current, finding) else None
        if trial is not None and _parses(trial):
            current = trial
            result.applied.append(finding)
        else:
            result.skipped.append((finding, "the fixed code would not parse"))
    result.text = current
    return result


def _overlaps(edit: tuple[int, int, str], other: tuple[int, int]) -> bool:
    start, end, _ = edit
    other_start, other_end = other
    if start == end == other_start == other_end:
        return True  # two insertions at one point: their order would be a guess
    return start < other_end and other_start < end


def _offsets_ok(text: str, finding: Finding) -> bool:
    try:
        _offsets(text, finding.edits)
    except FixError:
        return False
    return True


def _apply_located(text: str, located: list[tuple[int, int, str]]) -> str:
    for start, end, content in sorted(located, reverse=True):
        text = text[:start] + content + text[end:]
    return text


# ---------------------------------------------------------------------- --add-noqa
def noqa_edits(text: str, findings: Iterable[Finding]) -> list[Finding]:
    """For each flagged line, one finding whose edit appends (or extends) ``# noqa: CODES``."""
    lines = _NEWLINE.split(text)
    by_line: dict[int, list[Finding]] = {}
    for finding in findings:
        by_line.setdefault(finding.line, []).append(finding)
    comments = _comment_columns(text)
    made = []
    for line, here in sorted(by_line.items()):
        if not 1 <= line <= len(lines):
            continue
        source = lines[line - 1]
        codes = sorted({f.code for f in here})
        column = comments.get(line)
        if column is not None:
            match = _NOQA_CODES.search(source, column)
            if match is not None:
                written = [c.strip().upper() for c in match.group("codes").split(",")]
                missing = [c for c in codes if c not in written]
                if not missing:
                    continue
                end = match.end("codes")
                edit = TextEdit(Span(line, end + 1, line, end + 1), ", " + ", ".join(missing))
            else:
                # another comment: the directive goes first, the comment's text stays after it
                edit = TextEdit(
                    Span(line, column + 1, line, column + 1), f"# noqa: {', '.join(codes)} "
                )
        else:
            if source.rstrip().endswith("\\"):
                continue  # a comment after a line continuation would be a syntax error
            end = len(source.rstrip()) + 1
            edit = TextEdit(Span(line, end, line, len(source) + 1), f"  # noqa: {', '.join(codes)}")
        made.append(_with_edit(here[0], edit))
    return made


def _comment_columns(text: str) -> dict[int, int]:
    """Line -> 0-based column of the comment on it (from Python's tokens)."""
    found: dict[int, int] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found.setdefault(token.start[0], token.start[1])
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError):
        return found
    return found


def _with_edit(finding: Finding, edit: TextEdit) -> Finding:
    from dataclasses import replace

    return replace(finding, edits=(edit,), applicability=Applicability.SAFE.value)


# ---------------------------------------------------------------------- files
def encoding_of(raw: bytes) -> str:
    try:
        return tokenize.detect_encoding(io.BytesIO(raw).readline)[0]
    except SyntaxError:
        return "utf-8"


@dataclass(frozen=True)
class Document:
    """A file as ``--fix`` sees it: the analyzed text and how to write a new one back."""

    path: Path
    raw: bytes
    source: sources.SourceFile

    @property
    def text(self) -> str:
        return self.source.text

    @property
    def is_notebook(self) -> bool:
        return bool(self.source.cell_lines) or self.path.suffix == ".ipynb"

    def with_fixes(self, findings: Sequence[Finding]) -> tuple[bytes, Pass]:
        """The new bytes of the file and what the pass did."""
        if not self.is_notebook:
            done = fix_text(self.text, findings)
            return done.text.encode(encoding_of(self.raw), "surrogateescape"), done
        return self._notebook_with_fixes(findings)

    def _notebook_with_fixes(self, findings: Sequence[Finding]) -> tuple[bytes, Pass]:
        usable: list[Finding] = []
        rejected: list[tuple[Finding, str]] = []
        for finding in findings:
            reason = self._cell_problem(finding)
            if reason:
                rejected.append((finding, reason))
            else:
                usable.append(finding)
        done = fix_text(self.text, usable)
        done.skipped.extend(rejected)
        if not done.applied:
            return self.raw, done
        return self._write_cells(done.applied), done

    def _cell_problem(self, finding: Finding) -> str | None:
        original = _cell_lines_of(self.raw)
        analyzed = _NEWLINE.split(self.text)
        for edit in finding.edits:
            cells = {
                self.source.cell_lines.get(n) for n in range(edit.span.line, edit.span.end_line + 1)
            }
            if None in cells or len({cell for cell, _ in cells if cell}) != 1:  # type: ignore[misc]
                return "the edit is not inside one code cell"
            for number in range(edit.span.line, edit.span.end_line + 1):
                cell, line = self.source.cell_lines[number]
                if original.get(cell, [])[line - 1 : line] != [analyzed[number - 1]]:
                    return "the edit touches a line the notebook reader rewrote (IPython syntax)"
        return None

    def _write_cells(self, applied: Sequence[Finding]) -> bytes:
        document = json.loads(self.raw.decode("utf-8-sig"))
        cells = document["cells"]
        per_cell: dict[int, list[TextEdit]] = {}
        for finding in applied:
            for edit in finding.edits:
                cell, first = self.source.cell_lines[edit.span.line]
                _, last = self.source.cell_lines[edit.span.end_line]
                moved = TextEdit(
                    Span(first, edit.span.column, last, edit.span.end_column), edit.content
                )
                per_cell.setdefault(cell, []).append(moved)
        for number, edits in per_cell.items():
            cell = cells[number - 1]
            text = _source_text(cell.get("source", ""))
            fixed = apply_edits(text, edits)
            cell["source"] = _as_source(fixed, cell.get("source", ""))
        return _dump_notebook(document, self.raw)


def _source_text(source: object) -> str:
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def _as_source(text: str, like: object) -> object:
    if isinstance(like, list):
        return text.splitlines(keepends=True)
    return text


def _cell_lines_of(raw: bytes) -> dict[int, list[str]]:
    document = json.loads(raw.decode("utf-8-sig"))
    found = {}
    for number, cell in enumerate(document.get("cells", []), start=1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            text = _source_text(cell.get("source", ""))
            found[number] = _NEWLINE.split(text.removesuffix("\n").removesuffix("\r"))
    return found


def _dump_notebook(document: Any, raw: bytes) -> bytes:
    """nbformat's own layout (indent 1, non-ASCII kept) unless the file used another indent."""
    second = raw.split(b"\n", 2)[1] if raw.count(b"\n") >= 1 else b""
    indent = len(second) - len(second.lstrip(b" ")) or 1
    text = json.dumps(document, indent=indent, ensure_ascii=False) + "\n"
    return text.encode("utf-8")


def load_document(path: Path, max_bytes: int) -> Document:
    raw = sources.read_bytes(path)
    return Document(path, raw, sources.from_bytes(path, raw, max_bytes))


def unified_diff(path: str, before: bytes, after: bytes) -> str:
    def lines(data: bytes) -> list[str]:
        return data.decode("utf-8", "replace").splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(before), lines(after), f"a/{path}", f"b/{path}"))


# ---------------------------------------------------------------------- the fix loop
@dataclass
class FileFix:
    """The outcome of fixing one file."""

    path: Path
    display: str
    original: bytes
    fixed: bytes
    applied: list[Finding] = field(default_factory=list)
    skipped: list[tuple[Finding, str]] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.fixed != self.original


Analyze = Callable[[Path, bytes], list[Finding] | None]
"""Re-analyze a file from new bytes: its findings, or None when it can no longer be analyzed."""


def fix_file(
    document: Document,
    display: str,
    findings: list[Finding],
    analyze: Analyze,
    choose: Callable[[Finding], bool],
) -> FileFix:
    """Apply chosen fixes pass after pass, re-analyzing in between, until none apply."""
    outcome = FileFix(document.path, display, document.raw, document.raw, remaining=findings)
    current = document
    never: set[tuple[str, str]] = set()  # fixes that failed: not tried again
    for _ in range(MAX_PASSES):
        wanted = [
            f for f in outcome.remaining if choose(f) and (f.code, f.fingerprint) not in never
        ]
        if not wanted:
            break
        new_raw, done = current.with_fixes(wanted)
        outcome.applied.extend(done.applied)
        outcome.skipped.extend(done.skipped)
        never |= {(f.code, f.fingerprint) for f, _ in done.skipped}
        if not done.applied:
            break
        found = analyze(current.path, new_raw)
        if found is None:  # must not happen: each pass parses; keep the last good bytes
            outcome.error = "the fixed file could not be analyzed again; left unchanged"
            outcome.fixed = document.raw
            outcome.applied.clear()
            outcome.remaining = findings
            return outcome
        outcome.fixed = new_raw
        outcome.remaining = found
        current = Document(current.path, new_raw, sources.from_bytes(current.path, new_raw, 0))
    return outcome
