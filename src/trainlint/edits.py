"""Building blocks for rules' fixes: statement-level edits located on the analyzed text.

Rules describe a fix as edits (see :class:`trainlint.rule.Edit` / :class:`TextEdit`); the
helpers here cover the edits that are about whole statements (move one, insert after one), so
each rule does not work out lines and indentation again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.rule import Span, TextEdit

if TYPE_CHECKING:
    from trainlint.model import TrainingModel


def statement_of(model: TrainingModel, node: cst.CSTNode) -> cst.SimpleStatementLine | None:
    """The statement line that is exactly ``node`` (as an expression statement or a call in
    one), or None when ``node`` is part of a larger statement."""
    current: cst.CSTNode | None = node
    while current is not None and not isinstance(current, cst.SimpleStatementLine):
        parent = model.dataflow.parent(current)
        if isinstance(parent, cst.Expr) and parent.value is current:
            current = parent
            continue
        if isinstance(parent, cst.SimpleStatementLine) and current in parent.body:
            current = parent
            continue
        return None
    if current is None or len(current.body) != 1:
        return None
    return current


def _lines(model: TrainingModel, statement: cst.CSTNode) -> tuple[int, int] | None:
    found = model.positions.get(statement)
    if found is None:
        return None
    return found.start.line, found.end.line


def move_after(
    model: TrainingModel, moved: cst.SimpleStatementLine, anchor: cst.SimpleStatementLine
) -> tuple[TextEdit, TextEdit] | None:
    """Move the lines of ``moved`` to just after ``anchor``, both in one block, ``moved``
    first; None when that is not a plain move of whole lines."""
    if model.dataflow.parent(moved) is not model.dataflow.parent(anchor):
        return None
    moved_lines, anchor_lines = _lines(model, moved), _lines(model, anchor)
    if moved_lines is None or anchor_lines is None or moved_lines[1] >= anchor_lines[0]:
        return None
    text_lines = model.text.splitlines(keepends=True)
    first, last = moved_lines
    after = anchor_lines[1]
    if after >= len(text_lines) or not text_lines[after - 1].endswith("\n"):
        return None  # the anchor ends the file: nowhere to insert a whole line
    block = "".join(text_lines[first - 1 : last])
    return (
        TextEdit(Span(first, 1, last + 1, 1), ""),
        TextEdit(Span(after + 1, 1, after + 1, 1), block),
    )


def _indent_of(model: TrainingModel, line: int) -> str:
    text_lines = model.text.splitlines()
    if not 1 <= line <= len(text_lines):
        return ""
    current = text_lines[line - 1]
    return current[: len(current) - len(current.lstrip())]


def insert_before(model: TrainingModel, statement: cst.CSTNode, code: str) -> TextEdit | None:
    """A new line ``code`` just above ``statement``, at its indentation (None when the
    statement does not start its line, as after a ``;``)."""
    found = model.positions.get(statement)
    if found is None:
        return None
    line = found.start.line
    indent = _indent_of(model, line)
    if len(indent) != found.start.column:
        return None
    return TextEdit(Span(line, 1, line, 1), f"{indent}{code}\n")


def insert_after(model: TrainingModel, statement: cst.CSTNode, code: str) -> TextEdit | None:
    """A new line ``code`` just below the whole of ``statement``, at its indentation."""
    found = model.positions.get(statement)
    if found is None:
        return None
    text_lines = model.text.splitlines(keepends=True)
    after = found.end.line
    indent = _indent_of(model, found.start.line)
    if after > len(text_lines) or len(indent) != found.start.column:
        return None
    if after == len(text_lines):  # the statement ends the file: add a line at its end
        last = text_lines[-1]
        end = len(last.rstrip("\r\n")) + 1
        return TextEdit(Span(after, end, after, end), f"\n{indent}{code}")
    return TextEdit(Span(after + 1, 1, after + 1, 1), f"{indent}{code}\n")


def wrap_in_block(
    model: TrainingModel, statement: cst.CSTNode, header: str
) -> tuple[TextEdit, ...] | None:
    """Put ``statement`` inside a new ``header:`` block (``with torch.no_grad():``): a line
    above it and one more indentation level on each of its lines. None when that could
    change a string (a triple-quoted string spans its lines) or it does not start its line."""
    found = model.positions.get(statement)
    if found is None:
        return None
    code = model.module.code_for_node(statement)
    if '"""' in code or "'''" in code or "\\\n" in code:
        return None
    first, last = found.start.line, found.end.line
    indent = _indent_of(model, first)
    if len(indent) != found.start.column:
        return None
    unit = model.module.default_indent
    text_lines = model.text.splitlines()
    edits = [TextEdit(Span(first, 1, first, 1), f"{indent}{header}\n{unit}")]
    for line in range(first + 1, min(last, len(text_lines)) + 1):
        if text_lines[line - 1].strip():
            edits.append(TextEdit(Span(line, 1, line, 1), unit))
    return tuple(edits)


def append_lines(model: TrainingModel, statement: cst.CSTNode, lines: list[str]) -> TextEdit | None:
    """New lines just below ``statement``, at its indentation (``lines`` indented relative to
    it: a block header and its body), inserted at the end of the statement's own last line so
    the edit stays inside it (in a notebook, inside its cell). None when the statement does
    not start its line."""
    found = model.positions.get(statement)
    if found is None:
        return None
    indent = _indent_of(model, found.start.line)
    text_lines = model.text.splitlines()
    if len(indent) != found.start.column or found.end.line > len(text_lines):
        return None
    end = len(text_lines[found.end.line - 1]) + 1
    code = "".join(f"\n{indent}{line}" for line in lines)
    return TextEdit(Span(found.end.line, end, found.end.line, end), code)
