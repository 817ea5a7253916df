"""Turn a path into analyzable text: .py files (any declared encoding) and .ipynb notebooks.

Every way a file can fail to become text raises :class:`SourceError` with a one-line reason
(the CLI prefixes the path); a file deliberately left out raises :class:`SkippedFile`.
"""

from __future__ import annotations

import ast
import codecs
import dataclasses
import errno
import io
import os
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from trainlint import safeio
from trainlint.notebooks import (  # noqa: F401  (re-exported: sources is the public face)
    PYTHON_CELL_MAGICS,
    cell_to_python,
    notebook_cells,
    notebook_to_text,
)
from trainlint.rule import Finding
from trainlint.source_errors import SkippedFile, SourceError

DEFAULT_MAX_BYTES = 1_000_000


class _Result(Protocol):
    """What :meth:`SourceFile.name_cells` rewrites (the engine's FileResult; ``notes`` too
    when it has them)."""

    findings: list[Finding]
    error: str | None
    error_line: int | None


_LINE_MENTION = re.compile(r"\bline (\d+)\b")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    text: str
    raw: bytes
    #: For notebooks: analyzed line number -> (cell number, line in cell). Empty for .py files.
    cell_lines: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: Notebook cells that could not be analyzed (blanked in ``text``): (analyzed line, reason).
    cell_errors: tuple[tuple[int, str], ...] = ()
    #: Liberties taken while reading (an unknown codec read as UTF-8), one line each.
    notes: tuple[str, ...] = ()

    def display_line(self, line: int) -> str:
        if line in self.cell_lines:
            cell, cell_line = self.cell_lines[line]
            return f"cell {cell}, line {cell_line}"
        return f"line {line}"

    def cell_message(self, message: str, line: int | None) -> str:
        """Rewrite ``line N`` mentions into cell coordinates and name the anchor's cell."""

        def rewrite(match: re.Match[str]) -> str:
            number = int(match.group(1))
            return self.display_line(number) if number in self.cell_lines else match.group(0)

        message = _LINE_MENTION.sub(rewrite, message)
        if line in self.cell_lines:
            message = f"{message} ({self.display_line(line)})"
        return message

    def name_cells(self, result: _Result, findings: bool = True) -> None:
        """Notebooks: append ``(cell N, line M)`` to the error and (``findings``) each message;
        add the broken cells' errors and the reading notes to ``result``.

        Line numbers stay those of the analyzed text (the cells joined), so every reporter,
        the source excerpt and SARIF regions keep agreeing; the message tells a human where
        to look in the notebook.
        """
        if self.notes and hasattr(result, "notes"):
            result.notes = [*result.notes, *self.notes]  # type: ignore[attr-defined]
        if not self.cell_lines and not self.cell_errors:
            return
        if findings:
            result.findings = [
                dataclasses.replace(f, message=self.cell_message(f.message, f.line))
                for f in result.findings
            ]
        if result.error:
            result.error = self.cell_message(result.error, result.error_line)
        if self.cell_errors:
            # Each cell runs on its own in Jupyter: a broken one hides nothing else, but the
            # run still says that part of the notebook was not analyzed (exit 2).
            errors = [reason for _, reason in self.cell_errors]
            if result.error:
                errors.append(result.error)
            result.error = "; ".join(errors)
            result.error_line = self.cell_errors[0][0]


# ---------------------------------------------------------------------- bytes
def raw_limit(path: Path, max_bytes: int) -> int:
    """How many bytes of ``path`` may be read at most (0: no limit)."""
    if not max_bytes:
        return 0
    return max_bytes * NOTEBOOK_RAW_FACTOR if path.suffix == ".ipynb" else max_bytes


def read_bytes(path: Path, max_bytes: int = 0) -> bytes:
    """The file's bytes; never blocks (FIFOs) and never reads more than the cap allows.

    ``max_bytes`` is the analyzed-size cap (0: none): a file whose ``stat`` size is over it
    raises :class:`SkippedFile` before a byte is read.
    """
    try:
        return safeio.read_regular(path, raw_limit(path, max_bytes))
    except safeio.TooLarge as exc:
        raise _too_large(exc.size, raw_limit(path, max_bytes)) from None
    except safeio.NotRegular as exc:
        if exc.kind == "a directory":
            raise SourceError("is a directory, not a file") from None
        raise SourceError(f"{exc.kind}, not a regular file; not read") from None
    except FileNotFoundError:
        if os.path.islink(path):
            raise SourceError("broken symbolic link (its target does not exist)") from None
        raise SourceError("file not found (deleted during the run?)") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except OSError as exc:
        raise SourceError(os_reason(exc)) from None


