"""Bound-method aliases: ``step = optimizer.step`` then ``step()`` steps ``optimizer``.

Also through ``functools.partial(optimizer.zero_grad, set_to_none=True)``. An alias counts when
every visible binding of the called name is the same kind of bound method (the name is not
rebound to something else on another path), and the receiver is a value, not an imported
module (``relu = F.relu`` is a library function).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


def bound_method(
    model: TrainingModel, call: cst.Call, scope: Scope
) -> tuple[cst.BaseExpression, str] | None:
    """``(receiver, method)`` of ``call``: written ``r.m(...)``, or called through an alias."""
    name = dotted(call.func)
    if name is not None and name != "self":
        alias = _alias(model, name, scope)
        if alias is not None:
            return alias
    return method_call(call)


def _alias(model: TrainingModel, name: str, scope: Scope) -> tuple[cst.BaseExpression, str] | None:
    bindings = [b for b in model.lookup(name, scope) if not b.from_iteration]
    if not bindings or any(b.augmented or b.unpack_index is not None for b in bindings):
        return None
    found: set[str] = set()
    method: tuple[cst.BaseExpression, str] | None = None
    for binding in bindings:
        target = _unpartial(model, binding.value)
        if not isinstance(target, cst.Attribute):
            return None
        receiver = target.value
        receiver_name = dotted(receiver)
        if receiver_name is None or model.imports.qualify_dotted(receiver_name):
            return None  # ``relu = F.relu``, ``step = torch.optim.SGD.step``: not a value's method
        found.add(f"{receiver_name}.{target.attr.value}")
        if method is None:
            method = (receiver, target.attr.value)
    return method if len(found) == 1 else None


def _unpartial(model: TrainingModel, value: cst.BaseExpression | None) -> cst.BaseExpression | None:
    if isinstance(value, cst.Call) and model.imports.qualify(value.func) == "functools.partial":
        return positional(value, 0)
    return value
