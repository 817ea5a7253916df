"""Graphs carried from one iteration to the next.

Two shapes keep the autograd graph of earlier iterations alive in a loop that back-propagates
(:func:`carried_states`, :func:`needless_retained_graphs`):

* a **carried state**: a model call returns a state (``out, hidden = rnn(x, hidden)``,
  ``h = cell(x, h)``) that the next iteration feeds back to a model, with no ``.detach()`` on
  the way. The loop must run a backward, the last binding of the state in the loop must be
  that model call (a later ``hidden = hidden.detach()``, ``repackage_hidden(hidden)``,
  ``Variable(hidden.data)`` or a fresh ``init_hidden()`` starts a new graph), the state must
  not be rebound before it is read (a reset at the top of the iteration), no ``detach_()``
  runs in the loop, and the model call must make a graph (not under ``no_grad``). Truncated
  BPTT that detaches every chunk is silent; so is an inner loop over time steps with no
  backward of its own (the graph of one sequence, back-propagated once after it).
* a **needless retain_graph**: ``backward(retain_graph=True)`` (or ``autograd.grad``) as the
  only gradient computation of each iteration, on a loss made in that iteration. Several
  backwards over one graph (a GAN's discriminator and generator, several losses, a backward
  per term in an inner loop) need it, and so does ``create_graph=True``: both are silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.facts import Holds
from trainlint.model.dataflow.objects import instance_class
from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.syntax.nodes import (
    contains,
    descendants,
    dotted,
    keyword,
    literal,
    method_call,
    names_in,
    positional,
    root_name,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, LoopInfo, Scope


@dataclass(frozen=True)
class CarriedState:
    """A model's state fed back next iteration with its graph."""

    loop: LoopInfo
    name: str
    read: cst.Call  # the model call fed the previous iteration's state
    binding: Binding  # where a model call returns it


@dataclass(frozen=True)
class CarriedAttribute:
    """A module that keeps its state in ``self.<attribute>`` across forward calls, called
    once per iteration of a loop that back-propagates, with no reset in the loop."""

    loop: LoopInfo
    call: cst.Call  # the call of the module in the loop
    instance: str  # the module, as the loop names it
    attribute: str  # ``hidden`` of ``self.hidden``
    binding: Binding  # ``out, self.hidden = self.lstm(x, self.hidden)`` in its forward


@dataclass(frozen=True)
class RetainedBackward:
    """A ``retain_graph=True`` backward that no other backward shares the graph with."""

    loop: LoopInfo
    event: Event


def carried_states(model: TrainingModel) -> list[CarriedState]:
    found: list[CarriedState] = []
    reported: set[int] = set()
    for loop in model.loops:
        if model.is_framework_managed(loop.scope):
            continue
        if not any(e.kind is EventKind.BACKWARD for e in model.iteration(loop)):
            continue
        inside = {id(node) for node in descendants(loop.node)}
        for state in _carried_in(model, loop, inside):
            if id(state.read) not in reported:
                reported.add(id(state.read))
                found.append(state)
    return found


def _carried_in(model: TrainingModel, loop: LoopInfo, inside: set[int]) -> list[CarriedState]:
    scope = loop.scope
    found = []
    calls = [site for site in model.calls_in(scope) if id(site.node) in inside]
    if any((method_call(site.node) or (None, ""))[1] == "detach_" for site in calls):
        return []  # ``h.detach_()`` / ``for s in h: s.detach_()``: detached in place
    for name, bindings in scope.bindings.items():
        own = [b for b in bindings if id(b.statement) in inside and not b.from_iteration]
        if not own:
            continue
        last = max(own, key=lambda b: b.order)
        if not _returned_by_model(model, last, scope):
            continue
        for site in calls:
            statement = site.statement_order or site.order  # bindings share their statement's
            if statement > last.order or not _is_model_call(model, site.node, scope):
                continue
            if not any(_reads(a.value, name) for a in site.node.args):
                continue
            if _rebound_before(model, name, own, statement, scope):
                continue
            found.append(CarriedState(loop, name, site.node, last))
            break
    return found


_METADATA = {"size", "shape", "dim", "device", "dtype", "ndim", "numel"}


