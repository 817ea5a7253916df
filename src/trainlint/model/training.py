"""Train steps and accumulation windows, derived from loop iterations.

A *train step* is a loop whose iteration reaches a backward and an optimizer step
(directly, in nested loops, or through same-file helpers). Its *accumulation* says whether
gradients are deliberately summed over several micro-steps before each step, and how.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.events import Condition, Event, EventKind
from trainlint.model.syntax import descendants, dotted

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.scopes import LoopInfo


class WindowKind(enum.Enum):
    MODULO = "modulo"  # if (i + 1) % k == 0: opt.step()
    COUNTER = "counter"  # if accum_count == k: opt.step(); accum_count = 0
    INNER_LOOP = "inner_loop"  # for micro in chunks: backward() ... then step() after it
    ACCELERATE = "accelerate"  # with accelerator.accumulate(model): Accelerate decides


@dataclass(frozen=True)
class Accumulation:
    kind: WindowKind
    guard: Condition | None = None  # the condition the step runs under (MODULO / COUNTER)
    steps: cst.BaseExpression | None = None  # k, when it can be read off the guard
    inner_loop: LoopInfo | None = None  # INNER_LOOP: the micro-step loop


@dataclass(frozen=True)
class TrainStep:
    loop: LoopInfo
    events: list[Event]
    accumulation: Accumulation | None

    def of_kind(self, *kinds: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind in kinds]

    @property
    def backwards(self) -> list[Event]:
        return self.of_kind(EventKind.BACKWARD)

    @property
    def steps(self) -> list[Event]:
        return self.of_kind(EventKind.STEP)

    def optimizers(self) -> list[str]:
        """Stepped optimizers, in order of first step, by the loop's name for them."""
        seen: dict[str, None] = {}
        for event in self.steps:
            if event.subject:
                seen.setdefault(event.subject, None)
        return list(seen)


def modulo_operand(test: cst.CSTNode) -> cst.BaseExpression | None:
    """``k`` in a test like ``(i + 1) % k == 0``; ``None`` when there is no ``%``."""
    for node in (test, *descendants(test)):
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            return node.right
    return None


def _mentions_accumulation(test: cst.CSTNode) -> bool:
    for node in (test, *descendants(test)):
        name = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        if name and ("accum" in name.lower() or name.endswith("sync_gradients")):
            return True
    return False


def accumulation_guard(event: Event) -> Condition | None:
    """The condition that makes ``event`` (a step) run only every k-th micro-step."""
    for condition in event.conditions:
        if condition.negated:
            continue
        if modulo_operand(condition.test) is not None or _mentions_accumulation(condition.test):
            return condition
    return None


def find_accumulation(loop: LoopInfo, events: list[Event]) -> Accumulation | None:
    steps = [e for e in events if e.kind is EventKind.STEP and not e.closure]
    backwards = [e for e in events if e.kind is EventKind.BACKWARD]
    if not steps or not backwards:
        return None
    if any("accumulate" in e.contexts for e in backwards):
        return Accumulation(WindowKind.ACCELERATE)
    for step in steps:
        guard = accumulation_guard(step)
        if guard is not None:
            operand = modulo_operand(guard.test)
            kind = WindowKind.MODULO if operand is not None else WindowKind.COUNTER
            return Accumulation(kind, guard, operand)
    step_loops = {id(inner.node) for e in steps for inner in e.loops}
    for backward in backwards:
        deeper = [inner for inner in backward.loops if id(inner.node) not in step_loops]
        if deeper:
            return Accumulation(WindowKind.INNER_LOOP, inner_loop=deeper[0])
    return None


def train_steps(model: TrainingModel) -> list[TrainStep]:
    """Innermost loops that run backward and step, outside framework-managed code."""
    found: list[TrainStep] = []
    candidates: dict[int, TrainStep] = {}
    for loop in model.loops:
        if model.is_framework_managed(loop.scope):
            continue
        events = model.iteration(loop)
        kinds = {e.kind for e in events}
        if EventKind.BACKWARD in kinds and EventKind.STEP in kinds:
            candidates[id(loop.node)] = TrainStep(loop, events, find_accumulation(loop, events))
    for _key, step in candidates.items():
        # keep the innermost: drop a loop when one of its nested loops is itself a train step
        nested = [c for c in step.loop.children if _contains_candidate(c, candidates)]
        if not nested:
            found.append(step)
    return found


def _contains_candidate(loop: LoopInfo, candidates: dict[int, TrainStep]) -> bool:
    if id(loop.node) in candidates:
        return True
    return any(_contains_candidate(child, candidates) for child in loop.children)
