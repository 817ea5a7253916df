"""Loops, their events and accumulation windows, as report entries."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import libcst as cst

from trainlint.model import Event, TrainingModel, TrainStep, WindowKind
from trainlint.model.dataflow.lossflow import backward_flow
from trainlint.model.dataflow.scaling import (
    backward_scaling,
    divides_by_running_counter,
    divides_by_window,
    presumed_mean,
)
from trainlint.model.loops.events import EventKind
from trainlint.model.loops.placement import Placement
from trainlint.model.loops.windows import is_window_condition
from trainlint.model.syntax.scopes import LoopInfo

Report = dict[str, Any]


#: Events of a train step: a loop with any of them is not an eval loop.
_GRADIENT_KINDS = frozenset(
    {
        EventKind.BACKWARD, EventKind.GRAD, EventKind.STEP, EventKind.ENGINE_STEP,
        EventKind.ZERO_GRAD, EventKind.MODEL_ZERO_GRAD, EventKind.GRAD_CLEAR, EventKind.CLIP,
        EventKind.UNSCALE, EventKind.SCALER_UPDATE,
    }
)  # fmt: skip


@lru_cache(maxsize=1)  # one parent map for the file being inspected
def _placement(model: TrainingModel) -> Placement:
    return Placement(model)


def is_eval_loop(model: TrainingModel, loop: LoopInfo, in_steps: set[int]) -> bool:
    """A loop that calls a model and runs no backward: the innermost such loop (a loop over
    checkpoints that calls ``evaluate()`` is not one), and none that touches gradients (a
    ``loss_scaler(loss, optimizer)`` that hides the backward still clears or steps)."""
    if id(loop.node) in in_steps:
        return False
    events = model.iteration(loop)
    if any(e.kind is EventKind.FORWARD and e.loops for e in events):
        return False  # the model runs in a nested loop (or a helper's loop): that one is it
    kinds = {e.kind for e in events}
    return EventKind.FORWARD in kinds and not kinds & _GRADIENT_KINDS


def _header(model: TrainingModel, loop: LoopInfo) -> str:
    node = loop.node
    if isinstance(node, cst.For):
        return f"for {model.text_of(node.target)} in {model.text_of(node.iter)}"
    return f"while {model.text_of(node.test)}"


def _loop(model: TrainingModel, loop: LoopInfo, events: list[Event]) -> Report:
    return {
        "line": model.line_of(loop.node),
        "function": loop.scope.name,
        "header": _header(model, loop),
        "contexts": sorted(_placement(model).contexts_at(loop.node)),
        "per_call": False,
        "events": [_event(model, e, events) for e in events],
    }


def _event(model: TrainingModel, event: Event, events: list[Event]) -> Report:
    return {
        "line": model.line_of(event.node),
        "kind": event.kind.value,
        "subject": event.subject,
        "operand": model.text_of(event.operand) or None,
        "conditions": [
            {
                "test": model.text_of(c.test),
                "negated": c.negated,
                "window_guard": is_window_condition(model, c, event.scope, events),
            }
            for c in event.conditions
        ],
        "contexts": sorted(event.contexts),
        "in_loops": [model.line_of(lp.node) for lp in event.loops],
        "via": [f"{model.text_of(c.func)}() at line {model.line_of(c)}" for c in event.via],
    }


def train_step_report(model: TrainingModel, step: TrainStep) -> Report:
    report = _loop(model, step.loop, step.events)
    report["per_call"] = step.per_call
    if step.per_call:
        report["line"] = model.line_of(step.loop.scope.node)
        report["header"] = f"def {step.loop.scope.short_name}(...), one window per call"
    report["window"] = window_report(model, step)
    return report


def window_report(model: TrainingModel, step: TrainStep) -> Report | None:
    window = step.accumulation
    if window is None:
        return None
    guard = window.guard.test if window.guard is not None else None
    return {
        "kind": window.kind.value,
        "guard": model.text_of(guard) or None,
        "line": model.line_of(guard) if guard is not None else None,
        "length": model.text_of(window.steps) or None,
        "counter": window.counter,
        "flushes_last": window.flushes_last,
        "optimizers": list(window.optimizers),
        "backwards": [_scaling(model, step, e) for e in window.micro_backwards],
    }


def _scaling(model: TrainingModel, step: TrainStep, event: Event) -> Report:
    """How one micro-step backward is scaled over the window, in words."""
    assert step.accumulation is not None
    flow = backward_flow(model, event, step.loop.scope)
    counters = step.micro_step_counters()
    backward = backward_scaling(model, event)
    if backward.divides is True:
        scaling = f"`{backward.receiver or 'accelerator'}.backward()` divides by the window itself"
    elif step.accumulation.kind is WindowKind.ACCELERATE:
        scaling = "Accelerate's accumulate() decides"
    elif (running := divides_by_running_counter(flow, counters)) is not None:
        scaling = f"divided by a running micro-step counter `{model.text_of(running.divisor)}`"
    elif (division := divides_by_window(flow, step.accumulation.steps, counters)) is not None:
        scaling = f"divided by `{model.text_of(division.divisor)}` (taken as the window length)"
    elif flow.divisions:
        scaling = "divided, but not by anything read as the window length"
    else:
        scaling = "not divided"
    return {
        "line": model.line_of(event.node),
        "operand": model.text_of(event.operand) or "",
        "reduction": flow.reduction.value,
        "presumed": presumed_mean(flow),
        "sources": [s.label for s in flow.sources],
        "divisions": [model.text_of(d.divisor) for d in flow.divisions],
        "scaling": scaling,
    }


def eval_loop(model: TrainingModel, loop: LoopInfo) -> Report:
    return _loop(model, loop, model.iteration(loop))
