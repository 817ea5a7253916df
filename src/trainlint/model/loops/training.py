"""Train steps and accumulation windows, derived from loop iterations.

A *train step* is a loop whose iteration reaches a backward and an optimizer step
(directly, in nested loops, or through same-file helpers). Its *accumulation* says whether
gradients are deliberately summed over several micro-steps before each step, and how:

* a guard on the step: ``(i + 1) % k == 0``, ``step % k == k - 1``, ``i % k == 0`` after an
  increment, ``(i + 1) % k == 0 or i + 1 == len(loader)``, a flag assigned from one of these
  (``need_update = ...``), or a counter compared with ``k`` and reset after the step;
* an inner micro-step loop that runs backward, with the step after it;
* ``with accelerator.accumulate(model)``, where Accelerate decides.

A guard only makes a window when some backward runs outside it (a generator trained every
``n_critic`` iterations, backward and step both guarded, accumulates nothing).

Guards themselves are read in :mod:`.windows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.counters import running_counters
from trainlint.model.loops.events import Condition, Event, EventKind
from trainlint.model.loops.windows import (
    GuardReader,
    GuardShape,
    WindowKind,
    epoch_start,
    is_window_condition,
    modulo_operand,
    scales_gradients,
)
from trainlint.model.syntax.nodes import dotted, method_call, positional
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo

__all__ = [
    "Accumulation",
    "TrainStep",
    "WindowKind",
    "epoch_start",
    "find_accumulation",
    "is_window_condition",
    "modulo_operand",
    "scales_gradients",
    "per_call_steps",
    "train_steps",
]


@dataclass(frozen=True)
class Accumulation:
    kind: WindowKind
    guard: Condition | None = None  # the condition the step runs under (MODULO / COUNTER)
    steps: cst.BaseExpression | None = None  # k, when it can be read off the guard or loop
    inner_loop: LoopInfo | None = None  # INNER_LOOP: the micro-step loop
    #: The guard's test with flags resolved (``need_update`` -> ``(i + 1) % k == 0 or ...``).
    test: cst.BaseExpression | None = None
    #: The name the guard counts with (``i``, ``global_step``, ``accum_count``).
    counter: str | None = None
    #: The guard also fires on the last batch (``or i + 1 == len(loader)``).
    flushes_last: bool = False
    #: Optimizers stepped once per window, by the loop's name for them.
    optimizers: tuple[str, ...] = ()
    #: Backwards that run on every micro-step (outside the guard, or in the inner loop).
    micro_backwards: tuple[Event, ...] = field(default=(), compare=False)
    #: INNER_LOOP: the inner loop feeds micro-batches (a forward, ``range(k)``, ``chunk``...),
    #: as opposed to summing several losses of one batch.
    micro_batched: bool = False
    #: INNER_LOOP over a data loader: the whole epoch is one window.
    whole_epoch: bool = False


@dataclass(frozen=True)
class TrainStep:
    loop: LoopInfo
    events: list[Event]
    accumulation: Accumulation | None
    #: The function body is the iteration: ``loop`` is its micro-step loop and the step comes
    #: after it, once per call, from a caller trainlint cannot see (see :func:`per_call_steps`).
    per_call: bool = False

    def of_kind(self, *kinds: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    @property
    def backwards(self) -> list[Event]:
        return self.of_kind(EventKind.BACKWARD)

    @property
    def steps(self) -> list[Event]:
        return self.of_kind(EventKind.STEP)

    def micro_step_counters(self) -> frozenset[str]:
        """Names counting micro-steps in this loop and its micro-step loop (``i``, ``step``)."""
        loops = [self.loop]
        if self.accumulation is not None and self.accumulation.inner_loop is not None:
            loops.append(self.accumulation.inner_loop)
        return running_counters(loops, self.events)

    def optimizers(self) -> list[str]:
        """Stepped optimizers, in order of first step, by the loop's name for them."""
        seen: dict[str, None] = {}
        for event in self.steps:
            if event.subject:
                seen.setdefault(event.subject, None)
        return list(seen)


# ---------------------------------------------------------------------- windows
def _next_step(events: list[Event], index: int) -> Event | None:
    """The optimizer step a backward at ``index`` feeds: the next one, wrapping around."""
    ordered = events[index + 1 :] + events[:index]
    for event in ordered:
        if event.kind is EventKind.STEP and not event.closure:
            return event
    return None


