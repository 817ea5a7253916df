"""Inline and file-level suppressions, spelled as ruff and flake8 users expect.

- ``# noqa`` on a finding's anchor (first) line suppresses every finding on that line;
- ``# noqa: TL101, TL102`` (or a prefix: ``# noqa: TL1``) suppresses those codes only;
- a line of its own ``# trainlint: noqa`` suppresses the whole file, and
  ``# trainlint: noqa: TL101`` that code (or prefix) in the whole file.

A ``# noqa:`` followed by no valid code is ignored rather than read as a blanket ``# noqa``
(ruff does the same), so a typo never silences more than intended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
class Suppressions:
    file_codes: tuple[Codes, ...]
    lines: tuple[str, ...]

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
        if any(_matches(codes, code) for codes in self.file_codes):
            return True
        if not 1 <= line <= len(self.lines):
            return False
        source_line = self.lines[line - 1]
        if "#" not in source_line:
            return False
        for match in _NOQA.finditer(source_line):
            valid, codes = _directive(match)
            if valid and _matches(codes, code):
                return True
        return False
