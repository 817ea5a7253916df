"""Whether train mode is restored: eval switches a train step can be reached from again.

For a train step, :meth:`TrainModeRestoring.unrestored_switches` walks each loop that runs it,
one iteration after the other: an eval switch from which the next pass through the train step
can be reached with no ``.train()`` (one that runs whenever the switch ran, or whenever the
train step runs, or one restoring a saved ``model.training``) leaves the model training in eval
mode. Every model the train step runs is followed (a GAN's generator as well as its critic);
one that no optimizer the step steps holds is kept in eval on purpose (a distillation
teacher). A model made afresh in each iteration (``snapshot = copy.deepcopy(model)``) is another
object the next time round; parts the train step runs only under ``no_grad`` are frozen on
purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.loops.frozen import parameters_frozen
from trainlint.model.loops.gradients import parameter_sources, same_object
from trainlint.model.loops.mode_switches import same_model
from trainlint.model.loops.modes import forward_target, model_value
from trainlint.model.syntax.nodes import (
    bare_names,
    contains,
    descendants,
    dotted,
    names_in,
)
from trainlint.model.values.mode_layers import UNKNOWN as UNKNOWN_LAYERS
from trainlint.model.values.mode_layers import ModeLayers
from trainlint.model.values.modules import MODULE_ONLY_METHODS

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.training import TrainStep
    from trainlint.model.syntax.scopes import LoopInfo


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


class TrainModeRestoring:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._call_order: dict[int, int] = {id(site.node): site.order for site in model.calls}

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

    def layers_switched(self, item: UnrestoredSwitch) -> ModeLayers:
        """The mode-dependent layers of the models the train step runs that the switch
        affects (``known_free``: eval mode changes nothing they compute)."""
        found: ModeLayers | None = None
        for event in item.step.events:
            if event.kind is not EventKind.FORWARD or not same_model(event.subject, item.subject):
                continue
            value = model_value(self.model, forward_target(event.node), event.scope)
            layers = self.model.module_structure.of_value(value)
            found = layers if found is None else found | layers
        if found is None and item.subject and _is_dotted(item.subject):
            # a step in a helper names the model by its parameter (``train_step(model=...)``):
            # what the looping code passes is the model its name holds there
            expr = cst.parse_expression(item.subject)
            value = model_value(self.model, expr, item.loop.scope)
            if value is not None and (value.kind or value.call is not None):
                found = self.model.module_structure.of_value(value)
        return found if found is not None else UNKNOWN_LAYERS

    def _frozen(self, step: TrainStep, name: str | None) -> bool:
        """Whether the train step runs ``name`` only with gradients disabled, or its parameters
        are frozen (``requires_grad = False``): a feature extractor kept in eval mode on
        purpose (a linear probe trains only the head)."""
        if name is None:
            return False
        if parameters_frozen(self.model, name):
            return True
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
        first = inside[0]
        primary = events[first].subject if events[first].kind is EventKind.FORWARD else None
        #: every other model the train step runs, at its first forward (a GAN's critic)
        others: dict[str, int] = {}
        for i in inside:
            name = events[i].subject
            if events[i].kind is EventKind.FORWARD and name and not same_model(name, primary):
                others.setdefault(name, i)
        found = []
        for index, event in enumerate(events):
            if event.kind is not EventKind.EVAL_MODE or event.presumed:
                continue  # ``agent.eval()`` of an unseen class may do anything else
            target, subject, secondary = first, primary, False
            if not same_model(event.subject, primary):
                matching = [i for name, i in others.items() if same_model(event.subject, name)]
                if not event.subject or not matching:
                    continue
                target, subject, secondary = matching[0], events[matching[0]].subject, True
            trained = self._trained_by_step(step, loop, event.subject or subject)
            if trained is False or (secondary and trained is not True):
                continue  # a model no stepped optimizer holds is kept in eval on purpose
            if self._for_training(events, index, target, event):
                continue  # the mode the train step is meant to run in (a linear evaluation)
            if self._restored(events, index, target, event):
                continue
            if self._made_each_iteration(event, loop):
                continue
            found.append(
                UnrestoredSwitch(event, self._anchor(event, step, loop), step, loop, subject)
            )
        return found

    def _trained_by_step(self, step: TrainStep, loop: LoopInfo, name: str | None) -> bool | None:
        """Whether an optimizer the train step steps holds (some of) ``name``'s parameters
        (None: cannot tell; the names are compared only where the step's loop is the walked
        loop's function, so that both spell them alike)."""
        if name is None or loop.scope is not step.loop.scope:
            return None
        answers: list[bool | None] = []
        for event in step.events:
            if event.kind is not EventKind.STEP or not event.subject:
                continue
            sources = parameter_sources(self.model, event.subject, step.loop.scope)
            if sources is None:
                return None
            for source in sources:
                if same_model(name, source):
                    return True
                answers.append(same_object(self.model, name, source, step.loop.scope))
        if any(answers):
            return True
        return False if answers and all(a is False for a in answers) else None

    def _restored(self, events: list[Event], start: int, target: int, switch: Event) -> bool:
        """A ``.train()`` on the model on the way from ``start`` to ``target`` (wrapping around
        to the next iteration), running whenever the switch ran."""
        if any(_other_branch(event, switch) for event in events):
            return True  # ``if phase == "train": model.train() else: model.eval()``
        count = len(events)
        index = (start + 1) % count
        while index != target:
            event = events[index]
            if same_model(event.subject, switch.subject) and self._for_training(
                events, index, target, event
            ):
                return True  # the train step is reached in the eval mode chosen for it
            if (
                event.kind is EventKind.TRAIN_MODE
                and same_model(event.subject, switch.subject)
                and (
                    _runs_whenever(event, switch)
                    or _runs_whenever(event, events[target])
                    or self._restores_saved(event)
                )
            ):
                return True
            index = (index + 1) % count
            if index == (start + 1) % count:
                break
        return False

    def _for_training(self, events: list[Event], index: int, target: int, switch: Event) -> bool:
        """``events[index]`` is an eval switch made for the train step itself: written in the
        step's function before its first forward, with no other forward of the model and no
        call handing the model elsewhere in between (``net.eval()`` at the top of a
        linear-evaluation epoch: BatchNorm statistics must not move). An evaluation's switch
        is followed by the evaluation's own forwards, or by the call that runs them."""
        goal = events[target]
        if (
            switch.kind is not EventKind.EVAL_MODE
            or index >= target
            or switch.scope is not goal.scope
        ):
            return False
        if any(
            e.kind is EventKind.FORWARD and same_model(e.subject, switch.subject)
            for e in events[index + 1 : target]
        ):
            return False
        start = self._call_order.get(id(switch.node))
        end = self._call_order.get(id(goal.node))
        root = (switch.subject or "").split(".", 1)[0]
        if start is None or end is None or not root:
            return False
        return not any(
            start < site.order < end
            and site.node not in goal.via
            and not contains(site.node, goal.node)  # ``loss_fn(net(x), y)``
            and any(root in bare_names(arg.value) for arg in site.node.args)
            for site in self.model.calls_in(switch.scope)
        )

    def _made_each_iteration(self, switch: Event, loop: LoopInfo) -> bool:
        """The switched model is made afresh in each iteration of ``loop`` before the switch
        (``snapshot = copy.deepcopy(model)``, ``model = build()``): the next pass through the
        train step runs another object."""
        root = (switch.subject or "").split(".", 1)[0]
        if not root or root == "self":
            return False
        anchor = switch.via[0] if switch.via else switch.node
        switch_order = self._call_order.get(id(anchor), self.model.order_of(anchor)) or 0
        bindings = loop.scope.bindings.get(root, [])
        return any(
            isinstance(b.value, cst.Call)
            and b.order < switch_order
            and contains(loop.node, b.statement)
            for b in bindings
        )

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


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))
