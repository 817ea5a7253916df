"""Turn a path into analyzable text: .py files (any declared encoding) and .ipynb notebooks.

Every way a file can fail to become text raises :class:`SourceError` with a one-line reason
(the CLI prefixes the path); a file deliberately left out raises :class:`SkippedFile`.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import io
import json
import re
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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
    """What :meth:`SourceFile.name_cells` rewrites (the engine's FileResult)."""

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

    def display_line(self, line: int) -> str:
        if line in self.cell_lines:
            cell, cell_line = self.cell_lines[line]
            return f"cell {cell}, line {cell_line}"
        return f"line {line}"

    def cell_message(self, message: str, line: int) -> str:
        """Rewrite ``line N`` mentions into cell coordinates and name the anchor's cell."""

        def rewrite(match: re.Match[str]) -> str:
            number = int(match.group(1))
            return self.display_line(number) if number in self.cell_lines else match.group(0)

        message = _LINE_MENTION.sub(rewrite, message)
        if line in self.cell_lines:
            message = f"{message} ({self.display_line(line)})"
        return message

    def name_cells(self, result: _Result, findings: bool = True) -> None:
        """Notebooks: append ``(cell N, line M)`` to the error and (``findings``) each message.

        Line numbers stay those of the analyzed text (the cells joined), so every reporter,
        the source excerpt and SARIF regions keep agreeing; the message tells a human where
        to look in the notebook.
        """
        if not self.cell_lines:
            return
        if findings:
            result.findings = [
                dataclasses.replace(f, message=self.cell_message(f.message, f.line))
                for f in result.findings
            ]
        if result.error and result.error_line in self.cell_lines:
            result.error = f"{result.error} ({self.display_line(result.error_line)})"


# ---------------------------------------------------------------------- bytes
def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise SourceError("is a directory, not a file") from None
    except FileNotFoundError:
        if path.is_symlink():
            raise SourceError("broken symbolic link (its target does not exist)") from None
        raise SourceError("file not found (deleted during the run?)") from None
    except PermissionError:
        raise SourceError("permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError("symbolic link loop") from None
        raise SourceError(f"cannot read: {exc.strerror or exc}") from None


def decode_python(raw: bytes) -> str:
    """Bytes -> text as Python does it: BOM, PEP 263 cookie, else UTF-8."""
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
def _is_python(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


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


def _neutralize_magics(lines: list[str]) -> list[str]:
    found: list[str] = []
    continued = False  # the previous magic line ended in a backslash
    for line in lines:
        magic = continued or bool(_LINE_MAGIC.match(line))
        if not magic and _AUTOMAGIC.match(line) and not _is_python(line.strip()):
            magic = True
        if continued:
            found.append(f"# {line.strip()}")  # a comment never breaks the indentation
        else:
            found.append(_neutralize(line) if magic else line)
        continued = magic and line.rstrip().endswith("\\")
    return found


def _cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def notebook_to_text(raw: bytes) -> tuple[str, dict[int, tuple[int, int]]]:
    """The code cells joined (one blank line between them) and the line -> cell map."""
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
    cells = document.get("cells") if isinstance(document, dict) else None
    if not isinstance(cells, list):
        raise SourceError("not a valid notebook: no 'cells' list")
    lines: list[str] = []
    cell_lines: dict[int, tuple[int, int]] = {}
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _cell_source(cell)
        if not source.strip():
            continue
        source_lines = _NEWLINE.split(source.removesuffix("\n").removesuffix("\r"))
        for cell_line, line in enumerate(cell_to_python(source_lines), start=1):
            lines.append(line)
            cell_lines[len(lines)] = (number, cell_line)
        lines.append("")
    return "\n".join(lines) + "\n", cell_lines


# ---------------------------------------------------------------------- entry points
def load(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    return from_bytes(path, read_bytes(path), max_bytes)


#: Notebooks carry their outputs (images, tables): the cap applies to their code, and the raw
#: JSON may be this many times larger before it is not even parsed.
NOTEBOOK_RAW_FACTOR = 50


def _too_large(size: int, max_bytes: int, what: str = "") -> SkippedFile:
    return SkippedFile(
        f"skipped: too large ({size // 1000} kB{what} > {max_bytes // 1000} kB; "
        "raise max-file-size to analyze it)"
    )


def from_bytes(path: Path, raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> SourceFile:
    """``max_bytes`` (0: no limit) caps the analyzed text: a .py file's bytes, a notebook's code."""
    if path.suffix == ".ipynb":
        if max_bytes and len(raw) > max_bytes * NOTEBOOK_RAW_FACTOR:
            raise _too_large(len(raw), max_bytes * NOTEBOOK_RAW_FACTOR)
        text, cell_lines = notebook_to_text(raw)
        if max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
            raise _too_large(len(text.encode("utf-8", "surrogatepass")), max_bytes, " of code")
        return SourceFile(path, text, raw, cell_lines)
    if max_bytes and len(raw) > max_bytes:
        raise _too_large(len(raw), max_bytes)
    return SourceFile(path, decode_python(raw), raw)
