"""Results thrown away: an expression statement whose call returns a new value and changes
nothing (``x.to(device)`` on a tensor, ``ds.shuffle(1000)`` on a ``tf.data`` dataset).

Only the outermost call of the statement counts: in ``x.view(-1).copy_(y)`` the view is used
by the in-place copy. The receiver must be KNOWN to be a tensor (see :mod:`..values.evidence`)
or a ``tf.data`` pipeline from a known source (see :mod:`..frameworks.tfdata`). A module's
``to``/``cuda``/``float``/``half`` move it in place, and so do objects of other libraries
(PyG's ``Batch``, HF's ``BatchEncoding``), so a receiver known or named to be a module never
counts. A ``.cpu()`` in a function that reads a clock is a deliberate wait for the GPU
(benchmarks time it that way). In a notebook (or a ``# %%`` cell script) a statement at the
top level of a cell is displayed, not discarded: left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.cells import at_cell_top_level, runs_in_cells
from trainlint.model.syntax.nodes import method_call
from trainlint.model.values.evidence import DATASET_METHODS, OUT_OF_PLACE_METHODS
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

_CLOCKS = {"time.time", "time.perf_counter", "time.monotonic", "timeit.default_timer"}


@dataclass(frozen=True, eq=False)
class OutOfPlaceDiscard:
    statement: cst.Expr
    call: cst.Call
    receiver: cst.BaseExpression
    method: str
    scope: Scope
    dataset: bool  # a ``tf.data`` dataset's method (else a tensor's)


def discarded_results(model: TrainingModel) -> list[OutOfPlaceDiscard]:
    found = []
    cells = runs_in_cells(model)
    for statement, scope in model.expression_statements:
        method = method_call(statement.value)
        if method is None:
            continue
        receiver, name = method
        call = statement.value
        assert isinstance(call, cst.Call)
        if name == "type" and not call.args:
            continue  # ``x.type()`` returns the type's name: no tensor thrown away
        if cells and scope.is_module and at_cell_top_level(model, statement):
            continue  # a cell's value is displayed
        if name == "cpu" and _reads_clock(model, scope):
            continue  # ``out.cpu()`` between two clock reads waits for the GPU on purpose
        before = model.dataflow.order(statement)
        if name in OUT_OF_PLACE_METHODS and _tensor_not_module(model, receiver, scope, before):
            found.append(OutOfPlaceDiscard(statement, call, receiver, name, scope, False))
        elif name in DATASET_METHODS and model.evidence.is_dataset(receiver, scope, before):
            found.append(OutOfPlaceDiscard(statement, call, receiver, name, scope, True))
    return found


def _tensor_not_module(
    model: TrainingModel, receiver: cst.BaseExpression, scope: Scope, before: int | None
) -> bool:
    if not model.evidence.is_tensor(receiver, scope, before):
        return False
    value = model.value_of(receiver, scope)
    # ``model.to(device)`` moves the module in place (``is_known_module`` would count the
    # ``x.cuda()`` being judged as evidence of a module)
    return value is None or value.role is not Role.MODEL


def _reads_clock(model: TrainingModel, scope: Scope) -> bool:
    return any(site.qualified in _CLOCKS for site in model.calls_in(scope))