def _micro_batched(model: TrainingModel, inner: LoopInfo, events: list[Event]) -> bool:
    """The inner loop feeds micro-batches: it runs the model, or walks chunks of a batch
    (several losses of one batch, ``for term in losses: term.backward()``, do not count)."""
    if any(e.kind is EventKind.FORWARD and inner in e.loops for e in events):
        return True
    source = inner.iter_expr
    if isinstance(source, cst.Call) and dotted(source.func) in ("enumerate", "zip"):
        return any(_splits(model, arg.value) for arg in source.args)
    return _splits(model, source) or _over_loader(model, inner)


def _splits(model: TrainingModel, source: cst.BaseExpression | None) -> bool:
    """``batch.chunk(k)``, ``x.split(n)``, ``torch.chunk(x, k)``."""
    if not isinstance(source, cst.Call):
        return False
    called = method_call(source)
    if called is not None and called[1] in ("chunk", "split", "tensor_split"):
        return True
    qualified = model.imports.qualify(source.func)
    return qualified in ("torch.chunk", "torch.split", "torch.tensor_split")


def _over_loader(model: TrainingModel, inner: LoopInfo) -> bool:
    source = inner.iter_expr
    if isinstance(source, cst.Call) and dotted(source.func) in ("enumerate", "tqdm", "iter"):
        source = positional(source, 0)
    return source is not None and model.role_of(source, inner.scope) is Role.LOADER


def _inner_steps(model: TrainingModel, inner: LoopInfo) -> cst.BaseExpression | None:
    """The micro-step count: ``k`` of ``range(k)`` / ``x.chunk(k)`` (also through a name bound
    to it), else ``len(chunks)`` for a loop over a local sequence ``chunks``."""
    source = inner.iter_expr
    if isinstance(source, cst.Call) and dotted(source.func) == "enumerate":
        source = positional(source, 0)
    name = dotted(source) if isinstance(source, cst.Name) else None
    if name is not None:
        bindings = [b for b in model.lookup(name, inner.scope) if b.augmented is None]
        if bindings and isinstance(bindings[0].value, cst.Call) and not bindings[0].from_iteration:
            source = bindings[0].value
    if isinstance(source, cst.Call):
        if dotted(source.func) == "range" and len(source.args) == 1:
            return source.args[0].value
        called = method_call(source)
        if called and called[1] == "chunk":
            return positional(source, 0)
    if name is not None and model.role_of(cst.Name(name), inner.scope) is not Role.LOADER:
        return cst.parse_expression(f"len({name})")  # a made-up node, for messages only
    return None


def find_accumulation(
    loop: LoopInfo, events: list[Event], model: TrainingModel | None = None
) -> Accumulation | None:
    steps = [e for e in events if e.kind is EventKind.STEP and not e.closure]
    backwards = [e for e in events if e.kind is EventKind.BACKWARD]
    if not steps or not backwards:
        return None
    if any("accumulate" in e.contexts for e in backwards):
        names = tuple(dict.fromkeys(e.subject for e in steps if e.subject))
        return Accumulation(
            WindowKind.ACCELERATE, optimizers=names, micro_backwards=tuple(backwards)
        )
    if model is None:
        return None
    reader = GuardReader(model, events)
    windows: dict[int, tuple[Condition, GuardShape]] = {}
    for step in steps:
        for condition in step.conditions:
            shape = reader.shape(condition, step.scope)
            if shape is not None and shape.boundary:
                windows[id(step)] = (condition, shape)
                break
    found = _guarded_window(events, windows)
    if found is not None:
        return found
    return _inner_loop_window(model, events)


def _guarded_window(
    events: list[Event], windows: dict[int, tuple[Condition, GuardShape]]
) -> Accumulation | None:
    micro: list[Event] = []
    chosen: tuple[Condition, GuardShape] | None = None
    stepped: dict[str, None] = {}
    for index, event in enumerate(events):
        if event.kind is not EventKind.BACKWARD:
            continue
        step = _next_step(events, index)
        if step is None or id(step) not in windows:
            continue
        condition, shape = windows[id(step)]
        if any(c.test is condition.test for c in event.conditions):
            continue  # backward and step under one guard: nothing accumulates
        micro.append(event)
        chosen = chosen or (condition, shape)
        if step.subject:
            stepped.setdefault(step.subject, None)
    if chosen is None:
        return None
    condition, shape = chosen
    for event in events:  # every optimizer stepped under the same guard closes the window
        window = windows.get(id(event))
        if window is not None and event.subject and window[0].test is condition.test:
            stepped.setdefault(event.subject, None)
    return Accumulation(
        shape.kind,
        condition,
        shape.steps,
        test=shape.test,
        counter=shape.counter,
        flushes_last=shape.flushes_last,
        optimizers=tuple(stepped),
        micro_backwards=tuple(micro),
    )


