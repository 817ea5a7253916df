"""Inline and file-level suppressions: ``# noqa``, ``# noqa: TL101``, ``# trainlint: noqa: TL1``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.I)
_FILE_NOQA = re.compile(
    r"^\s*#\s*trainlint\s*:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]*(?:[\s,]+[A-Z]+[0-9]*)*))?\s*$",
    re.I | re.M,
)
_CODE_SPLIT = re.compile(r"[\s,]+")


def _codes(text: str | None) -> frozenset[str] | None:
    """``None`` means every code."""
    if not text:
        return None
    return frozenset(c.upper() for c in _CODE_SPLIT.split(text.strip()) if c)


def _matches(codes: frozenset[str] | None, code: str) -> bool:
    return codes is None or any(code.startswith(c) for c in codes)


@dataclass(frozen=True)
class Suppressions:
    file_codes: tuple[frozenset[str] | None, ...]
    lines: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> Suppressions:
        file_codes = tuple(_codes(m.group("codes")) for m in _FILE_NOQA.finditer(text))
        return cls(file_codes, tuple(text.splitlines()))

    def suppresses(self, code: str, line: int) -> bool:
        if any(_matches(codes, code) for codes in self.file_codes):
            return True
        if not 1 <= line <= len(self.lines):
            return False
        source_line = self.lines[line - 1]
        if "#" not in source_line:
            return False
        match = _NOQA.search(source_line)
        return match is not None and _matches(_codes(match.group("codes")), code)
