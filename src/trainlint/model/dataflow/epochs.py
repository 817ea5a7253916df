"""What an epoch loop does to a total filled in its batch loop: where the total was made,
whether anything in the epoch loop starts it afresh, and where the epoch reports it. Shared by
:mod:`.carryover` (running totals) and :mod:`.carried_objects` (meters, metric objects).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.uses import own_nodes
from trainlint.model.syntax.nodes import descendants, dotted, method_call, names_in, target_names

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, LoopInfo, Scope


class TotalKind(enum.Enum):
    TOTAL = "total"  # ``running_loss += loss.item()``
    LIST = "list"  # ``losses.append(loss.item())`` then ``np.mean(losses)``
    METER = "meter"  # ``losses.update(loss.item(), n)`` on a same-project meter
    METRIC = "metric"  # torchmetrics / torcheval / keras metric objects


@dataclass(frozen=True)
class CarriedTotal:
    """A total that keeps growing across the epochs while it is reported per epoch."""

    name: str
    kind: TotalKind
    epoch_loop: LoopInfo
    batch_loop: LoopInfo
    increment: cst.CSTNode  # the ``+=`` statement or the update call
    report: cst.CSTNode  # the first read after the batch loop: a call, a division, a statement
    made: cst.CSTNode | None  # the binding before the epoch loop
    #: Counters the report divides by that are carried over too (``correct / total``): a
    #: reset must reset them with the total, or the ratio mixes epochs the other way.
    companions: tuple[tuple[str, cst.CSTNode], ...] = ()
    #: A meter's own method that starts it afresh (``reset``), when its class has one.
    reset_method: str | None = None


_RESETS = {"reset", "reset_state", "reset_states", "clear", "zero_", "reset_parameters"}


def made_before(model: TrainingModel, name: str, epoch: LoopInfo) -> cst.CSTNode | None:
    """The statement binding ``name`` before ``epoch`` and outside it (its latest such)."""
    epoch_order = model.order_of(epoch.node)
    if epoch_order is None:
        return None
    bindings: list[Binding] = list(epoch.scope.bindings.get(name, []))
    if not bindings and not epoch.scope.is_module:
        bindings = list(model.module_scope.bindings.get(name, []))
    inside = {id(n) for n in descendants(epoch.node)}
    before = [
        b
        for b in bindings
        if not b.augmented
        and not b.from_iteration
        and b.order < epoch_order
        and id(b.statement) not in inside
    ]
    if not before:
        return None
    return max(before, key=lambda b: b.order).statement


def restarted_in(
    model: TrainingModel, name: str, epoch: LoopInfo, allowed: set[str] | None = None
) -> bool:
    """Whether anything in ``epoch`` may start ``name`` afresh: a plain rebinding, a reset
    method, a call of a method not in ``allowed`` (objects only), the object passed to a call,
    or a same-file helper doing one of these to the same (global) name."""
    for node in own_nodes(epoch.node):
        if _restarts(node, name, allowed):
            return True
        callee = helper_called(model, node, epoch.scope) if type(node) is cst.Call else None
        if callee is None or name in callee.params:
            continue
        if any(_restarts(n, name, allowed) for n in own_nodes(callee.node)):
            return True
    return False


def helper_called(model: TrainingModel, call: cst.Call, fallback: Scope) -> Scope | None:
    """The same-file function ``call`` runs (other modules' cannot reach a local total)."""
    site = model.dataflow.call_sites().get(id(call))
    return model.callee(call, site[0] if site else fallback, external=False)


#: The only nodes that can restart a name (the rest are ruled out by class, without the ABC
#: ``isinstance`` checks below failing for every node: see syntax.nodes).
_RESTARTING = frozenset({cst.Assign, cst.AnnAssign, cst.Del, cst.AugAssign, cst.Call})


def _restarts(node: cst.CSTNode, name: str, allowed: set[str] | None) -> bool:
    if type(node) not in _RESTARTING:
        return False
    if isinstance(node, (cst.Assign, cst.AnnAssign)):
        targets = node.targets if isinstance(node, cst.Assign) else [node]
        value = node.value
        if value is not None and name in names_in(value):
            return False  # ``total = total + x`` adds to it
        return any(name in target_names(t.target) for t in targets)
    if isinstance(node, cst.Del):
        target = node.target
        return dotted(target.value if isinstance(target, cst.Subscript) else target) == name
    if isinstance(node, cst.AugAssign) and dotted(node.target) == name:
        return not isinstance(node.operator, cst.AddAssign)  # ``total *= 0``
    if not isinstance(node, cst.Call):
        return False
    method = method_call(node)
    if method is not None and dotted(method[0]) == name:
        if method[1] in _RESETS:
            return True
        return allowed is not None and method[1] not in allowed
    # handed to another call, which may reset it (``reset_all(meters)``); only for objects:
    # a number passed along cannot be reset
    return allowed is not None and any(dotted(a.value) == name for a in node.args)


def _after(epoch: LoopInfo, batch: LoopInfo) -> Iterator[cst.CSTNode]:
    """The nodes of ``epoch``'s body after ``batch`` (in order, not entering ``batch``)."""
    inside = {id(n) for n in descendants(batch.node)}
    passed = False
    for node in own_nodes(epoch.body):
        if node is batch.node:
            passed = True
        elif passed and id(node) not in inside:
            yield node


def first_read(
    model: TrainingModel, name: str, epoch: LoopInfo, batch: LoopInfo
) -> cst.CSTNode | None:
    for node in _after(epoch, batch):
        if isinstance(node, cst.Name) and node.value == name and not _is_target(model, node):
            return _report_of(model, node)
    return None


def first_attribute_read(
    model: TrainingModel, name: str, reads: set[str] | frozenset[str], epoch, batch
) -> cst.CSTNode | None:
    for node in _after(epoch, batch):
        if (
            isinstance(node, cst.Attribute)
            and dotted(node.value) == name
            and node.attr.value in reads
        ):
            return _report_of(model, node)
    return None


def _is_target(model: TrainingModel, name: cst.Name) -> bool:
    parent = model.dataflow.parent(name)
    if isinstance(parent, cst.AssignTarget):
        return True
    if isinstance(parent, cst.Attribute) and parent.attr is name:
        return True
    return isinstance(parent, cst.Arg) and parent.keyword is name


def _report_of(model: TrainingModel, node: cst.CSTNode) -> cst.CSTNode:
    """The report around a read: a division, the argument of the innermost call that is not
    part of the read itself (of ``print(...)``, ``logger.info(...)``; not ``.compute()``,
    ``.item()``), else the statement. An argument rather than the call: one ``print`` may
    report several totals."""
    flow = model.dataflow
    child, current = node, flow.parent(node)
    while current is not None and not isinstance(current, cst.BaseStatement):
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, cst.Divide):
            return current
        if isinstance(current, cst.Call) and not _continues_read(current, child):
            return child.value if isinstance(child, cst.Arg) else current
        child, current = current, flow.parent(current)
    return current if current is not None else node


def _continues_read(call: cst.Call, child: cst.CSTNode) -> bool:
    """``meter.compute()`` / ``total.item()``: a call that is part of the read itself."""
    func = call.func
    return func is child or (isinstance(func, cst.Attribute) and func.value is child)
