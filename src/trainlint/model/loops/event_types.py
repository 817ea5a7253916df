"""The vocabulary of the event model: event kinds, events, conditions and contexts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, literal, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope


class EventKind(enum.Enum):
    FORWARD = "forward"  # a model is called
    BACKWARD = "backward"  # gradients are computed from ``operand``
    GRAD = "grad"  # gradients produced another way: autograd.grad, ``p.grad = ...``
    STEP = "step"  # an optimizer (``subject``) applies gradients
    ENGINE_STEP = "engine_step"  # DeepSpeed engine step (clears gradients itself)
    ZERO_GRAD = "zero_grad"  # an optimizer's gradients are cleared
    MODEL_ZERO_GRAD = "model_zero_grad"  # ``model.zero_grad()``
    GRAD_CLEAR = "grad_clear"  # ``p.grad = None`` / ``p.grad.zero_()``
    CLIP = "clip"
    UNSCALE = "unscale"
    SCALER_UPDATE = "scaler_update"
    SCHEDULER_STEP = "scheduler_step"
    EVAL_MODE = "eval_mode"
    TRAIN_MODE = "train_mode"
    ACCUMULATE = "accumulate"  # ``acc += value`` / ``acc = acc + value``
    APPEND = "append"  # ``xs.append(value)``


CLEARING = (EventKind.ZERO_GRAD, EventKind.MODEL_ZERO_GRAD, EventKind.GRAD_CLEAR)


@dataclass(frozen=True)
class Condition:
    test: cst.BaseExpression
    negated: bool = False


@dataclass(frozen=True, eq=False)
class Event:
    kind: EventKind
    node: cst.CSTNode  # the anchor in the file: a call or a statement
    scope: Scope  # where ``node`` lives (a callee's scope when reached through a helper)
    subject: str | None = None  # the optimizer/model/scheduler/scaler, as the loop names it
    operand: cst.BaseExpression | None = None  # backward target, accumulated value, ...
    conditions: tuple[Condition, ...] = ()
    loops: tuple[LoopInfo, ...] = ()  # nested loops (inside the analyzed one) around it
    contexts: frozenset[str] = frozenset()  # no_grad, autocast, accumulate, tape, ...
    via: tuple[cst.Call, ...] = ()  # same-file calls through which it is reached
    scaled_by: str | None = None  # ``scaler.scale(loss).backward()``: the scaler
    closure: bool = False  # ``opt.step(closure)``
    managed: bool = False  # accelerator/fabric/engine call that handles scaling itself
    #: The method the call runs, also through an alias (``update = opt.step; update()``).
    method: str | None = None
    #: A mode switch on an element of a collection of models (``self._models[name].eval()``):
    #: it switches every model (see :mod:`.mode_switches`).
    collective: bool = False
    #: ``agent.eval()`` on an object of unknown type: presumably it switches the networks it
    #: holds (``agent.policy``), which sets their mode, but it is not reported as a switch.
    presumed: bool = False

    @property
    def guarded(self) -> bool:
        return bool(self.conditions)


_GRAD_DISABLING = {
    "torch.no_grad",
    "torch.inference_mode",
    "torch.autograd.no_grad",
    "torch.autograd.grad_mode.no_grad",
}
_AUTOCAST = {"torch.autocast", "torch.amp.autocast"}


def context_of(model: TrainingModel, item: cst.BaseExpression) -> str | None:
    """The kind of context a ``with`` item opens (``None`` when irrelevant)."""
    call = item if isinstance(item, cst.Call) else None
    target = call.func if call is not None else item
    qualified = model.imports.qualify(target) or ""
    name = dotted(target) or ""
    if name.startswith("__context_") and name.endswith("__"):  # a stub's (summaries.stubs)
        return name[len("__context_") : -2]
    if qualified in _GRAD_DISABLING:
        return "no_grad"
    if qualified == "torch.set_grad_enabled" and call is not None:
        return "no_grad" if literal(positional(call, 0), None) is False else None
    if qualified in _AUTOCAST or name.endswith("autocast"):
        return "autocast"
    if name.endswith(".accumulate") or name.endswith(".no_sync"):
        return "accumulate" if name.endswith(".accumulate") else "no_sync"
    if qualified == "tensorflow.GradientTape":
        return "tape"
    if name.endswith("scale_loss"):
        return "apex_scale"
    return None


def function_context(model: TrainingModel, scope: Scope) -> frozenset[str]:
    found = set()
    for decorator in scope.decorators:
        kind = context_of(model, decorator)
        if kind:
            found.add(kind)
    return frozenset(found)
