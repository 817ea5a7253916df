"""Grad scalers, as TL107 and TL108 need them.

Whether a backward's gradients are loss-scaled (``scaler.scale(loss).backward()``, or through a
variable ``loss = scaler.scale(loss)``), by which scaler as the loop names it, and whether that
scaler does anything at all (``GradScaler(enabled=False)`` does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_plumbing import loop_name, receiver
from trainlint.model.loops.events import Event, EventKind
from trainlint.model.loops.schedules import call_order, resolve
from trainlint.model.syntax.nodes import dotted, method_call
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


def scaler_is_live(model: TrainingModel, event: Event) -> bool:
    """False only for a scaler provably built with ``enabled=False`` (it does nothing)."""
    scaler = scaling_of(model, event) if event.kind is EventKind.BACKWARD else receiver(event)
    value = resolve(model, scaler, event.scope)
    if value is None or value.role is not Role.SCALER:
        return True
    return value.option("enabled", True) is not False


def scaling_of(model: TrainingModel, event: Event) -> cst.BaseExpression | None:
    """The scaler a backward's operand went through: ``scaler.scale(loss).backward()``, or
    ``loss = scaler.scale(loss)`` followed by ``loss.backward()``."""
    if event.kind is not EventKind.BACKWARD or event.managed:
        return None
    if event.scaled_by:
        return receiver(event)
    name = dotted(event.operand)
    if name is None:
        return None
    order = call_order(model, event.node)
    for binding in model.lookup(name, event.scope, before=order):
        if order is not None and binding.order >= order:
            continue
        found = method_call(binding.value) if binding.unpack_index is None else None
        is_scale = found is not None and found[1] == "scale"
        if is_scale and model.role_of(found[0], event.scope) is Role.SCALER:
            return found[0]
        return None
    return None


def scaled_for(model: TrainingModel, backward: Event, other: Event) -> bool:
    """Whether ``other`` (a step or clip) sees the gradients of ``backward`` as loss-scaled.

    Scaling through a variable (``loss = scaler.scale(loss)``) may sit in an ``if`` the model
    does not record, so there ``other`` must run under no condition ``backward`` lacks.
    """
    if scaling_of(model, backward) is None or not scaler_is_live(model, backward):
        return False
    if backward.scaled_by:
        return True
    shared = {(id(c.test), c.negated) for c in backward.conditions}
    return all((id(c.test), c.negated) in shared for c in other.conditions)


def scaler_name(model: TrainingModel, event: Event, scope: Scope) -> str | None:
    """The loop's name for the scaler a backward went through (``None``: not scaled)."""
    scaler = scaling_of(model, event)
    if scaler is None:
        return None
    return loop_name(model, event, scope, event.scaled_by or dotted(scaler)) or "scaler"
