"""State dicts matched to a module's own keys before loading.

``{k: v for k, v in ckpt.items() if k in model.state_dict()}`` (also through
``own = model.state_dict()`` and a name bound to the comprehension) keeps only the keys the
module has: loading it with ``strict=False`` is a deliberate partial load whose key matching
the code did itself, so there are no unexpected keys and the missing ones are intended.

``encoder.load_state_dict(decoder.state_dict(), strict=False)`` copies between two live
modules (:func:`copied_from_module`): which keys match is fixed by the two architectures in
the code, not by a file that may have been saved with other names; the partial copy is the
point (sharing the layers two models have in common).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import descendants, dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


def matched_to_own_keys(
    model: TrainingModel, state: cst.BaseExpression | None, receiver: cst.BaseExpression, scope
) -> bool:
    """Whether ``state`` keeps only keys of ``receiver``'s own ``state_dict()``."""
    owner = dotted(receiver)
    if state is None or owner is None:
        return False
    comprehension = _comprehension(model, state, scope)
    if comprehension is None:
        return False
    tests = [
        node
        for clause in _clauses(comprehension.for_in)
        for condition in clause.ifs
        for node in (condition.test, *descendants(condition.test))
    ]
    return any(_own_keys(model, node, owner, scope) for node in tests)


def _comprehension(
    model: TrainingModel, state: cst.BaseExpression, scope: Scope
) -> cst.DictComp | None:
    if isinstance(state, cst.DictComp):
        return state
    name = dotted(state)
    if name is None:
        return None
    bindings = model.lookup(name, scope, model.order_of(state))
    if bindings and isinstance(bindings[0].value, cst.DictComp) and not bindings[0].augmented:
        return bindings[0].value
    return None


def _clauses(clause: cst.CompFor | None):
    while clause is not None:
        yield clause
        clause = clause.inner_for_in


def _own_keys(model: TrainingModel, node: cst.CSTNode, owner: str, scope: Scope) -> bool:
    """``owner.state_dict()`` (or ``.keys()`` of it), or a name bound to it."""
    if isinstance(node, cst.Call):
        method = method_call(node)
        if method is not None and method[1] == "keys":
            return _own_keys(model, method[0], owner, scope)
        return method is not None and method[1] == "state_dict" and dotted(method[0]) == owner
    name = dotted(node)
    if isinstance(node, cst.Name) and name is not None:
        bindings = model.lookup(name, scope)
        value = bindings[0].value if bindings else None
        return isinstance(value, cst.Call) and _own_keys(model, value, owner, scope)
    return False


def copied_from_module(
    model: TrainingModel, state: cst.BaseExpression | None, receiver: cst.BaseExpression, scope
) -> bool:
    """Whether ``state`` is another live module's ``state_dict()`` (directly, or a name bound
    to it): ``other.state_dict()``, ``model.decoder._modules[name].state_dict()``."""
    if state is None:
        return False
    value: cst.BaseExpression | None = state
    name = dotted(state)
    if isinstance(state, cst.Name) and name is not None:
        bindings = model.lookup(name, scope, model.order_of(state))
        if len(bindings) != 1 or bindings[0].augmented or bindings[0].unpack_index is not None:
            return False
        value = bindings[0].value
    method = method_call(value) if isinstance(value, cst.Call) else None
    if method is None or method[1] != "state_dict" or value.args:  # type: ignore[union-attr]
        return False
    source = method[0]
    # the receiver's own state dict loaded back is no copy between modules
    return model.text_of(source) != model.text_of(receiver)
