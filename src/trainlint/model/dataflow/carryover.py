"""Totals carried over from one epoch into the next: accumulators and metric objects that are
filled in a batch loop, read once per epoch after it, and never started afresh.

:func:`carried_totals` finds, for every batch loop directly inside an outer (epoch) loop of
the same function:

* running totals -- a local ``total`` bound before the epoch loop and outside it, increased
  in the batch loop by a measurement (a loss or model output, ``loss.item()``, a count of
  correct predictions ``(pred == y).sum().item()``; not ``+= 1`` or ``+= x.size(0)``, which
  count steps or samples on purpose, as ``global_step`` does);
* lists -- ``losses = []`` before the epoch loop, a measurement appended per batch, and the
  whole list averaged per epoch (``np.mean(losses)``; a history read as ``losses[-1]`` or
  plotted is not a per-epoch mean);
* meters -- an instance of a same-project meter class (``AverageMeter``, see
  :mod:`.objects`) updated in the batch loop and whose average is read after it;
* metric objects -- torchmetrics / torcheval metrics and keras metrics, updated in the batch
  loop (``update``, ``update_state``, calling the metric; also in a same-file step function
  the batch loop calls, as TF's ``@tf.function train_step``) and computed after it
  (``compute()``, ``result()``),

when nothing in the epoch loop starts them afresh: no rebinding (a meter re-created per
epoch), no ``reset()``/``reset_state()``/``reset_states()``/``clear()``/``zero_()`` -- also
under a condition, or in a same-file helper the epoch loop calls -- and the object is not
handed to any other call there (which may reset it). The report is the first read of the
total after the batch loop in the epoch loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.averages import finalizers
from trainlint.model.dataflow.batches import batching
from trainlint.model.dataflow.carried_objects import carried_meters, carried_metrics
from trainlint.model.dataflow.epochs import (
    CarriedTotal,
    TotalKind,
    first_read,
    made_before,
    restarted_in,
)
from trainlint.model.dataflow.reductions import is_size_like
from trainlint.model.loops.events import EventKind
from trainlint.model.syntax.nodes import descendants, dotted, literal, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

__all__ = ["CarriedTotal", "TotalKind", "carried_totals"]

_COMPARING_METHODS = {"eq", "ne", "lt", "le", "gt", "ge"}
_CONVERSIONS = {"item", "cpu", "detach", "numpy", "tolist", "float", "double", "sum", "mean"}


def carried_totals(model: TrainingModel) -> list[CarriedTotal]:
    found: list[CarriedTotal] = []
    for batch_loop in model.loops:
        epoch_loop = batch_loop.parent
        if epoch_loop is None or batch_loop.external or epoch_loop.scope is not batch_loop.scope:
            continue
        found.extend(_totals(model, epoch_loop, batch_loop))
        found.extend(_lists(model, epoch_loop, batch_loop))
        found.extend(carried_meters(model, epoch_loop, batch_loop))
        found.extend(carried_metrics(model, epoch_loop, batch_loop))
    return found


# ---------------------------------------------------------------------- running totals
def _totals(model: TrainingModel, epoch: LoopInfo, batch: LoopInfo) -> Iterator[CarriedTotal]:
    if not _walks_data(model, batch):
        return
    seen: set[str] = set()
    for event in model.iteration(batch):
        name = event.subject
        if event.kind is not EventKind.ACCUMULATE or event.via or not name or "." in name:
            continue
        if name in seen or not _adds(event.node):
            continue
        seen.add(name)
        if name in batch.scope.params or not _measures(model, event.operand, event.scope):
            continue
        if model.dataflow.uses(name, batch.scope).backward:
            continue  # a loss summed over batches on purpose and back-propagated (TL201's too)
        made = made_before(model, name, epoch)
        if made is None or restarted_in(model, name, epoch):
            continue
        report = first_read(model, name, epoch, batch)
        if report is not None:
            companions = _carried_divisors(model, report, epoch, batch)
            if companions is None:
                continue  # ``total / global_step``: a running mean since the start, on purpose
            yield CarriedTotal(
                name, TotalKind.TOTAL, epoch, batch, event.node, report, made, companions
            )


def _carried_divisors(
    model: TrainingModel, report: cst.CSTNode, epoch: LoopInfo, batch: LoopInfo
) -> tuple[tuple[str, cst.CSTNode], ...] | None:
    """The carried counters a division report divides by (``correct / total``); None when
    one of them counts steps (``+= 1``): a total over a global step count is the running
    mean since the start of training, which is what such code means to report."""
    if not (isinstance(report, cst.BinaryOperation) and isinstance(report.operator, cst.Divide)):
        return ()
    counted = {
        e.subject: e.operand
        for e in model.iteration(batch)
        if e.kind is EventKind.ACCUMULATE and not e.via and e.subject and _adds(e.node)
    }
    found = []
    for node in (report.right, *descendants(report.right)):
        if isinstance(node, cst.Name) and node.value in counted:
            made = made_before(model, node.value, epoch)
            if made is not None and not restarted_in(model, node.value, epoch):
                if literal(counted[node.value], None) == 1:
                    return None
                found.append((node.value, made))
    return tuple(found)


# ---------------------------------------------------------------------- lists
def _lists(model: TrainingModel, epoch: LoopInfo, batch: LoopInfo) -> Iterator[CarriedTotal]:
    """``losses = []`` before the epochs, ``losses.append(loss.item())`` per batch and a mean
    of the whole list per epoch (``np.mean(losses)``, ``sum(losses) / len(losses)``); a list
    kept for a history (``losses[-1]``, plotting, a slice) is not averaged whole."""
    if not _walks_data(model, batch):
        return
    seen: set[str] = set()
    for event in model.iteration(batch):
        name = event.subject
        if event.kind is not EventKind.APPEND or event.via or not name or "." in name:
            continue
        if name in seen or name in batch.scope.params:
            continue
        seen.add(name)
        if not _measures(model, event.operand, event.scope):
            continue
        made = made_before(model, name, epoch)
        if not _empty_list(getattr(made, "value", None)) or restarted_in(model, name, epoch):
            continue
        inside = {id(n) for n in descendants(epoch.body)}
        for finalizer in finalizers(model.dataflow, batch, name, True):
            if id(finalizer.node) in inside:
                yield CarriedTotal(
                    name, TotalKind.LIST, epoch, batch, event.node, finalizer.node, made
                )
                break


def _empty_list(value: cst.BaseExpression | None) -> bool:
    if isinstance(value, cst.List):
        return not value.elements
    return isinstance(value, cst.Call) and dotted(value.func) == "list" and not value.args


def _walks_data(model: TrainingModel, loop: LoopInfo) -> bool:
    """A loop over batches: a loader or pipeline, or any loop that runs the model."""
    if batching(model.dataflow, loop) is not None:
        return True
    return any(e.kind is EventKind.FORWARD for e in model.iteration(loop))


def _adds(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.AugAssign):
        return isinstance(node.operator, cst.AddAssign) and isinstance(node.target, cst.Name)
    return isinstance(node, cst.Assign)  # ``total = total + x``


def _measures(model: TrainingModel, operand: cst.BaseExpression | None, scope: Scope) -> bool:
    """Whether ``operand`` is a measurement (a loss, a model output, a count of correct
    predictions), not a step or sample count."""
    if operand is None or literal(operand, None) is not None or is_size_like(operand):
        return False
    if any(_compares(n) for n in (operand, *descendants(operand))):
        return True  # ``(pred == y).sum().item()``, ``pred.eq(y).sum().item()``
    flow = model.dataflow
    before = flow.order(operand)
    core = _unconverted(operand)
    if isinstance(core, cst.BinaryOperation) and isinstance(core.operator, cst.Multiply):
        sized = is_size_like(core.right) or is_size_like(core.left)
        if sized:  # ``loss.item() * x.size(0)``
            core = _unconverted(core.left if is_size_like(core.right) else core.right)
    if flow.made_by_model(core, scope, before):
        return True
    fact = flow.fact(core, scope, before)
    origin = fact.origin
    return isinstance(origin, cst.Call) and flow.criterion_of_call(origin, scope) is not None


def _compares(node: cst.CSTNode) -> bool:
    if isinstance(node, cst.Comparison):
        return True
    method = method_call(node)
    return method is not None and method[1] in _COMPARING_METHODS


def _unconverted(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``loss.item()`` -> ``loss``; ``float(loss)`` -> ``loss``."""
    while isinstance(expr, cst.Call):
        method = method_call(expr)
        if method is not None and method[1] in _CONVERSIONS and not expr.args:
            expr = method[0]
        elif dotted(expr.func) in ("float", "int") and positional(expr, 0) is not None:
            expr = positional(expr, 0)  # type: ignore[assignment]
        else:
            break
    return expr
