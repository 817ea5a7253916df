"""Notebook cells as the model sees them: the code cells of a notebook are joined into one
module with a blank line between cells (see :mod:`trainlint.notebooks`), and ``# %%`` cell
scripts are run cell by cell too. Jupyter displays the value of a cell's last expression, so a
result left there is looked at, not thrown away.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

if TYPE_CHECKING:
    from trainlint.model import TrainingModel

_CELL_MARKER = re.compile(r"^# %%", re.M)


def runs_in_cells(model: TrainingModel) -> bool:
    """A notebook, or a script split into ``# %%`` cells."""
    return model.path.suffix == ".ipynb" or bool(_CELL_MARKER.search(model.text))


def at_cell_top_level(model: TrainingModel, statement: cst.CSTNode) -> bool:
    """Whether ``statement`` (an expression statement or its line) is at the module's top
    level, in no block."""
    line = model.dataflow.parent(statement)
    if isinstance(statement, cst.SimpleStatementLine):
        line = statement
    return line is not None and isinstance(model.dataflow.parent(line), cst.Module)


def may_end_cell(model: TrainingModel, statement: cst.CSTNode) -> bool:
    """Whether a top-level ``statement`` of a cell-run file may be its cell's last one: only
    comments come before a blank line (cells are joined with one between them; a ``# %%``
    marker is a comment) or the end of the text."""
    if not (runs_in_cells(model) and at_cell_top_level(model, statement)):
        return False
    found = model.positions.get(statement)
    if found is None:
        return False
    for line in model.text.splitlines()[found.end.line :]:
        stripped = line.strip()
        if not stripped or stripped.startswith("# %%"):
            return True
        if not stripped.startswith("#"):
            return False
    return True
