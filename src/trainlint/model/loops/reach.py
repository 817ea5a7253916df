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

from typing import TYPE_CHECKING

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
        for site in model.calls_in(scope):
            if model.imports.qualify(site.node.func) in _BACKWARD_FUNCTIONS:
                kinds.add(EventKind.BACKWARD)
            method = model.bound_method(site.node, scope)
            if method is None:
                continue
            for kind, names in REACHABLE.items():
                if method[1] in names:
                    kinds.add(kind)
        found = self._own[key] = frozenset(kinds)
        return found