def _reads(expr: cst.BaseExpression, name: str) -> bool:
    """``expr`` reads the state ``name`` itself (``h``, ``(h, c)``, ``h[0]``), not only its
    metadata (``h.size(0)``, ``h.device``)."""
    nodes = [expr, *descendants(expr)]
    metadata = {
        id(node.value)
        for node in nodes
        if isinstance(node, cst.Attribute) and node.attr.value in _METADATA
    }
    return any(
        isinstance(node, cst.Name) and node.value == name and id(node) not in metadata
        for node in nodes
    )


def _returned_by_model(model: TrainingModel, binding: Binding, scope: Scope) -> bool:
    """``binding`` takes (a slot of) what a model call returns, as a graph tensor."""
    value = binding.value
    if not isinstance(value, cst.Call) or not _is_model_call(model, value, scope):
        return False
    if model.dataflow.grad_disabled(binding.statement):
        return False
    target = cst.Name(binding.target) if "." not in binding.target else None
    if target is None:
        return False
    flow = model.dataflow
    flow.pin(target)
    fact = flow.fact(target, scope, binding.order + 1)
    if fact.holds is Holds.UNKNOWN and not fact.no_grad:
        # a module known by its evidence (``rnn: nn.LSTM``) the value lattice has no role for
        return model.is_known_module(value.func, scope)
    return fact.holds is Holds.GRAPH


