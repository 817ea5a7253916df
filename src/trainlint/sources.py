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
import json
import os
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainlint import safeio
from trainlint.rule import Finding

DEFAULT_MAX_BYTES = 1_000_000

#: Cell magics whose body is still Python (``%%time`` + code); any other cell magic
#: (``%%bash``, ``%%html``, ``%%writefile``...) makes the whole cell foreign text.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "memit"})
#: IPython line syntax that is not Python: ``%magic``, ``!shell``, ``?help``, ``obj?``,
#: ``torch.*Tensor?``, ``files = !ls``, ``t = %timeit -o f()``.
_LINE_MAGIC = re.compile(r"^\s*(?:[%!?]|[\w.*]+\?{1,2}\s*$|[\w.,\s\[\]()]+?=\s*[%!](?![=]))")
#: Shell commands IPython runs without ``!`` (automagic), when the line is not Python.
_AUTOMAGIC = re.compile(
    r"^\s*(?:ls|cd|pwd|cat|mkdir|rmdir|rm|cp|mv|pip|conda|less|more|man|env|clear)(?:\s|$)"
)
_NEWLINE = re.compile(r"\r\n|\r|\n")


class SourceError(Exception):
    """The file cannot be analyzed; the message says why in one line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class SkippedFile(Exception):
    """The file is deliberately not analyzed (e.g. larger than the size cap)."""


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
            raise SourceError(f"{wide} encoded; save it as UTF-8 to analyze it", 1)
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


# ---------------------------------------------------------------------- notebooks
#: IPython accepts ``await`` at a cell's top level.
_CELL_FLAGS = ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)


def _cell_syntax_error(code: str) -> tuple[int | None, str] | None:
    """Why ``code`` is not Python (line within it, message); None when it is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(code, "<cell>", "exec", _CELL_FLAGS)
        except SyntaxError as exc:
            return exc.lineno, exc.msg
        except (ValueError, RecursionError, MemoryError) as exc:
            return None, f"cannot parse: {type(exc).__name__}"
    return None


def _is_python(code: str) -> bool:
    return _cell_syntax_error(code) is None


def _neutralize(line: str) -> str:
    """Keep the line (and its indentation) but make it a harmless statement."""
    indent = line[: len(line) - len(line.lstrip())]
    return f"{indent}pass  # {line.strip()}"


def cell_to_python(lines: list[str]) -> list[str]:
    """One code cell's lines, with IPython syntax turned into ``pass``/comments.

    The line count never changes, so positions map back to the cell. A cell that already is
    valid Python is left alone: ``%`` may legitimately start a continuation line.
    """
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("%%"):
        magic = first[2:].split(maxsplit=1)[0] if first[2:].strip() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return [f"# {line}" for line in lines]  # %%bash, %%html...: not Python at all
        index = next(i for i, line in enumerate(lines) if line.strip())
        lines = [*lines[:index], _neutralize(lines[index]), *lines[index + 1 :]]
    if _is_python("\n".join(lines)):
        return lines
    dedented = _strip_leading_indent(lines)
    if _is_python("\n".join(dedented)):
        return dedented
    return _neutralize_magics(dedented)


def _strip_leading_indent(lines: list[str]) -> list[str]:
    """IPython's ``leading_indent``: the first line's indentation is removed from every line."""
    first = next((line for line in lines if line.strip()), "")
    indent = first[: len(first) - len(first.lstrip())]
    if not indent:
        return lines
    return [line[len(indent) :] if line.startswith(indent) else line for line in lines]


