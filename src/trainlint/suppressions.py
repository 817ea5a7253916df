"""Inline and file-level suppressions, spelled as ruff and flake8 users expect.

- ``# noqa`` on a finding's anchor (first) line suppresses every finding on that line;
- ``# noqa: TL101, TL102`` (or a prefix: ``# noqa: TL1``) suppresses those codes only;
- a line of its own ``# trainlint: noqa`` suppresses the whole file, and
  ``# trainlint: noqa: TL101`` that code (or prefix) in the whole file.

A ``# noqa:`` followed by no valid code is ignored rather than read as a blanket ``# noqa``
(ruff does the same), so a typo never silences more than intended.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field

_CODE_LIST = r"[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+|\s+[A-Z]+[0-9]+)*"
_NOQA = re.compile(
    rf"#\s*noqa(?![\w-])(?P<colon>\s*:\s*(?P<codes>{_CODE_LIST})?)?",
    re.IGNORECASE,
)
_FILE_NOQA = re.compile(
    rf"^\s*#\s*trainlint\s*:\s*noqa(?![\w-])(?P<colon>\s*:\s*(?P<codes>{_CODE_LIST})?)?",
    re.IGNORECASE | re.MULTILINE,
)
_CODE_SPLIT = re.compile(r"[\s,]+")
#: Line breaks as Python (and libcst) count them; str.splitlines also splits on \f and others.
_NEWLINE = re.compile(r"\r\n|\r|\n")

#: ``None``: every code; otherwise codes and prefixes.
Codes = frozenset[str] | None


def _directive(match: re.Match[str] | None) -> tuple[bool, Codes]:
    """(valid?, codes) of a matched directive."""
    if match is None:
        return False, None
    if match.group("colon") is None:
        return True, None
    codes = match.group("codes")
    if not codes:
        return False, None  # a colon, then no usable code
    return True, frozenset(c.upper() for c in _CODE_SPLIT.split(codes.strip()) if c)


def _matches(codes: Codes, code: str) -> bool:
    return codes is None or any(code.startswith(c) for c in codes)


@dataclass(frozen=True)
class Directive:
    """One ``# noqa: CODES`` (or file-level) comment that names codes, and where it is."""

    line: int
    start: int  # 0-based columns of the directive in its line, end exclusive
    end: int
    codes: tuple[str, ...]  # as written, upper-cased, in order
    file_level: bool
    whole_comment: bool  # the directive is the whole comment (removing it removes the comment)
    leads_comment: bool = False  # the comment starts with it (``# noqa: TL101 reason``)


@dataclass
class Suppressions:
    file_codes: tuple[Codes, ...]
    lines: tuple[str, ...]
    #: (line of the directive, 0 for file-level ones, code or prefix) that suppressed something.
    used: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def of(cls, text: str) -> Suppressions:
        file_codes = []
        if "noqa" in text.lower():
            for match in _FILE_NOQA.finditer(text):
                valid, codes = _directive(match)
                if valid:
                    file_codes.append(codes)
        return cls(tuple(file_codes), tuple(_NEWLINE.split(text)))

    def suppresses(self, code: str, line: int) -> bool:
        for codes in self.file_codes:
            if _matches(codes, code):
                self._use(0, codes, code)
                return True
        if not 1 <= line <= len(self.lines):
            return False
        source_line = self.lines[line - 1]
        if "#" not in source_line:
            return False
        for match in _NOQA.finditer(source_line):
            valid, codes = _directive(match)
            if valid and _matches(codes, code):
                self._use(line, codes, code)
                return True
        return False

    def _use(self, line: int, codes: Codes, code: str) -> None:
        if codes is not None:
            self.used |= {(line, c) for c in codes if code.startswith(c)}

    def directives(self, comments: Iterable[tuple[int, int, str]]) -> list[Directive]:
        """The directives that name codes, among ``comments`` ((line, column, text) of each
        comment token: text inside strings is not a directive)."""
        found = []
        for line, column, comment in comments:
            file_match = _FILE_NOQA.match(comment)
            matches = [file_match] if file_match else list(_NOQA.finditer(comment))
            for match in matches:
                codes = match.group("codes") if match.group("colon") else None
                if not codes:
                    continue  # a bare directive is shared with other linters: not ours to judge
                start = column + (match.start() if not file_match else 0)
                end = column + match.end()
                whole = match.start() == 0 and not comment[match.end() :].strip()
                written = tuple(c.upper() for c in _CODE_SPLIT.split(codes.strip()) if c)
                leads = match.start() == 0 or bool(file_match)
                found.append(
                    Directive(
                        line,
                        start,
                        end,
                        written,
                        bool(file_match),
                        whole or bool(file_match),
                        leads,
                    )
                )
        return found

    def was_used(self, directive: Directive, code: str) -> bool:
        return (0 if directive.file_level else directive.line, code) in self.used


def comments(text: str) -> list[tuple[int, int, str]]:
    """(line, 0-based column, text) of every comment that mentions noqa, from Python's tokens
    (so a ``# noqa`` inside a string is not one)."""
    if "noqa" not in text.lower():
        return []
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT and "noqa" in token.string.lower():
                found.append((token.start[0], token.start[1], token.string))
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError):
        return []  # analyzed text always tokenizes; never judge what cannot be read
    return found


@dataclass(frozen=True)
class SuppressionReport:
    """What TL001 reads: every directive, what each suppressed, and which codes exist."""

    directives: tuple[Directive, ...]
    suppressions: Suppressions
    known_codes: frozenset[str]  # every registered rule
    checked_codes: frozenset[str]  # the rules selected for this run (the others never ran)

    def was_used(self, directive: Directive, code: str) -> bool:
        return self.suppressions.was_used(directive, code)

    def line_text(self, line: int) -> str:
        lines = self.suppressions.lines
        return lines[line - 1] if 1 <= line <= len(lines) else ""
