"""Mode switches that a helper's argument chooses, and switches over a collection of models.

Trainer classes often switch every model they hold in one helper::

    def set_model_mode(self, mode="train", names=None):
        for name in names or self._models:
            self._models[name].eval() if mode == "eval" else self._models[name].train()

called as ``self.set_model_mode("eval")`` before evaluating. Two things make that readable:

* a **collective switch**: ``.eval()`` / ``.train(...)`` on an element of a container of models
  (``self._models[name]``, ``nets[i]``, the loop variable of ``for m in self.models.values()``)
  switches all of them, so it stands for every model (its subject is ``None``, which
  :func:`~trainlint.model.loops.modes.same_model` matches with any name). Loops over a
  module's own ``modules()`` / ``children()`` (freezing BatchNorm layers) are not collective;
* **folding** a helper's tests on its parameters when it is inlined at a call that passes
  literals (or leaves the literal defaults): at ``set_model_mode("eval")`` the test
  ``mode == "eval"`` is true, so only the eval branch runs; ``m.train(mode == "train")`` is an
  eval switch there (:func:`fold_switch`, applied by the event builder when it inlines);
* a **run-time choice**: a train and an eval switch on the two branches of one test
  (``set_model_mode(mode)``, not folded) leave the mode open (:func:`chosen_at_run_time`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.syntax.nodes import dotted, keyword, literal, positional
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

#: Iterating these walks a module's own layers, not a collection of whole models.
_SUBMODULE_WALKS = frozenset(
    {"modules", "children", "named_modules", "named_children", "parameters", "named_parameters"}
)
_CONTAINER_VIEWS = frozenset({"values", "items"})
UNKNOWN: object = object()  # a test that cannot be folded

_COMPARISONS: dict[type, Callable[[object, object], object]] = {
    cst.Equal: operator.eq,
    cst.NotEqual: operator.ne,
    cst.Is: operator.is_,
    cst.IsNot: operator.is_not,
    cst.In: lambda a, b: operator.contains(b, a),  # type: ignore[arg-type]
    cst.NotIn: lambda a, b: not operator.contains(b, a),  # type: ignore[arg-type]
}


def collective_receiver(receiver: cst.BaseExpression, scope: Scope) -> bool:
    """Whether ``receiver`` of ``.eval()`` is an element of a collection of models: a
    subscript (``self._models[name]``) or the variable of a loop over a container."""
    if isinstance(receiver, cst.Subscript):
        return _is_container(receiver.value)
    if not isinstance(receiver, cst.Name):
        return False
    bindings = scope.bindings.get(receiver.value, [])
    return bool(bindings) and all(
        b.from_iteration and b.value is not None and _is_container(b.value) for b in bindings
    )


def _is_container(expr: cst.BaseExpression) -> bool:
    """A name, attribute, literal list/tuple, or ``.values()`` / ``.items()`` of one; not a
    walk over a module's own layers."""
    if isinstance(expr, cst.Call):
        func = expr.func
        if not isinstance(func, cst.Attribute) or func.attr.value not in _CONTAINER_VIEWS:
            return False
        expr = func.value
    if isinstance(expr, (cst.List, cst.Tuple)):
        return bool(expr.elements)
    name = dotted(expr)
    return name is not None and name.rsplit(".", 1)[-1] not in _SUBMODULE_WALKS


def literal_arguments(call: cst.Call, callee: Scope) -> dict[str, object]:
    """The callee's parameters that ``call`` binds to a literal: the literal passed, or the
    literal default of a parameter it leaves out."""
    node = callee.node
    if not isinstance(node, cst.FunctionDef):
        return {}
    found: dict[str, object] = {}
    passed = {arg.keyword.value for arg in call.args if arg.keyword is not None}
    starred = any(arg.star for arg in call.args)
    for param in (*node.params.params, *node.params.kwonly_params):
        name = param.name.value
        argument = argument_for(call, callee, name)
        if argument is not None:
            value = literal(argument, UNKNOWN)
        elif param.default is not None and not starred and name not in passed:
            value = literal(param.default, UNKNOWN)
        else:
            value = UNKNOWN
        if value is not UNKNOWN:
            found[name] = value
    return found


def fold(expr: cst.BaseExpression | None, values: dict[str, object]) -> object:
    """The value of a test on parameters whose literal values are known (``UNKNOWN`` when it
    reads anything else): names, literals, ``not``, ``and`` / ``or``, comparisons, literal
    lists, tuples and sets."""
    if expr is None:
        return UNKNOWN
    if isinstance(expr, cst.Name) and expr.value in values:
        return values[expr.value]
    value = literal(expr, UNKNOWN)
    if value is not UNKNOWN:
        return value
    if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
        items = [fold(e.value, values) for e in expr.elements if isinstance(e, cst.Element)]
        known = len(items) == len(expr.elements) and UNKNOWN not in items
        return tuple(items) if known else UNKNOWN
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
        inner = fold(expr.expression, values)
        return UNKNOWN if inner is UNKNOWN else not inner
    if isinstance(expr, cst.BooleanOperation):
        left, right = fold(expr.left, values), fold(expr.right, values)
        if isinstance(expr.operator, cst.And):
            if left is not UNKNOWN and not left:
                return left
            return UNKNOWN if UNKNOWN in (left, right) else right
        if left is not UNKNOWN and left:
            return left
        return UNKNOWN if UNKNOWN in (left, right) else right
    if isinstance(expr, cst.Comparison) and len(expr.comparisons) == 1:
        target = expr.comparisons[0]
        compare = _COMPARISONS.get(type(target.operator))
        left, right = fold(expr.left, values), fold(target.comparator, values)
        if compare is None or UNKNOWN in (left, right):
            return UNKNOWN
        try:
            return bool(compare(left, right))
        except TypeError:
            return UNKNOWN
    return UNKNOWN