def os_reason(exc: OSError) -> str:
    """One line for an ``OSError`` on a path the user gave."""
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long for this system (PATH_MAX/NAME_MAX)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


_UTF16_32_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _wide_encoding(raw: bytes) -> str | None:
    """``UTF-16``/``UTF-32`` when the bytes look like text in one of them (BOM, or ASCII
    interleaved with NUL bytes), else None."""
    for bom, name in _UTF16_32_BOMS:
        if raw.startswith(bom):
            return name
    head = raw[:4096]
    if len(head) >= 8:
        for width, name in ((4, "UTF-32"), (2, "UTF-16")):
            for offset in range(width):
                units = head[offset::width]
                others = [head[i::width] for i in range(width) if i != offset]
                # every other byte NUL, the remaining ones printable ASCII: wide text
                if all(set(o) <= {0} for o in others) and all(
                    32 <= b < 127 or b in (9, 10, 13) for b in units
                ):
                    return name
    return None


def decode_python(raw: bytes) -> str:
    """Bytes -> text as Python does it: BOM, PEP 263 cookie, else UTF-8."""
    return decode_python_noting(raw)[0]


def decode_python_noting(raw: bytes) -> tuple[str, list[str]]:
    """:func:`decode_python` plus notes on liberties taken (an unknown codec read as UTF-8)."""
    if b"\x00" in raw:
        wide = _wide_encoding(raw)
        if wide:
            raise SourceError(f"{wide} encoded; save it as UTF-8", 1)
        raise SourceError("binary file (contains NUL bytes), not Python source")
    notes: list[str] = []
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        declared = _declared_codec(raw)
        if declared is None:
            # No cookie at all: the first lines simply are not UTF-8.
            return _decode(raw, "utf-8"), notes
        if declared and "unknown encoding" in exc.msg:
            # Codecs registered at run time (future_fstrings, pyxl...): read as UTF-8, as
            # Python tools commonly do, and say so.
            notes.append(f"unknown encoding {declared!r} in the coding declaration; read as UTF-8")
            return _decode(raw, "utf-8"), notes
        raise SourceError(f"bad encoding declaration: {exc.msg}", 1) from None
    return _decode(raw, encoding), notes


_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def _declared_codec(raw: bytes) -> str | None:
    """The codec a PEP 263 cookie on line 1 or 2 names, or None without a cookie."""
    for line in raw.removeprefix(codecs.BOM_UTF8).split(b"\n", 2)[:2]:
        match = _COOKIE.match(line)
        if match:
            return match.group(1).decode("ascii", "replace")
    return None


def _decode(raw: bytes, encoding: str) -> str:
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


def python_syntax_error(text: str) -> tuple[int | None, str] | None:
    """Python's own account of a syntax error: its line and message are more precise than
    libcst's (``'(' was never closed`` at the opening line). None when Python accepts it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes etc.
        try:
            ast.parse(text)
        except SyntaxError as exc:
            return exc.lineno, exc.msg
        except (ValueError, RecursionError, MemoryError):
            return None
    return None


# ---------------------------------------------------------------------- entry points
def load(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    return from_bytes(path, read_bytes(path, max_bytes), max_bytes)


#: Notebooks carry their outputs (images, tables): the cap applies to their code, and the raw
#: JSON may be this many times larger before it is not even parsed.
NOTEBOOK_RAW_FACTOR = 50


def _too_large(size: int, max_bytes: int, what: str = "") -> SkippedFile:
    return SkippedFile(
        f"skipped: too large ({human_size(size)}{what} > {human_size(max_bytes)}; "
        "raise max-file-size to analyze it)"
    )


def human_size(size: int) -> str:
    """``900 bytes``, ``12 kB``, ``6.4 GB``: never ``0 kB`` for a small cap."""
    if size < 10_000:
        return f"{size} bytes"
    if size < 10_000_000:
        return f"{size // 1000} kB"
    if size < 1_000_000_000:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.1f} GB"


def from_bytes(path: Path, raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    """``max_bytes`` (0: no limit) caps the analyzed text: a .py file's bytes, a notebook's code."""
    if path.suffix == ".ipynb":
        if max_bytes and len(raw) > max_bytes * NOTEBOOK_RAW_FACTOR:
            raise _too_large(len(raw), max_bytes * NOTEBOOK_RAW_FACTOR)
        text, cell_lines, errors = notebook_cells(raw)
        if max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise _too_large(len(text.encode("utf-8", "surrogatepass")), max_bytes, " of code")
        return SourceFile(path, text, raw, cell_lines, cell_errors=tuple(errors))
    if max_bytes and len(raw) > max_bytes:
        raise _too_large(len(raw), max_bytes)
    text, notes = decode_python_noting(raw)
    return SourceFile(path, text, raw, notes=tuple(notes))