def _inner_loop_window(model: TrainingModel, events: list[Event]) -> Accumulation | None:
    micro: list[Event] = []
    inner: LoopInfo | None = None
    stepped: dict[str, None] = {}
    for index, event in enumerate(events):
        if event.kind is not EventKind.BACKWARD:
            continue
        step = _next_step(events, index)
        if step is None:
            continue
        step_loops = {id(loop.node) for loop in step.loops}
        deeper = [loop for loop in event.loops if id(loop.node) not in step_loops]
        if not deeper:
            continue
        micro.append(event)
        inner = inner or deeper[0]
        if step.subject:
            stepped.setdefault(step.subject, None)
    if inner is None:
        return None
    return Accumulation(
        WindowKind.INNER_LOOP,
        steps=_inner_steps(model, inner),
        inner_loop=inner,
        optimizers=tuple(stepped),
        micro_backwards=tuple(micro),
        micro_batched=_micro_batched(model, inner, events),
        whole_epoch=_over_loader(model, inner),
    )


def train_steps(model: TrainingModel) -> list[TrainStep]:
    """Innermost loops that run backward and step, outside framework-managed code."""
    candidates: dict[int, TrainStep] = {}
    for loop in model.loops:
        if model.is_framework_managed(loop.scope):
            continue
        events = model.iteration(loop)
        kinds = {e.kind for e in events}
        if EventKind.BACKWARD in kinds and EventKind.STEP in kinds:
            accumulation = find_accumulation(loop, events, model)
            candidates[id(loop.node)] = TrainStep(loop, events, accumulation)
    found: list[TrainStep] = []
    for key, step in candidates.items():
        # keep the innermost: drop a loop when a loop its iteration runs (nested, or inside a
        # helper it calls, or in another module's function: that file reports it) is itself a
        # train step
        inner = {id(lp.node) for e in step.events for lp in e.loops} - {key}
        if not inner & (candidates.keys() | _external_train_loops(step.events)):
            found.append(step)
    return found


def _external_train_loops(events: list[Event]) -> set[int]:
    """Loops of other modules' functions (stubs) whose events backward and step."""
    kinds: dict[int, set[EventKind]] = {}
    for event in events:
        for loop in event.loops:
            if loop.external:
                kinds.setdefault(id(loop.node), set()).add(event.kind)
    return {k for k, v in kinds.items() if {EventKind.BACKWARD, EventKind.STEP} <= v}


def per_call_steps(model: TrainingModel, steps: list[TrainStep]) -> list[TrainStep]:
    """Functions that run one accumulation window per call: a micro-step loop that backwards
    and a step after it, with no loop of the file around them (``def train_step(batch):
    for micro in batch.chunk(k): ...backward(); opt.step()``, called by a trainer elsewhere).

    ``steps`` are the file's train steps: a loop one of them runs is already part of a window.
    """
    covered = {id(lp.node) for step in steps for e in step.events for lp in e.loops}
    covered |= {id(step.loop.node) for step in steps}
    found: list[TrainStep] = []
    seen: set[int] = set()
    for loop in model.loops:
        scope = loop.scope
        if id(loop.node) in covered or id(scope.node) in seen or scope.is_module:
            continue
        if model.is_framework_managed(scope):
            continue
        kinds = {e.kind for e in model.iteration(loop)}
        if EventKind.BACKWARD not in kinds or EventKind.STEP in kinds:
            continue
        events = model.function_events(scope)
        if any(id(lp.node) in covered for e in events for lp in e.loops):
            continue
        accumulation = _inner_loop_window(model, events)
        if accumulation is None or accumulation.inner_loop is None:
            continue
        seen.add(id(scope.node))
        found.append(TrainStep(accumulation.inner_loop, events, accumulation, per_call=True))
    return found