# ---------------------------------------------------------------------- events
def mode_switch(
    call: cst.Call, name: str, subject: str | None, make: Callable[..., Event]
) -> Event | None:
    """``model.eval()`` / ``model.train()`` / ``model.train(False)``; ``subject`` None for a
    collective switch. A ``train(flag)`` keeps ``flag`` as its operand (inlining folds it)."""
    collective = subject is None
    if name == "eval":
        if call.args and collective:
            return None  # not a module's ``eval()`` (a TF1 ``tensor.eval(feed_dict=...)``)
        return make(EventKind.EVAL_MODE, call, subject=subject, collective=collective)
    argument = argument_or_none(call)
    mode = literal(argument, True)
    kind = EventKind.EVAL_MODE if mode is False else EventKind.TRAIN_MODE
    flag = argument if literal(argument, None) is None else None
    return make(kind, call, subject=subject, operand=flag, collective=collective)


MODE_SWITCHES = (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)


def wrapper_switch(
    model: TrainingModel,
    call: cst.Call,
    receiver: cst.BaseExpression,
    name: str,
    scope: Scope,
    make: Callable[..., Event],
) -> Event | None:
    """``agent.eval()`` / ``agent.train()`` on an object whose type is not visible (an RL agent
    or a trainer passed as a parameter, its class in another module): presumably the object
    switches the networks it holds, so ``agent.policy`` runs in that mode afterwards. Only the
    argument-free forms (``train(False)`` too): ``policy.train(buffer, batch_size)`` is a
    training routine, not a switch."""
    subject = dotted(receiver)
    if name not in ("eval", "train") or subject is None or subject == "self":
        return None
    if model.imports.imports("tensorflow") or model.imports.qualify(receiver):
        return None  # TF1's ``accuracy.eval()`` computes a tensor; torch need not be imported
    if model.value_of(receiver, scope) is not None or model.callee(call, scope) is not None:
        return None  # a value of known kind, or a method whose own events are inlined
    flag = argument_or_none(call)
    if len(call.args) > (name == "train") or literal(flag, True) not in (True, False):
        return None
    off = name == "eval" or literal(flag, True) is False
    kind = EventKind.EVAL_MODE if off else EventKind.TRAIN_MODE
    return make(kind, call, subject=subject, presumed=True)


def fold_switch(event: Event, own: frozenset[int], literals: dict[str, object]) -> Event | None:
    """A helper's mode switch as one call runs it: the helper's own tests (nodes in ``own``)
    folded on the call's literal arguments (None: it never runs), ``train(flag)`` resolved to a
    train or eval switch."""
    kept = []
    for condition in event.conditions:
        value = fold(condition.test, literals) if id(condition.test) in own else UNKNOWN
        if value is UNKNOWN:
            kept.append(condition)
        elif bool(value) == condition.negated:
            return None
    changes: dict[str, object] = {"conditions": tuple(kept)}
    if event.kind is EventKind.TRAIN_MODE and event.operand is not None and id(event.node) in own:
        flag = fold(event.operand, literals)
        if flag is not UNKNOWN:
            changes["operand"] = None
            if not flag:
                changes["kind"] = EventKind.EVAL_MODE
    return replace(event, **changes)  # type: ignore[arg-type]


def argument_or_none(call: cst.Call) -> cst.BaseExpression | None:
    found = positional(call, 0)
    return found if found is not None else keyword(call, "mode")


def chosen_at_run_time(switch: Event, earlier: list[Event], target: Event | None) -> bool:
    """``switch`` has an opposite switch of the same model on the other branch of one of its
    tests, and the point it is asked about (``target``) does not sit under that test."""
    for other in earlier:
        if other.kind not in MODE_SWITCHES or other.kind is switch.kind:
            continue
        if not same_model(other.subject, switch.subject):
            continue
        for mine in switch.conditions:
            opposite = any(
                c.test is mine.test and c.negated != mine.negated for c in other.conditions
            )
            under = target is not None and any(
                c.test is mine.test and c.negated == mine.negated for c in target.conditions
            )
            if opposite and not under:
                return True
    return False


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two names can be the same model (``model`` / ``model.module`` / unknown, or a
    collective switch's ``None``)."""
    if a is None or b is None or a == b:
        return True
    return a.startswith(b + ".") or b.startswith(a + ".")