class _Continuation:
    """Whether the next line starts a statement: not inside brackets, a multi-line string or
    after a backslash. IPython's transformers only look for magics at statement starts, so
    ``print("%d %d"\n      % (epoch, loss))`` keeps its ``%`` line."""

    def __init__(self) -> None:
        self.depth = 0
        self.quote: str | None = None  # the open triple quote
        self.backslash = False

    @property
    def at_statement_start(self) -> bool:
        return self.depth == 0 and self.quote is None and not self.backslash

    def feed(self, line: str) -> None:
        self.backslash = False
        i, n = 0, len(line)
        while i < n:
            char = line[i]
            if self.quote is not None:
                if char == "\\":
                    i += 2
                elif line.startswith(self.quote, i):
                    i += len(self.quote)
                    self.quote = None
                else:
                    i += 1
                continue
            if char == "#":
                break
            if char in "\"'":
                triple = line[i : i + 3]
                self.quote = triple if triple in ('"""', "'''") else char
                i += len(self.quote)
                continue
            if char in "([{":
                self.depth += 1
            elif char in ")]}":
                self.depth = max(self.depth - 1, 0)
            elif char == "\\" and i == n - 1:
                self.backslash = True
            i += 1
        if self.quote is not None and len(self.quote) == 1:
            self.quote = None  # an unterminated one-line string ends with its line


def _neutralize_magics(lines: list[str]) -> list[str]:
    found: list[str] = []
    continued = False  # the previous magic line ended in a backslash
    state = _Continuation()
    for line in lines:
        magic = continued
        if not magic and state.at_statement_start:
            magic = bool(_LINE_MAGIC.match(line)) or (
                bool(_AUTOMAGIC.match(line)) and not _is_python(line.strip())
            )
        if continued:
            found.append(f"# {line.strip()}")  # a comment never breaks the indentation
        elif magic:
            found.append(_neutralize(line))
        else:
            found.append(line)
            state.feed(line)
        continued = magic and line.rstrip().endswith("\\")
    return found


def _cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


_SURROGATE = re.compile("[\ud800-\udfff]")


def notebook_to_text(raw: bytes) -> tuple[str, dict[int, tuple[int, int]]]:
    """The code cells joined (one blank line between them) and the line -> cell map."""
    text, cell_lines, _ = notebook_cells(raw)
    return text, cell_lines


def _load_notebook(raw: bytes) -> list[Any]:
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SourceError(f"not a valid notebook: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise SourceError(
            f"not a valid notebook: bad JSON: {exc.msg} ({where})", exc.lineno
        ) from None
    except RecursionError:
        raise SourceError("not a valid notebook: JSON nested too deeply") from None
    if isinstance(document, dict) and "worksheets" in document and "cells" not in document:
        version = document.get("nbformat", 3)
        raise SourceError(
            f"nbformat {version} notebook: not supported (only nbformat 4); convert it with "
            "`jupyter nbconvert --to notebook --nbformat 4 --inplace`"
        )
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise SourceError("not a valid notebook: no 'cells' list")
    return cells


def notebook_cells(
    raw: bytes,
) -> tuple[str, dict[int, tuple[int, int]], list[tuple[int, str]]]:
    """:func:`notebook_to_text` plus the cells that are not Python: (first line, reason).

    A broken cell is blanked (its lines kept, so positions still map) and the others are
    analyzed: Jupyter runs cells independently.
    """
    lines: list[str] = []
    cell_lines: dict[int, tuple[int, int]] = {}
    errors: list[tuple[int, str]] = []
    for number, cell in enumerate(_load_notebook(raw), start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _cell_source(cell)
        if not source.strip():
            continue
        source_lines = _NEWLINE.split(source.removesuffix("\n").removesuffix("\r"))
        first = len(lines) + 1
        surrogate = _SURROGATE.search(source)
        if surrogate:
            line = source[: surrogate.start()].count("\n") + 1
            code = f"U+{ord(surrogate.group()):04X}"
            problem: tuple[int | None, str] | None = (line, f"lone surrogate {code}, not text")
            converted = source_lines
        else:
            converted = cell_to_python(source_lines)
            problem = _cell_syntax_error("\n".join(converted))
        if problem is not None:
            line, message = problem
            where = f"cell {number}, line {line}" if line else f"cell {number}"
            prefix = "" if message.startswith("cannot") else "syntax error: "
            errors.append((first + (line or 1) - 1, f"{prefix}{message} ({where})"))
            converted = [""] * len(source_lines)
        for cell_line, line_text in enumerate(converted, start=1):
            lines.append(line_text)
            cell_lines[len(lines)] = (number, cell_line)
        lines.append("")
    return "\n".join(lines) + "\n", cell_lines, errors


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
    if size < 10_000_000_000:
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
