"""The two ways a file fails to become analyzable text (shared by sources and notebooks)."""

from __future__ import annotations


class SourceError(Exception):
    """The file cannot be analyzed; the message says why in one line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class SkippedFile(Exception):
    """The file is deliberately not analyzed (e.g. larger than the size cap)."""
