"""Jupyter notebooks -> Python text: code cells joined, IPython syntax neutralized, a line map.

Line counts never change, so every position maps back to (cell, line in cell). A cell that is
not Python on its own is blanked and reported alone: Jupyter runs cells independently.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from typing import Any

from trainlint import limits
from trainlint.source_errors import SourceError

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


#: IPython accepts ``await`` at a cell's top level.
_CELL_FLAGS = ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)


def _cell_syntax_error(code: str) -> tuple[int | None, str] | None:
    """Why ``code`` is not Python (line within it, message); None when it is."""
    try:
        limits.check(code)  # compile() too recurses per nesting level, in C
    except limits.TooComplex as exc:
        return exc.line, exc.message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(code, "<cell>", "exec", _CELL_FLAGS)
        except SyntaxError as exc:
            return exc.lineno, exc.msg
        except RecursionError:
            return None, "cannot analyze: nested too deeply for Python's compiler"
        except (ValueError, MemoryError) as exc:
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
            if problem is not None and not problem[1].startswith(("cannot", *limits.PREFIXES)):
                problem = (problem[0], f"syntax error: {problem[1]}")
        if problem is not None:
            line, message = problem
            where = f"cell {number}, line {line}" if line else f"cell {number}"
            errors.append((first + (line or 1) - 1, f"{message} ({where})"))
            converted = [""] * len(source_lines)
        for cell_line, line_text in enumerate(converted, start=1):
            lines.append(line_text)
            cell_lines[len(lines)] = (number, cell_line)
        lines.append("")
    return "\n".join(lines) + "\n", cell_lines, errors
