"""Train/eval mode and grad mode along a function, its same-file callers, and loop iterations.

A model's mode at a point is set by the last ``.eval()`` / ``.train(False)`` /
``.train()`` on it before that point (same-file helpers inlined, see :mod:`.events`); when the
function itself switches nothing, the answer comes from its same-file callers, at each call
(parameters renamed to the caller's arguments), two levels up. A ``model.train(was_training)``
or ``if was_training: model.train()`` restores a saved mode and counts as switching back.

Grad mode: ``torch.no_grad()`` / ``inference_mode()`` / ``set_grad_enabled(False)`` as a
context or decorator around the point, a ``torch.set_grad_enabled(False)`` statement before
it, or any of these around every same-file call of the function.

For a train step, :meth:`ModeAnalysis.unrestored_switches` walks each loop that runs it, one
iteration after the other: an eval switch from which the next pass through the train step can
be reached with no ``.train()`` (one that runs whenever the switch ran) leaves the model
training in eval mode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import passed_for
from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.loops.events import IterationBuilder
from trainlint.model.loops.mode_switches import chosen_at_run_time, same_model
from trainlint.model.syntax.nodes import descendants, dotted, literal, names_in, positional
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.modules import MODULE_ONLY_METHODS

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.training import TrainStep
    from trainlint.model.syntax.scopes import LoopInfo, Scope
    from trainlint.model.values.roles import Value

_SWITCHES = (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)
_GRAD_SWITCHES = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"}


class Mode(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"
    #: A train and an eval switch on the two branches of one test (``set_mode(mode)``): the
    #: mode is chosen at run time.
    EITHER = "either"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModeAt:
    mode: Mode
    switch: Event | None = None  # the switch that set it, when one was found


@dataclass(frozen=True)
class UnrestoredSwitch:
    """An eval switch that the next train step can be reached from without ``.train()``."""

    switch: Event
    anchor: cst.CSTNode  # the switch, or the call (in the loop's code) of the helper making it
    step: TrainStep
    loop: LoopInfo  # the loop whose iterations were walked
    subject: str | None  # the model, as the train step's loop names it


#: Module methods that do not run the module's forward.
_NOT_FORWARD = frozenset(MODULE_ONLY_METHODS | {"to", "cpu", "apply"})


def _runs_module(func: str | None, name: str) -> bool:
    """``model(x)`` / ``model.encoder(x)``: a call that runs (part of) ``name``'s forward."""
    if func is None or not (func == name or func.startswith(name + ".")):
        return False
    return func.rsplit(".", 1)[-1] not in _NOT_FORWARD or func == name


