"""Totals carried over from one epoch into the next: accumulators and metric objects that are
filled in a batch loop, read once per epoch after it, and never started afresh.

:func:`carried_totals` finds, for every batch loop directly inside an outer (epoch) loop of
the same function:

* running totals -- a local ``total`` bound before the epoch loop and outside it, increased
  in the batch loop by a measurement (a loss or model output, ``loss.item()``, a count of
  correct predictions ``(pred == y).sum().item()``; not ``+= 1`` or ``+= x.size(0)``, which
  count steps or samples on purpose, as ``global_step`` does);
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

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.batches import batching
from trainlint.model.dataflow.objects import instance_class, meter_updates
from trainlint.model.dataflow.reductions import is_size_like
from trainlint.model.dataflow.uses import own_nodes
from trainlint.model.loops.events import EventKind
from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    literal,
    method_call,
    names_in,
    positional,
)

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, LoopInfo, Scope


class TotalKind(enum.Enum):
    TOTAL = "total"  # ``running_loss += loss.item()``
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


_METRIC_LIBRARIES = (
    "torchmetrics.",
    "torcheval.metrics.",
    "tensorflow.keras.metrics.",
    "keras.metrics.",
    "tensorflow.metrics.",
    "tf_keras.metrics.",
)
_FUNCTIONAL = (".functional.", "torchmetrics.functional", "torcheval.metrics.functional")
_METRIC_UPDATES = {"update", "update_state", "forward"}
_METRIC_READS = {"compute", "result"}
_RESETS = {"reset", "reset_state", "reset_states", "clear", "zero_", "reset_parameters"}
_RESET_METHODS = ("reset", "reset_state", "reset_states", "clear")
_CONVERSIONS = {"item", "cpu", "detach", "numpy", "tolist", "float", "double", "sum", "mean"}


def carried_totals(model: TrainingModel) -> list[CarriedTotal]:
    found: list[CarriedTotal] = []
    for batch_loop in model.loops:
        epoch_loop = batch_loop.parent
        if epoch_loop is None or batch_loop.external or epoch_loop.scope is not batch_loop.scope:
            continue
        found.extend(_totals(model, epoch_loop, batch_loop))
        found.extend(_meters(model, epoch_loop, batch_loop))
        found.extend(_metrics(model, epoch_loop, batch_loop))
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
        made = _made_before(model, name, epoch)
        if made is None or _restarted_in(model, name, epoch):
            continue
        report = _first_read(model, name, epoch, batch)
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
            made = _made_before(model, node.value, epoch)
            if made is not None and not _restarted_in(model, node.value, epoch):
                if literal(counted[node.value], None) == 1:
                    return None
                found.append((node.value, made))
    return tuple(found)


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
    if any(
        isinstance(n, cst.Comparison) for n in (operand, *descendants(operand))
    ):  # ``(pred == y).sum().item()``
        return True
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


# ---------------------------------------------------------------------- meters
def _meters(model: TrainingModel, epoch: LoopInfo, batch: LoopInfo) -> Iterator[CarriedTotal]:
    seen: set[str] = set()
    for update in meter_updates(model, batch):
        name = update.receiver
        if not name or "." in name or name in seen or name in batch.scope.params:
            continue
        seen.add(name)
        made = _made_before(model, name, epoch)
        reads = update.summary.averages | {update.summary.total}
        if made is None or _restarted_in(model, name, epoch, allowed={"update", *reads}):
            continue
        report = _first_attribute_read(model, name, reads, epoch, batch)
        if report is None:
            continue
        receiver = update.call.func.value  # type: ignore[attr-defined]
        cls = instance_class(model, receiver, batch.scope)
        reset = next((m for m in _RESET_METHODS if cls and model.method(cls, m)), None)
        yield CarriedTotal(
            name, TotalKind.METER, epoch, batch, update.call, report, made, reset_method=reset
        )


# ---------------------------------------------------------------------- metric objects
def _metrics(model: TrainingModel, epoch: LoopInfo, batch: LoopInfo) -> Iterator[CarriedTotal]:
    scope = batch.scope
    for name, made in _metric_objects(model, scope, epoch):
        update = _metric_update(model, name, batch)
        if update is None:
            continue
        if _restarted_in(model, name, epoch, allowed=_METRIC_UPDATES | _METRIC_READS):
            continue
        report = _first_attribute_read(model, name, _METRIC_READS, epoch, batch)
        if report is not None:
            yield CarriedTotal(name, TotalKind.METRIC, epoch, batch, update, report, made)


def _metric_objects(
    model: TrainingModel, scope: Scope, epoch: LoopInfo
) -> Iterator[tuple[str, cst.CSTNode]]:
    """Plain names bound to a metric constructor before ``epoch`` (in its function or, for a
    module-level metric, the module)."""
    names: set[str] = set()
    for current in (scope, model.module_scope):
        for name, bindings in current.bindings.items():
            if any(
                isinstance(b.value, cst.Call) and _is_metric_constructor(model, b.value)
                for b in bindings
            ):
                names.add(name)
    for name in sorted(names):
        if "." in name or name in scope.params:
            continue
        made = _made_before(model, name, epoch)
        if made is None:
            continue
        value = getattr(made, "value", None)
        if isinstance(value, cst.Call) and _is_metric_constructor(model, value):
            yield name, made


def _is_metric_constructor(model: TrainingModel, call: cst.Call) -> bool:
    qualified = model.imports.qualify(call.func) or ""
    if not qualified.startswith(_METRIC_LIBRARIES) or any(f in qualified for f in _FUNCTIONAL):
        return False
    last = qualified.rsplit(".", 1)[-1]
    return last[:1].isupper()  # a class, not a function such as ``keras.metrics.mse``


def _metric_update(model: TrainingModel, name: str, batch: LoopInfo) -> cst.Call | None:
    """The call in ``batch`` (or in a same-file function it calls) that adds to ``name``."""
    for node in own_nodes(batch.body):
        if not isinstance(node, cst.Call):
            continue
        if _updates(node, name):
            return node
        callee = _helper(model, node, batch.scope)
        if callee is None or name in callee.bindings:
            continue  # a helper with a local of that name updates its own
        if any(isinstance(n, cst.Call) and _updates(n, name) for n in own_nodes(callee.node)):
            return node
    return None


def _updates(call: cst.Call, name: str) -> bool:
    if dotted(call.func) == name:
        return True  # ``train_loss(loss)``, ``accuracy(preds, target)``
    method = method_call(call)
    return method is not None and method[1] in _METRIC_UPDATES and dotted(method[0]) == name


# ---------------------------------------------------------------------- shared
def _made_before(model: TrainingModel, name: str, epoch: LoopInfo) -> cst.CSTNode | None:
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


def _restarted_in(
    model: TrainingModel, name: str, epoch: LoopInfo, allowed: set[str] | None = None
) -> bool:
    """Whether anything in ``epoch`` may start ``name`` afresh: a plain rebinding, a reset
    method, a call of a method not in ``allowed`` (objects only), the object passed to a call,
    or a same-file helper doing one of these to the same (global) name."""
    for node in own_nodes(epoch.node):
        if _restarts(node, name, allowed):
            return True
        callee = _helper(model, node, epoch.scope) if isinstance(node, cst.Call) else None
        if callee is None or name in callee.params:
            continue
        if any(_restarts(n, name, allowed) for n in own_nodes(callee.node)):
            return True
    return False


def _helper(model: TrainingModel, call: cst.Call, fallback: Scope) -> Scope | None:
    """The same-file function ``call`` runs (other modules' cannot reach a local total)."""
    site = model.dataflow.call_sites().get(id(call))
    return model.callee(call, site[0] if site else fallback, external=False)


def _restarts(node: cst.CSTNode, name: str, allowed: set[str] | None) -> bool:
    if isinstance(node, (cst.Assign, cst.AnnAssign)):
        targets = node.targets if isinstance(node, cst.Assign) else [node]
        value = node.value
        if value is not None and name in names_in(value):
            return False  # ``total = total + x`` adds to it
        return any(name in _bound(t.target) for t in targets)
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


def _bound(target: cst.BaseExpression) -> set[str]:
    if isinstance(target, (cst.Tuple, cst.List)):
        found: set[str] = set()
        for element in target.elements:
            found |= _bound(element.value)
        return found
    name = dotted(target)
    return {name} if name else set()


def _after(epoch: LoopInfo, batch: LoopInfo) -> Iterator[cst.CSTNode]:
    """The nodes of ``epoch``'s body after ``batch`` (in order, not entering ``batch``)."""
    inside = {id(n) for n in descendants(batch.node)}
    passed = False
    for node in own_nodes(epoch.body):
        if node is batch.node:
            passed = True
        elif passed and id(node) not in inside:
            yield node


def _first_read(
    model: TrainingModel, name: str, epoch: LoopInfo, batch: LoopInfo
) -> cst.CSTNode | None:
    for node in _after(epoch, batch):
        if isinstance(node, cst.Name) and node.value == name and not _is_target(model, node):
            return _report_of(model, node)
    return None


def _first_attribute_read(
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
