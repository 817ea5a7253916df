"""Which kinds of event a function's events can hold at all, read off the names of the calls it
and the helpers it may inline make: a cheap test that lets a query skip flattening a function
(``function_events``) whose events cannot hold what it looks for.

Only backwards and optimizer steps are told apart (:data:`REACHABLE`): a call is one only when
the method it runs (also through an alias, ``step = opt.step``) is named like one, or it is
``torch.autograd.backward`` (see :mod:`.event_calls`). The answer is a superset: every call of
the function and of each same-file function it may call counts, at any depth, whatever the
roles; a call into another module's code (a stub) may hold anything.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import EventKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

#: The kinds this module can rule out, and the method names that can make each.
REACHABLE: dict[EventKind, frozenset[str]] = {
    EventKind.BACKWARD: frozenset({"backward", "manual_backward", "gradient"}),
    EventKind.STEP: frozenset({"step", "apply_gradients", "minimize"}),
}
_BACKWARD_FUNCTIONS = frozenset({"torch.autograd.backward"})
_KIND_OF_NAME = {name: kind for kind, names in REACHABLE.items() for name in names}
_ANY = frozenset(REACHABLE)


class EventReach:
    """Per model: the kinds of :data:`REACHABLE` each function's events may hold."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._own: dict[int, frozenset[EventKind]] = {}
        self._reached: dict[int, frozenset[EventKind]] = {}

    def may_hold(self, scope: Scope, kinds: frozenset[EventKind]) -> bool:
        """False when ``function_events(scope)`` certainly lacks one of ``kinds``; kinds
        outside :data:`REACHABLE` are never ruled out."""
        return kinds & _ANY <= self.reached(scope)

    def reached(self, scope: Scope) -> frozenset[EventKind]:
        key = id(scope.node)
        found = self._reached.get(key)
        if found is None:
            found = self._reached[key] = self._walk(scope)
        return found

    def _walk(self, start: Scope) -> frozenset[EventKind]:
        model = self.model
        own_blocks = model._own_blocks
        found: set[EventKind] = set()
        seen = {id(start.node)}
        pending = [start]
        while pending and found != _ANY:
            scope = pending.pop()
            found |= self._own_kinds(scope)
            for site in model.calls_in(scope):
                callee = model.callee(site.node, scope)
                if callee is None or id(callee.node) in seen:
                    continue
                if id(callee.node) not in own_blocks:
                    return _ANY  # another module's code (a stub): not read here
                seen.add(id(callee.node))
                pending.append(callee)
        return frozenset(found)

    def _own_kinds(self, scope: Scope) -> frozenset[EventKind]:
        key = id(scope.node)
        found = self._own.get(key)
        if found is not None:
            return found
        kinds: set[EventKind] = set()
        model = self.model
        aliased = self._aliased
        for site in model.calls_in(scope):
            func = site.node.func
            if type(func) is cst.Attribute:
                name: str | None = func.attr.value
            else:
                name = None
                if type(func) is cst.Name and model.imports.qualify(func) in _BACKWARD_FUNCTIONS:
                    kinds.add(EventKind.BACKWARD)
            if aliased:  # a name may be bound to a backward or step (``step = opt.step``)
                method = model.bound_method(site.node, scope)
                name = method[1] if method is not None else None
            kind = _KIND_OF_NAME.get(name) if name is not None else None
            if kind is not None:
                kinds.add(kind)
        found = self._own[key] = frozenset(kinds)
        return found

    @cached_property
    def _aliased(self) -> bool:
        """Whether some binding of the file holds a bound method named like a backward or a
        step (``step = optimizer.step``, ``functools.partial(loss.backward, ...)``): only then
        is each call's alias looked up (``bound_method``); otherwise the method a call runs is
        the one it names."""
        for scope in self.model.scopes:
            for bindings in scope.bindings.values():
                for binding in bindings:
                    if _names_reachable_method(binding.value):
                        return True
        for info in self.model.classes.values():
            for bindings in info.attributes.values():
                if any(_names_reachable_method(b.value) for b in bindings):
                    return True
        return False


def _names_reachable_method(value: cst.BaseExpression | None) -> bool:
    """``x.step`` or a call holding one (``functools.partial(x.step, ...)``)."""
    if type(value) is cst.Attribute:
        return value.attr.value in _KIND_OF_NAME
    if type(value) is cst.Call:
        return any(_names_reachable_method(arg.value) for arg in value.args)
    return False