class ModeAnalysis:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._events: dict[int, list[Event]] = {}
        self._callers: dict[int, list[tuple[cst.Call, Scope]]] | None = None
        self._call_order: dict[int, int] = {id(site.node): site.order for site in model.calls}

    # ------------------------------------------------------------------ events
    def scope_events(self, scope: Scope) -> list[Event]:
        """The events of a whole function body, or of the module's top-level code."""
        key = id(scope.node)
        if key not in self._events:
            if scope.is_module:
                body = scope.node.body  # type: ignore[union-attr]
                self._events[key] = IterationBuilder(self.model).statement_events(body, scope)
            else:
                self._events[key] = self.model.function_events(scope)
        return self._events[key]

    def callers(self, scope: Scope) -> list[tuple[cst.Call, Scope]]:
        if self._callers is None:
            self._callers = {}
            for site in self.model.calls:
                callee = self.model.callee(site.node, site.scope)
                if callee is not None and callee is not site.scope:
                    self._callers.setdefault(id(callee.node), []).append((site.node, site.scope))
        return self._callers.get(id(scope.node), [])

    def _order(self, event: Event) -> int:
        anchor = event.via[0] if event.via else event.node
        found = self._call_order.get(id(anchor))
        return found if found is not None else (self.model.order_of(anchor) or 0)

    def index_of(self, events: list[Event], node: cst.CSTNode) -> int:
        """Where ``node`` (an event's node, or a call that inlines events) sits in ``events``;
        ``len(events)`` when it is not there."""
        for index, event in enumerate(events):
            if event.node is node or any(call is node for call in event.via):
                return index
        order = self._call_order.get(id(node), self.model.order_of(node))
        if order is None:
            return len(events)
        return sum(1 for event in events if self._order(event) < order)

    # ------------------------------------------------------------------ train/eval mode
    def mode_before(
        self, scope: Scope, node: cst.CSTNode, subject: str | None, depth: int = 0
    ) -> ModeAt:
        """The mode of ``subject`` just before ``node`` runs, in ``scope``."""
        events = self.scope_events(scope)
        index = self.index_of(events, node)
        target = events[index] if index < len(events) else None
        earlier = events[:index]
        for event in reversed(earlier):
            if event.kind in _SWITCHES and same_model(event.subject, subject):
                mode = Mode.EVAL if event.kind is EventKind.EVAL_MODE else Mode.TRAIN
                if chosen_at_run_time(event, earlier, target):
                    mode = Mode.EITHER
                return ModeAt(mode, event)
        if scope.is_module or depth >= 2:
            return ModeAt(Mode.UNKNOWN)
        found = [
            self.mode_before(caller, call, self._renamed(call, scope, subject), depth + 1)
            for call, caller in self.callers(scope)
        ]
        if found and all(f.mode is Mode.EVAL for f in found):
            return found[0]
        for mode in (Mode.TRAIN, Mode.EITHER):
            chosen = [f for f in found if f.mode is mode]
            if chosen:
                return chosen[0]
        return ModeAt(Mode.UNKNOWN)

    def _renamed(self, call: cst.Call, callee: Scope, subject: str | None) -> str | None:
        if subject is None:
            return None
        renames = self.model.argument_renames(call, callee)
        receiver = call.func.value if isinstance(call.func, cst.Attribute) else None
        if callee.cls is not None and dotted(receiver) not in (None, "self"):
            renames["self"] = dotted(receiver)
        root, dot, rest = subject.partition(".")
        if root in renames:
            return renames[root] + dot + rest if renames[root] else None
        return subject

    # ------------------------------------------------------------------ grad mode
    def grad_disabled(self, scope: Scope, event: Event, region_node: cst.CSTNode) -> bool:
        """Whether ``event`` (found in a region written in ``scope``) runs with gradients off."""
        if "no_grad" in event.contexts:
            return True
        flow = self.model.dataflow
        if flow.grad_disabled(region_node, event.node, *event.via):
            return True
        anchor = event.via[0] if event.via else event.node
        return self._disabled_before(scope, anchor) or self._callers_disable(scope, 0)

    def _disabled_before(self, scope: Scope, node: cst.CSTNode) -> bool:
        """A ``torch.set_grad_enabled(False)`` statement earlier in ``scope``."""
        order = self._call_order.get(id(node), self.model.order_of(node)) or 0
        for site in self.model.calls:
            if site.scope is not scope or site.order >= order:
                continue
            qualified = site.qualified or ""
            if qualified in _GRAD_SWITCHES and literal(positional(site.node, 0), None) is False:
                return True
        return False

    def _callers_disable(self, scope: Scope, depth: int) -> bool:
        if scope.is_module or depth >= 2:
            return False
        callers = self.callers(scope)
        if not callers:
            return False
        flow = self.model.dataflow
        return all(
            flow.grad_disabled(call)
            or self._disabled_before(caller, call)
            or self._callers_disable(caller, depth + 1)
            for call, caller in callers
        )

    # ------------------------------------------------------------------ restoring train mode
    def unrestored_switches(self) -> list[UnrestoredSwitch]:
        found: list[UnrestoredSwitch] = []
        seen: set[int] = set()
        for step in self.model.train_steps:
            for loop in self._loops_running(step):
                for item in self._walk(step, loop):
                    if self._frozen(step, item.subject or item.switch.subject):
                        continue
                    if id(item.anchor) not in seen:
                        seen.add(id(item.anchor))
                        found.append(item)
        return found

    def _frozen(self, step: TrainStep, name: str | None) -> bool:
        """Whether the train step runs ``name`` only with gradients disabled: a frozen feature
        extractor kept in eval mode on purpose (a linear probe trains only the head)."""
        if name is None:
            return False
        runs = [
            node
            for node in descendants(step.loop.node)
            if isinstance(node, cst.Call) and _runs_module(dotted(node.func), name)
        ]
        return bool(runs) and all(self.model.dataflow.grad_disabled(n) for n in runs)

    def _loops_running(self, step: TrainStep) -> list[LoopInfo]:
        """The train step's loop and every loop whose iteration runs it (an enclosing epoch
        loop, or a caller's loop around a helper that holds it)."""
        loops = [step.loop]
        for loop in self.model.loops:
            if loop is step.loop:
                continue
            events = self.model.iteration(loop)
            if any(step.loop in e.loops for e in events):
                loops.append(loop)
        return loops

    def _walk(self, step: TrainStep, loop: LoopInfo) -> list[UnrestoredSwitch]:
        events = self.model.iteration(loop)
        inside = [
            i
            for i, e in enumerate(events)
            if (loop is step.loop or step.loop in e.loops)
            and e.kind is EventKind.FORWARD
            and "no_grad" not in e.contexts
        ]
        if not inside:
            inside = [
                i
                for i, e in enumerate(events)
                if (loop is step.loop or step.loop in e.loops) and e.kind is EventKind.BACKWARD
            ]
        if not inside:
            return []
        target = inside[0]
        subject = events[target].subject if events[target].kind is EventKind.FORWARD else None
        found = []
        for index, event in enumerate(events):
            if event.kind is not EventKind.EVAL_MODE or not same_model(event.subject, subject):
                continue
            if self._restored(events, index, target, event):
                continue
            found.append(
                UnrestoredSwitch(event, self._anchor(event, step, loop), step, loop, subject)
            )
        return found

    def _restored(self, events: list[Event], start: int, target: int, switch: Event) -> bool:
        """A ``.train()`` on the model on the way from ``start`` to ``target`` (wrapping around
        to the next iteration), running whenever the switch ran."""
        if any(_other_branch(event, switch) for event in events):
            return True  # ``if phase == "train": model.train() else: model.eval()``
        count = len(events)
        index = (start + 1) % count
        while index != target:
            event = events[index]
            if (
                event.kind is EventKind.TRAIN_MODE
                and same_model(event.subject, switch.subject)
                and (_runs_whenever(event, switch) or self._restores_saved(event))
            ):
                return True
            index = (index + 1) % count
            if index == (start + 1) % count:
                break
        return False

    def _restores_saved(self, event: Event) -> bool:
        """``if was_training: model.train()`` (a saved ``model.training`` tested)."""
        for condition in event.conditions:
            for name in names_in(condition.test):
                if name.endswith(".training"):
                    return True
                for binding in event.scope.bindings.get(name, []):
                    value = binding.value
                    if value is not None and (dotted(value) or "").endswith(".training"):
                        return True
        return False

    def _anchor(self, switch: Event, step: TrainStep, loop: LoopInfo) -> cst.CSTNode:
        """The switch itself when written in the loop's or the train step's function, else the
        call there of the helper that makes it."""
        scopes = (id(loop.scope), id(step.loop.scope))
        if id(switch.scope) in scopes:
            return switch.node
        sites = self.model.dataflow.call_sites()
        for call in reversed(switch.via):
            site = sites.get(id(call))
            if site is not None and id(site[0]) in scopes:
                return call
        return switch.via[0] if switch.via else switch.node