def _is_model_call(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    func = call.func
    if model.role_of(func, scope) in (Role.MODEL, Role.ENGINE):
        return True
    if dotted(func) == "self" and scope.cls is not None:
        return model.is_module_class(scope.cls)
    return model.is_known_module(func, scope)


def _rebound_before(
    model: TrainingModel, name: str, own: list[Binding], order: int, scope: Scope
) -> bool:
    """A binding of ``name`` earlier in the iteration than ``order`` that starts a new value
    (a reset, a detach, a helper such as ``repackage_hidden(h)``); ``h = h * mask`` keeps
    the carried graph and does not count."""
    for binding in own:
        if binding.order >= order:
            continue
        value = binding.value
        if value is None or name not in names_in(value):
            return True  # a fresh value (``h = init_hidden()``, ``h = encoder(x)``)
        if _starts_new_graph(model, value, name, scope):
            return True
    return False


_DETACHING = {"detach", "detach_", "data", "item", "numpy", "tolist"}


def _starts_new_graph(
    model: TrainingModel, value: cst.BaseExpression, name: str, scope: Scope
) -> bool:
    """``h.detach()``, ``Variable(h.data)``, ``tuple(s.detach() for s in h)``, or a call
    trainlint does not read (``repackage_hidden(h)``): the old graph is not carried on.
    Arithmetic and torch operations on the state (``h * mask``, ``h.view(...)``) carry it."""
    for node in [value, *descendants(value)]:
        if isinstance(node, cst.Attribute) and node.attr.value in _DETACHING:
            return True
        if isinstance(node, cst.Call) and not method_call(node):
            qualified = model.imports.qualify(node.func) or ""
            if not qualified.startswith("torch.") or qualified.endswith("Variable"):
                return True
    return False


# ---------------------------------------------------------------------- self.<state>
def carried_attributes(model: TrainingModel) -> list[CarriedAttribute]:
    """Modules whose forward feeds ``self.<state>`` back to a layer and stores what it
    returns there (``out, self.hidden = self.lstm(x, self.hidden)``), called in a loop that
    back-propagates, where nothing in the loop resets the state (``model.hidden = ...``, a
    method of the module that assigns it such as ``init_hidden()``, a ``detach_()``)."""
    stateful = _stateful_classes(model)
    if not stateful:
        return []
    found: list[CarriedAttribute] = []
    seen: set[int] = set()
    for loop in model.loops:
        if not any(e.kind is EventKind.BACKWARD for e in model.iteration(loop)):
            continue
        inside = {id(node) for node in descendants(loop.node)}
        calls = [site for site in model.calls_in(loop.scope) if id(site.node) in inside]
        if any((method_call(site.node) or (None, ""))[1] == "detach_" for site in calls):
            continue
        for site in calls:
            instance = dotted(site.node.func)
            cls = instance_class(model, site.node.func, loop.scope, external=False)
            if instance is None or cls is None or id(site.node) in seen:
                continue
            for attribute, binding in stateful.get(cls.name, []):
                if _resets(model, loop, calls, instance, attribute, cls):
                    continue
                seen.add(id(site.node))
                found.append(CarriedAttribute(loop, site.node, instance, attribute, binding))
                break
    return found


def _stateful_classes(model: TrainingModel) -> dict[str, list[tuple[str, Binding]]]:
    found: dict[str, list[tuple[str, Binding]]] = {}
    for name, cls in model.classes.items():
        forward = cls.methods.get("forward")
        if forward is None or not model.is_torch_module_class(cls):
            continue
        for target, bindings in forward.bindings.items():
            if not target.startswith("self.") or target.count(".") != 1:
                continue
            for binding in bindings:
                value = binding.value
                if not isinstance(value, cst.Call) or not _is_model_call(model, value, forward):
                    continue
                if not any(target in names_in(a.value) for a in value.args):
                    continue
                earlier = [b for b in bindings if b.order < binding.order]
                if any(
                    _starts_new_graph(model, b.value, target, forward) for b in earlier if b.value
                ):
                    continue  # ``self.hidden = repackage(self.hidden)`` first
                found.setdefault(name, []).append((target[len("self.") :], binding))
    return found


def _resets(model, loop, calls, instance: str, attribute: str, cls) -> bool:
    """The loop assigns ``instance.attribute`` or calls a method of ``cls`` that assigns
    ``self.attribute`` (``model.init_hidden()``, ``model.reset_state()``)."""
    for binding in loop.scope.bindings.get(f"{instance}.{attribute}", []):
        if contains(loop.node, binding.statement):
            return True
    for site in calls:
        called = method_call(site.node)
        if called is None or dotted(called[0]) != instance:
            continue
        method = model.method(cls, called[1])
        if (
            method is not None
            and method.name != "forward"
            and f"self.{attribute}" in method.bindings
        ):
            return True
    return False


# ---------------------------------------------------------------------- retain_graph
def needless_retained_graphs(model: TrainingModel) -> list[RetainedBackward]:
    found: list[RetainedBackward] = []
    seen: set[int] = set()
    # a loop that carries a state into the next iteration does back-propagate through the
    # retained graph again: the carried state is the finding there, not the retain_graph
    carrying = {id(c.loop.node) for c in model.carried_states}
    carrying |= {id(c.loop.node) for c in model.carried_attributes}
    for loop in model.loops:
        if id(loop.node) in carrying:
            continue
        events = model.iteration(loop)
        gradients = [e for e in events if e.kind in (EventKind.BACKWARD, EventKind.GRAD)]
        if len(gradients) != 1:
            continue
        event = gradients[0]
        call = event.node
        if event.loops or not isinstance(call, cst.Call) or id(call) in seen:
            continue
        if literal(keyword(call, "retain_graph"), None) is not True:
            continue
        if literal(keyword(call, "create_graph"), None) is True:
            continue
        if not _made_in_iteration(model, event, loop):
            continue
        seen.add(id(call))
        found.append(RetainedBackward(loop, event))
    return found


def _made_in_iteration(model: TrainingModel, event: Event, loop: LoopInfo) -> bool:
    """The back-propagated loss is computed afresh in each iteration of ``loop`` (not one
    loss made before it, nor the loop's own ``for loss in losses`` target)."""
    operand = event.operand
    if operand is None and isinstance(event.node, cst.Call):
        operand = positional(event.node, 0)  # ``torch.autograd.grad(loss, params, ...)``
    root = root_name(operand) if operand is not None else None
    if root is None:
        return False
    inside = {id(node) for node in descendants(loop.node)}
    bindings = model.lookup(root, event.scope)
    own = [b for b in bindings if id(b.statement) in inside]
    if not own or any(b.from_iteration for b in own):
        return False
    return _runs_a_forward(model, loop, inside)


def _runs_a_forward(model: TrainingModel, loop: LoopInfo, inside: set[int]) -> bool:
    """The iteration builds a new graph: it calls a model (also a module's own method, such
    as ``self.pi(s)`` in an agent that is an ``nn.Module``). A loop over the terms of one
    forward's losses does not."""
    if any(e.kind is EventKind.FORWARD for e in model.iteration(loop)):
        return True
    scope = loop.scope
    for site in model.calls_in(scope):
        if id(site.node) not in inside:
            continue
        if _is_model_call(model, site.node, scope):
            return True
        callee = model.callee(site.node, scope, external=False)
        owner = callee.cls if callee is not None else None
        written = dotted(site.node.func) or ""
        if owner is not None and written.startswith("self.") and model.is_module_class(owner):
            return True
    return False
