"""Meters and metric objects carried from one epoch into the next (see :mod:`.carryover`):
a same-project meter (``AverageMeter``) or a torchmetrics / torcheval / keras metric made
before the epoch loop, updated in its batch loop (a metric also in a same-file step function
the batch loop calls, as TF's ``@tf.function train_step``) and read after it (the meter's
average, ``compute()``, ``result()``), never re-made, reset or handed to another call there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.epochs import (
    CarriedTotal,
    TotalKind,
    first_attribute_read,
    helper_called,
    made_before,
    restarted_in,
)
from trainlint.model.dataflow.objects import instance_class, meter_updates
from trainlint.model.dataflow.uses import own_nodes
from trainlint.model.syntax.nodes import dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

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
_RESET_METHODS = ("reset", "reset_state", "reset_states", "clear")


# ---------------------------------------------------------------------- meters
def carried_meters(
    model: TrainingModel, epoch: LoopInfo, batch: LoopInfo
) -> Iterator[CarriedTotal]:
    seen: set[str] = set()
    for update in meter_updates(model, batch):
        name = update.receiver
        if not name or "." in name or name in seen or name in batch.scope.params:
            continue
        seen.add(name)
        made = made_before(model, name, epoch)
        reads = update.summary.averages | {update.summary.total}
        if made is None or restarted_in(model, name, epoch, allowed={"update", *reads}):
            continue
        report = first_attribute_read(model, name, reads, epoch, batch)
        if report is None:
            continue
        receiver = update.call.func.value  # type: ignore[attr-defined]
        cls = instance_class(model, receiver, batch.scope)
        reset = next((m for m in _RESET_METHODS if cls and model.method(cls, m)), None)
        yield CarriedTotal(
            name, TotalKind.METER, epoch, batch, update.call, report, made, reset_method=reset
        )


# ---------------------------------------------------------------------- metric objects
def carried_metrics(
    model: TrainingModel, epoch: LoopInfo, batch: LoopInfo
) -> Iterator[CarriedTotal]:
    scope = batch.scope
    for name, made in _metric_objects(model, scope, epoch):
        update = _metric_update(model, name, batch)
        if update is None:
            continue
        if restarted_in(model, name, epoch, allowed=_METRIC_UPDATES | _METRIC_READS):
            continue
        report = first_attribute_read(model, name, _METRIC_READS, epoch, batch)
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
        made = made_before(model, name, epoch)
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
        callee = helper_called(model, node, batch.scope)
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