def _other_branch(event: Event, switch: Event) -> bool:
    """``event`` is a ``.train()`` on the other branch of an ``if`` that switches to eval."""
    if event.kind is not EventKind.TRAIN_MODE or not same_model(event.subject, switch.subject):
        return False
    return any(
        c.test is d.test and c.negated != d.negated
        for c in event.conditions
        for d in switch.conditions
    )


def _runs_whenever(event: Event, switch: Event) -> bool:
    """Every condition of ``event`` also guards ``switch``."""
    return all(
        any(c.test is d.test and c.negated == d.negated for d in switch.conditions)
        for c in event.conditions
    )


def forward_target(call: cst.CSTNode) -> cst.BaseExpression | None:
    """The model a forward event calls: ``model`` in ``model(x)`` / ``model.forward(x)``."""
    if not isinstance(call, cst.Call):
        return None
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("forward", "__call__"):
        return func.value
    return func


def model_value(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope, depth: int = 0
) -> Value | None:
    """What model ``expr`` holds, following parameters to what same-file callers pass and
    ``self.model = model`` to what the class's constructor calls pass."""
    value = model.value_of(expr, scope)
    if expr is None or depth >= 3 or (value is not None and (value.kind or value.call)):
        return value
    name = dotted(expr)
    if isinstance(expr, cst.Name) and name in scope.params:
        for argument, caller, _ in passed_for(model.dataflow, expr.value, scope):
            found = model_value(model, argument, caller, depth + 1)
            if found is not None and found.kind:
                return found
    cls = scope.cls
    if name and name.startswith("self.") and cls is not None:
        for binding in cls.attributes.get(name[len("self.") :], []):
            init = binding.scope
            if not isinstance(binding.value, cst.Name) or init is None:
                continue
            if binding.value.value not in init.params:
                continue
            for site in model.calls:
                if site.dotted != cls.name:
                    continue
                argument = argument_for(site.node, init, binding.value.value)
                found = model_value(model, argument, site.scope, depth + 1)
                if found is not None and found.kind:
                    return found
    return value


def torch_forwards(model: TrainingModel, events: list[Event] | tuple[Event, ...]) -> list[Event]:
    """The forward events of torch models (not keras/flax/mlx ones) among ``events``."""
    structure = model.module_structure
    found = []
    for event in events:
        if event.kind is not EventKind.FORWARD:
            continue
        value = model_value(model, forward_target(event.node), event.scope)
        if structure.is_torch(value):
            found.append(event)
    return found
