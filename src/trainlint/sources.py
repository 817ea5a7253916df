"""Turn a path into analyzable text: .py files (any declared encoding) and .ipynb notebooks."""

from __future__ import annotations

import io
import json
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_BYTES = 1_000_000


class SourceError(Exception):
    """The file cannot be analyzed; the message says why in one line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class SkippedFile(Exception):
    """The file is deliberately not analyzed (e.g. larger than the size cap)."""


@dataclass(frozen=True)
class SourceFile:
    path: Path
    text: str
    raw: bytes
    #: For notebooks: analyzed line number -> (cell number, line in cell). Empty for .py files.
    cell_lines: dict[int, tuple[int, int]] = field(default_factory=dict)

    def display_line(self, line: int) -> str:
        if line in self.cell_lines:
            cell, cell_line = self.cell_lines[line]
            return f"cell {cell}, line {cell_line}"
        return f"line {line}"


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise SourceError("is a directory, not a file") from None
    except FileNotFoundError:
        raise SourceError("file not found (deleted during the run?)") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None


def decode_python(raw: bytes) -> str:
    if b"\x00" in raw:
        raise SourceError("binary file (contains NUL bytes), not Python source")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        raise SourceError(f"bad encoding declaration: {exc.msg}", 1) from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SourceError(
            f"cannot decode as {encoding} (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            line,
        ) from None
    except LookupError:
        raise SourceError(f"unknown encoding {encoding!r}", 1) from None
    return text.removeprefix("\ufeff")


def _notebook_to_text(raw: bytes) -> tuple[str, dict[int, tuple[int, int]]]:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"not a valid notebook (bad JSON: {exc})") from None
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise SourceError("not a valid notebook (no 'cells' list)")
    lines: list[str] = []
    cell_lines: dict[int, tuple[int, int]] = {}
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        for cell_line, line in enumerate(text.splitlines(), start=1):
            # IPython magics and shell escapes are not Python: keep the line count, drop the code.
            stripped = line.lstrip()
            if stripped.startswith(("%", "!", "?")) or stripped.endswith("?"):
                line = "pass  # " + stripped
            lines.append(line)
            cell_lines[len(lines)] = (number, cell_line)
        lines.append("")
    return "\n".join(lines) + "\n", cell_lines


def load(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    return from_bytes(path, read_bytes(path), max_bytes)


def from_bytes(path: Path, raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    if max_bytes and len(raw) > max_bytes:
        raise SkippedFile(
            f"skipped: too large ({len(raw) // 1000} kB > {max_bytes // 1000} kB; "
            "raise max-file-size to analyze it)"
        )
    if path.suffix == ".ipynb":
        text, cell_lines = _notebook_to_text(raw)
        return SourceFile(path, text, raw, cell_lines)
    return SourceFile(path, decode_python(raw), raw)
