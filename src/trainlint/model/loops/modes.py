"""Train/eval mode and grad mode along a function, its same-file callers, and loop iterations.

A model's mode at a point is set by the last ``.eval()`` / ``.train(False)`` /
``.train()`` on it before that point (same-file helpers inlined, see :mod:`.events`); when the
function itself switches nothing, the answer comes from its same-file callers, at each call
(parameters renamed to the caller's arguments), two levels up. A ``model.train(was_training)``
or ``if was_training: model.train()`` restores a saved mode and counts as switching back.
A Hugging Face model loaded by ``from_pretrained`` and never switched is in eval mode (the
loader switches it). With no switch and no caller, a method of a plain class that its
constructor puts in eval mode (``self._model.eval()`` in ``__init__``, no method switching
it back) runs it in eval mode. A train and an eval switch on two branches of one test leave the mode
:attr:`Mode.EITHER` (chosen at run time); ``model.train()`` written in an evaluation before
forwards under ``no_grad`` recomputes BatchNorm statistics on purpose (:meth:`recalibrates`).

Grad mode: ``torch.no_grad()`` / ``inference_mode()`` / ``set_grad_enabled(False)`` as a
context or decorator around the point, a ``torch.set_grad_enabled(False)`` statement before
it, or any of these around every same-file call of the function.

Whether a train step is reached again in eval mode is :mod:`.restoring`'s question.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import passed_for
from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.loops.events import IterationBuilder
from trainlint.model.loops.mode_switches import chosen_at_run_time, same_model
from trainlint.model.summaries.callers import CallerRecord, external_callers
from trainlint.model.syntax.nodes import (
    contains,
    dotted,
    literal,
    positional,
)
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.regions import EvalRegion
    from trainlint.model.syntax.scopes import Binding, Scope
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


class ModeAnalysis:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._events: dict[int, list[Event]] = {}
        self._callers: dict[int, list[tuple[cst.Call, Scope]]] | None = None
        self._all_callers: dict[int, list[tuple[cst.Call, Scope]]] | None = None
        self._external: dict[int, list[CallerRecord]] = {}
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
        """The file's calls of ``scope``. For a function of this file they are found without
        asking other modules (which summarized every imported function the file calls): a
        call's answer in this file is the same either way, but for ``obj.name()`` on an
        instance of another module's class whose base has the short name of a class of this
        file defining ``name`` (those calls are asked with other modules, as before)."""
        own = id(scope.node) in self._own_scopes
        if own and self._callers is None:
            self._callers = self._callers_map(external=False)
        elif not own and self._all_callers is None:  # a stub's: calls into other modules too
            self._all_callers = self._callers_map(external=True)
        found = self._callers if own else self._all_callers
        return found.get(id(scope.node), []) if found is not None else []

    @cached_property
    def _own_scopes(self) -> set[int]:
        return {id(s.node) for s in self.model.scopes}

    def _callers_map(self, external: bool) -> dict[int, list[tuple[cst.Call, Scope]]]:
        methods = {name for info in self.model.classes.values() for name in info.methods}
        found: dict[int, list[tuple[cst.Call, Scope]]] = {}
        for site in self.model.calls:
            callee = self.model.callee(site.node, site.scope, external)
            func = site.node.func
            if callee is None and isinstance(func, cst.Attribute) and func.attr.value in methods:
                callee = self.model.callee(site.node, site.scope)
            if callee is not None and callee is not site.scope:
                found.setdefault(id(callee.node), []).append((site.node, site.scope))
        return found

    def order_of_event(self, event: Event) -> int:
        """Where ``event`` runs in its scope's order: at the call that reached a helper's."""
        return self._order(event)

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
    def mode_at(self, scope: Scope, event: Event) -> ModeAt:
        """The mode of ``event``'s subject just before it runs in ``scope``: found by its node
        *and* the calls that reached it (a helper's node stands for every call of the helper,
        the first of them maybe in the training loop, before a later ``model.eval()``)."""
        events = self.scope_events(scope)
        for index, candidate in enumerate(events):
            if candidate.node is event.node and _same_calls(candidate.via, event.via):
                return self.mode_before(scope, event.node, event.subject, at=index)
        return self.mode_before(scope, event.node, event.subject)

    def mode_before(
        self,
        scope: Scope,
        node: cst.CSTNode,
        subject: str | None,
        depth: int = 0,
        at: int | None = None,
    ) -> ModeAt:
        """The mode of ``subject`` just before ``node`` (event ``at`` of the scope's events,
        when known) runs, in ``scope``."""
        events = self.scope_events(scope)
        index = self.index_of(events, node) if at is None else at
        target = events[index] if index < len(events) else None
        earlier = events[:index]
        for event in reversed(earlier):
            if event.kind in _SWITCHES and same_model(event.subject, subject):
                mode = Mode.EVAL if event.kind is EventKind.EVAL_MODE else Mode.TRAIN
                if chosen_at_run_time(event, earlier, target):
                    mode = Mode.EITHER
                return ModeAt(mode, event)
        if depth < 0:
            return ModeAt(Mode.UNKNOWN)  # asked for a wrapper's argument: its own switches only
        if self._loaded_in_eval(scope, node, subject):
            return ModeAt(Mode.EVAL)
        wrapped = self._wraps_evaluated(scope, node, subject, index)
        if wrapped is not None:
            return wrapped
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
        return (
            self._held_in_eval(scope, subject)
            or self._set_by_other_modules(scope, subject, found)
            or ModeAt(Mode.UNKNOWN)
        )

    def _loaded_in_eval(self, scope: Scope, node: cst.CSTNode, subject: str | None) -> bool:
        """``model = AutoModel.from_pretrained(...)`` (also ``.to(device)`` after it):
        Hugging Face's ``from_pretrained`` returns the model in eval mode, and nothing
        switched it since (the switches before ``node`` were looked at first)."""
        if not subject or "." in subject:
            return False
        bindings = self.model.lookup(subject, scope, self.model.order_of(node))
        return bool(bindings) and self._from_pretrained(bindings[0])

    def _from_pretrained(self, binding: Binding) -> bool:
        """``X.from_pretrained(...)`` of transformers (also ``.to(device)`` after it)."""
        if binding.augmented or binding.unpack_index is not None:
            return False
        value = binding.value
        while isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            if value.func.attr.value not in ("to", "cuda", "half", "float", "bfloat16"):
                break
            value = value.func.value  # ``X.from_pretrained(...).to(device)``
        if not isinstance(value, cst.Call) or not isinstance(value.func, cst.Attribute):
            return False
        qualified = self.model.imports.qualify(value.func) or ""
        return qualified.startswith("transformers.") and qualified.endswith(".from_pretrained")

    def _wraps_evaluated(
        self, scope: Scope, node: cst.CSTNode, subject: str | None, index: int
    ) -> ModeAt | None:
        """``searcher = GreedySearchDecoder(encoder, decoder)`` built from models switched to
        eval mode before ``node``, by a same-file module class holding no Dropout/BatchNorm
        of its own: its forward runs them in eval mode."""
        if not subject or "." in subject:
            return None
        bindings = [b for b in self.model.lookup(subject, scope) if not b.augmented]
        value = bindings[0].value if len(bindings) == 1 else None
        if not isinstance(value, cst.Call) or any(a.star for a in value.args):
            return None
        info = self.model.classes.get(dotted(value.func) or "")
        if info is None or not self.model.is_module_class(info):
            return None
        if self.model.module_structure.of_class(info).layers:
            return None  # its own Dropout/BatchNorm follow its own mode
        names = [dotted(a.value) for a in value.args]
        # depth -1: the arguments' own switches only (no callers, no further wrappers)
        modes = [self.mode_before(scope, node, n, -1, index).mode for n in names if n]
        known = [m for m in modes if m is not Mode.UNKNOWN]
        return ModeAt(Mode.EVAL) if known and all(m is Mode.EVAL for m in known) else None

    def _set_by_other_modules(
        self, scope: Scope, subject: str | None, found: list[ModeAt]
    ) -> ModeAt | None:
        """The mode other modules' calls of ``scope`` leave ``subject`` (rooted at a
        parameter) in: eval when every call, here and there, is in eval mode; chosen at run
        time when one is. Asked last, only when the mode is still unknown (it reads other
        files). A caller's train mode stays unknown here: its switch is in another file."""
        root = (subject or "").split(".", 1)[0]
        if not root or root not in scope.params:
            return None
        records = self._external_callers(scope)
        if not records:
            return None
        params = tuple(scope.params)
        modes = [Mode(r.mode_of(params, root)) for r in records] + [f.mode for f in found]
        if all(m is Mode.EVAL for m in modes):
            return ModeAt(Mode.EVAL)
        return ModeAt(Mode.EITHER) if Mode.EITHER in modes else None

    def _external_callers(self, scope: Scope) -> list[CallerRecord]:
        key = id(scope.node)
        if key not in self._external:
            self._external[key] = external_callers(self.model, scope) or []
        return self._external[key]

    def _held_in_eval(self, scope: Scope, subject: str | None) -> ModeAt | None:
        """``self._model.eval()`` in the constructor of a plain class whose methods never
        switch it back: a wrapper that keeps its model in eval mode for its whole life. A
        model the constructor loads with ``from_pretrained`` (in eval mode) counts too."""
        cls = scope.cls
        if cls is None or not subject or not subject.startswith("self.") or scope.node is None:
            return None
        init = cls.methods.get("__init__")
        if init is None or init is scope or self.model.is_module_class(cls):
            return None
        switches = [
            e
            for e in self.scope_events(init)
            if e.kind in _SWITCHES and e.subject is not None and same_model(e.subject, subject)
        ]
        if switches and switches[-1].kind is not EventKind.EVAL_MODE:
            return None
        if not switches:  # every binding of ``self.model`` in the class loads it in eval mode
            parts = subject.split(".")
            loaded = cls.attributes.get(parts[1], []) if len(parts) == 2 else []
            if not loaded or not all(self._from_pretrained(b) for b in loaded):
                return None
        for method in cls.methods.values():
            if any(
                e.kind is EventKind.TRAIN_MODE and same_model(e.subject, subject)
                for e in self.scope_events(method)
            ):
                return None
        return ModeAt(Mode.EVAL, switches[-1] if switches else None)

    def recalibrates(self, region: EvalRegion, forward: Event, state: ModeAt) -> bool:
        """``model.train()`` written in the region itself, then forwards with gradients off:
        BatchNorm statistics recomputed on purpose (SWA's ``bn_update``, AdaBN), not an
        evaluation left in training mode."""
        switch = state.switch
        if state.mode is not Mode.TRAIN or switch is None or switch.via:
            return False  # a helper's switch (``set_mode()``) is not a deliberate one
        if not any(contains(s, switch.node) for s in region.statements(self.model)):
            return False
        return self.grad_disabled(region.scope, forward, region.node)

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
    def grad_disabled(
        self, scope: Scope, event: Event, region_node: cst.CSTNode, other_modules: bool = False
    ) -> bool:
        """Whether ``event`` (found in a region written in ``scope``) runs with gradients off;
        ``other_modules``: also around every call of a function only other modules call (read
        from their files, so asked for evaluation regions only)."""
        if "no_grad" in event.contexts:
            return True
        flow = self.model.dataflow
        if flow.grad_disabled(region_node, event.node, *event.via):
            return True
        anchor = event.via[0] if event.via else event.node
        return self._disabled_before(scope, anchor) or self._callers_disable(
            scope, 0, other_modules
        )

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

    def call_grad_disabled(self, scope: Scope, call: cst.Call) -> bool:
        """Whether ``call`` (written in ``scope``) runs with gradients off."""
        if self.model.dataflow.grad_disabled(call) or self._disabled_before(scope, call):
            return True
        return self._callers_disable(scope, 0)

    def _callers_disable(self, scope: Scope, depth: int, other_modules: bool = False) -> bool:
        if scope.is_module or depth >= 2:
            return False
        callers = self.callers(scope)
        if not callers:
            # only other modules call it: each of their calls under ``no_grad``
            records = self._external_callers(scope) if other_modules else []
            return bool(records) and all(r.grad_off for r in records)
        flow = self.model.dataflow
        return all(
            flow.grad_disabled(call)
            or self._disabled_before(caller, call)
            or self._callers_disable(caller, depth + 1, other_modules)
            for call, caller in callers
        )


def _same_calls(first: tuple[cst.Call, ...], second: tuple[cst.Call, ...]) -> bool:
    return len(first) == len(second) and all(a is b for a, b in zip(first, second, strict=True))


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
