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
