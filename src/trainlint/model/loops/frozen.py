"""Frozen parameters: modules whose gradients the file turns off for good.

``backbone.requires_grad_(False)`` or ``for p in encoder.parameters(): p.requires_grad = False``,
with nothing that turns gradients of the module (or a part of it) back on. A frozen module is
kept in eval mode on purpose (TL403), and its output on data carries no autograd graph (the
dataflow's graph tensors). The changes are collected once per file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import libcst as cst

from trainlint.model.loops.mode_switches import same_model
from trainlint.model.syntax.nodes import descendants, dotted, literal

if TYPE_CHECKING:
    from trainlint.model import TrainingModel

#: Per file: (module whose gradients a change concerns, the flag it sets: True/False/None).
_CHANGES: WeakKeyDictionary[TrainingModel, list[tuple[str, object]]] = WeakKeyDictionary()


def parameters_frozen(model: TrainingModel, name: str) -> bool:
    """``name.requires_grad_(False)`` or ``for p in name.parameters(): p.requires_grad = False``
    somewhere in the file, and nothing that turns gradients of ``name`` (or a part) back on."""
    frozen = False
    for target, flag in _changes(model):
        if not same_model(target, name):
            continue
        if flag is not False:
            return False  # some part of it trains
        frozen = True
    return frozen


def _changes(model: TrainingModel) -> list[tuple[str, object]]:
    found = _CHANGES.get(model)
    if found is not None:
        return found
    found = []
    for node in descendants(model.module):
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if node.func.attr.value != "requires_grad_":
                continue
            target = _frozen_target(model, node.func.value)
            flag = literal(node.args[0].value, None) if node.args else True
        elif isinstance(node, cst.Assign) and len(node.targets) == 1:
            attribute = node.targets[0].target
            if not isinstance(attribute, cst.Attribute) or attribute.attr.value != "requires_grad":
                continue
            target = _frozen_target(model, attribute.value)
            flag = literal(node.value, None)
        else:
            continue
        if target is not None:
            found.append((target, flag))
    _CHANGES[model] = found
    return found


def _frozen_target(model: TrainingModel, expr: cst.BaseExpression) -> str | None:
    """The module whose gradients a ``requires_grad`` change concerns: ``backbone`` itself, or
    the module whose ``parameters()`` the loop variable ``p`` walks."""
    name = dotted(expr)
    if name is None:
        return None
    for loop in model.loops:
        target = loop.node.target if isinstance(loop.node, cst.For) else None
        if dotted(target) != name:
            continue
        func = loop.iter_expr.func if isinstance(loop.iter_expr, cst.Call) else None
        if isinstance(func, cst.Attribute) and func.attr.value == "parameters":
            return dotted(func.value)
        return None
    return name
