"""LoopQueries: the part of :class:`trainlint.model.TrainingModel` that answers what one iteration
does: events, train steps and windows, what loops create, modes and their restoring, states
carried across iterations.

A mixin of the one model object: its methods read the core's parse results (scopes,
bindings, calls) through ``self``; see :mod:`trainlint.model` for the public queries.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from trainlint.model.loops.carried import (
    CarriedAttribute,
    CarriedState,
    RetainedBackward,
    carried_attributes,
    carried_states,
    needless_retained_graphs,
)
from trainlint.model.loops.creations import Creations
from trainlint.model.loops.events import Event, EventKind, IterationBuilder
from trainlint.model.loops.modes import ModeAnalysis
from trainlint.model.loops.reach import EventReach
from trainlint.model.loops.regions import EvalRegion, eval_regions
from trainlint.model.loops.restoring import TrainModeRestoring
from trainlint.model.loops.stale_optimizers import StaleOptimizer, stale_optimizers
from trainlint.model.loops.training import (
    TrainStep,
    per_call_steps,
    train_steps,
)
from trainlint.model.syntax.scopes import (
    LoopInfo,
    Scope,
)


class LoopQueries:
    def iteration(self, loop: LoopInfo) -> list[Event]:
        """The events of one iteration of ``loop`` (nested loops and helpers included)."""
        key = id(loop.node)
        if key not in self._iterations:
            builder = IterationBuilder(self)
            self._iterations[key] = builder.loop_events(loop)
            if builder.reentered:
                self._reentrant_loops.add(key)
        return self._iterations[key]

    def reusable_iteration(self, loop: LoopInfo) -> list[Event] | None:
        """``iteration(loop)``, unless it inlines a function around the loop (a recursive
        helper): then the events of the loop's body depend on the tests around the loop, and a
        function's or outer loop's events flatten that body themselves."""
        events = self.iteration(loop)
        return None if id(loop.node) in self._reentrant_loops else events

    def function_events(self, scope: Scope) -> list[Event]:
        key = id(scope.node)
        if key not in self._function_events:
            self._function_events[key] = IterationBuilder(self).function_events(scope)
        return self._function_events[key]

    def may_hold_events(self, scope: Scope, *kinds: EventKind) -> bool:
        """False when ``function_events(scope)`` certainly lacks one of ``kinds`` (read off the
        names of the calls it may reach, see :mod:`.loops.reach`): a query looking for those
        kinds need not flatten the function."""
        return self._event_reach.may_hold(scope, frozenset(kinds))

    @cached_property
    def _event_reach(self) -> EventReach:
        return EventReach(self)

    def anchor_of(self, event: Event) -> cst.CSTNode:
        """Where a finding about ``event`` is shown in this file: its own node, or for an event
        of another module's code (a stub's node: an inherited ``train_step`` of a base class in
        ``base.py``) the outermost call of this file that reaches it."""
        if self.stubs.origin(event.node) is None:
            return event.node
        return next((c for c in event.via if self.stubs.origin(c) is None), event.node)

    def enclosing_loops(self, loop: LoopInfo) -> list[LoopInfo]:
        found, current = [], loop.parent
        while current is not None:
            found.append(current)
            current = current.parent
        return found

    @cached_property
    def train_steps(self) -> list[TrainStep]:
        """Innermost loops that run backward and step (see :mod:`.training`)."""
        return train_steps(self)

    @cached_property
    def window_steps(self) -> list[TrainStep]:
        """``train_steps`` plus functions running one window per call (``per_call`` set)."""
        return self.train_steps + per_call_steps(self, self.train_steps)

    @cached_property
    def creations(self) -> Creations:
        """Optimizers made in loops and what they train (see :mod:`.loops.creations`)."""
        return Creations(self)

    @cached_property
    def stale_optimizers(self) -> list[StaleOptimizer]:
        """Optimizers whose model is replaced before they train (see ``.stale_optimizers``)."""
        return stale_optimizers(self)

    @cached_property
    def eval_regions(self) -> list[EvalRegion]:
        """Code that runs a model to evaluate it (see :mod:`.loops.regions`)."""
        return eval_regions(self)

    @cached_property
    def modes(self) -> ModeAnalysis:
        """Train/eval and grad mode along functions and loops (see :mod:`.loops.modes`)."""
        return ModeAnalysis(self)

    @cached_property
    def restoring(self) -> TrainModeRestoring:
        """Eval switches a train step is reached from again without ``.train()`` (see
        :mod:`.loops.restoring`)."""
        return TrainModeRestoring(self)

    @cached_property
    def carried_states(self) -> list[CarriedState]:
        """Model states fed back next iteration with their graph (see :mod:`.loops.carried`)."""
        return carried_states(self)

    @cached_property
    def carried_attributes(self) -> list[CarriedAttribute]:
        """Modules keeping ``self.hidden`` across calls in a back-propagating loop, never
        reset there (see :mod:`.loops.carried`)."""
        return carried_attributes(self)

    @cached_property
    def needless_retained_graphs(self) -> list[RetainedBackward]:
        """``retain_graph=True`` on the only backward of each iteration (:mod:`.loops.carried`)."""
        return needless_retained_graphs(self)
