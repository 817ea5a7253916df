"""What one call is as an event of an iteration: a backward, an optimizer step, a zero_grad, a
forward, a mode switch... (see :mod:`.events`, which flattens blocks into these)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.loops.mode_switches import collective_receiver, mode_switch, wrapper_switch
from trainlint.model.syntax.nodes import dotted, method_call, positional
from trainlint.model.values.modules import constructs_module
from trainlint.model.values.roles import Role, is_closure_step

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


def classify_call(
    model: TrainingModel,
    call: cst.Call,
    scope: Scope,
    make: Callable[..., Event],
    argument_role: Callable[[str, Scope], Role | None],
) -> Event | None:
    """The event ``call`` is in ``scope``, made by ``make`` (None: not an event).

    ``argument_role``: the role of what an inlined helper's parameter was called with."""
    qualified = model.imports.qualify(call.func) or ""
    method = model.bound_method(call, scope)  # also ``step = optimizer.step; step()``
    if qualified in ("torch.autograd.backward",):
        return make(EventKind.BACKWARD, call, operand=positional(call, 0))
    if qualified in ("torch.autograd.grad",):
        return make(EventKind.GRAD, call)
    if qualified.startswith("torch.nn.utils.clip_grad"):
        return make(EventKind.CLIP, call)
    if method is None:
        value = model.value_of(call.func, scope)
        if value is not None and value.role is Role.MODEL:
            if value.call is None and constructs_module(model, call, scope):
                return None  # ``Model(envs)``: a class given as a parameter, instantiated
            return make(EventKind.FORWARD, call, subject=dotted(call.func))
        return None
    receiver, name = method
    make = functools.partial(make, method=name)
    subject = dotted(receiver)
    role = model.role_of(receiver, scope)
    if role is None and isinstance(receiver, cst.Name):
        role = argument_role(receiver.value, scope)
    if name == "backward":
        if role in (Role.ACCELERATOR, Role.ENGINE) or subject in ("self", "fabric"):
            return make(EventKind.BACKWARD, call, operand=positional(call, 0), managed=True)
        inner = method_call(receiver)
        if inner is not None and inner[1] == "scale" and isinstance(receiver, cst.Call):
            return make(
                EventKind.BACKWARD,
                call,
                operand=positional(receiver, 0),
                scaled_by=dotted(inner[0]),
            )
        if role is Role.OPTIMIZER and positional(call, 0) is not None:
            # apex ``FP16_Optimizer`` / DeepSpeed's optimizer: ``optimizer.backward(loss)``
            return make(EventKind.BACKWARD, call, operand=positional(call, 0))
        if role is Role.OBJECT:
            return None  # a plain class's own ``backward`` (its body is inlined instead)
        if role is None or role is not Role.MODEL:
            return make(EventKind.BACKWARD, call, operand=receiver)
    if name == "manual_backward":
        return make(EventKind.BACKWARD, call, operand=positional(call, 0), managed=True)
    if name == "step":
        if role is Role.OPTIMIZER:
            return make(EventKind.STEP, call, subject=subject, closure=is_closure_step(call))
        if role is Role.SCALER:
            return make(
                EventKind.STEP, call, subject=dotted(positional(call, 0)), scaled_by=subject
            )
        if role is Role.SCHEDULER:
            return make(EventKind.SCHEDULER_STEP, call, subject=subject)
        if role is Role.ENGINE:
            return make(EventKind.ENGINE_STEP, call, subject=subject)
        return None
    if name == "zero_grad":
        if role is Role.OPTIMIZER:
            return make(EventKind.ZERO_GRAD, call, subject=subject)
        if role in (Role.MODEL, None) or subject == "self":
            return make(EventKind.MODEL_ZERO_GRAD, call, subject=subject)
        if role is Role.ENGINE:
            return make(EventKind.MODEL_ZERO_GRAD, call, subject=subject)
        return None
    if name in ("zero_", "detach_") and (subject or "").endswith(".grad"):
        return make(EventKind.GRAD_CLEAR, call, subject=subject)
    if name in ("zero_",) and (subject or "").endswith(".grad.data"):
        return make(EventKind.GRAD_CLEAR, call, subject=subject)
    if name == "unscale_" and role is Role.SCALER:
        return make(EventKind.UNSCALE, call, subject=dotted(positional(call, 0)), scaled_by=subject)
    if name == "update" and role is Role.SCALER:
        return make(EventKind.SCALER_UPDATE, call, subject=subject)
    if name in ("clip_grad_norm_", "clip_grad_value_"):
        managed = role in (Role.ACCELERATOR, Role.ENGINE) or subject == "fabric"
        return make(EventKind.CLIP, call, subject=subject, managed=managed)
    if name in ("eval", "train"):
        collective = role in (None, Role.MODEL) and collective_receiver(receiver, scope)
        # ``self.eval()`` in a method of an ``nn.Module`` subclass (``def predict(self,
        # x): self.eval(); ...``): a switch of the instance the caller names
        own = subject == "self" and scope.cls is not None
        own = own and model.is_torch_module_class(scope.cls)  # type: ignore[arg-type]
        if role is Role.MODEL or collective or own:
            return mode_switch(call, name, None if collective else subject, make)
        if role is None:
            found = wrapper_switch(model, call, receiver, name, scope, make)
            if found is not None:
                return found
    if name == "apply_gradients" or (name == "minimize" and role is Role.OPTIMIZER):
        return make(EventKind.STEP, call, subject=subject)
    if name == "gradient" and role is Role.TAPE:
        return make(EventKind.BACKWARD, call, operand=positional(call, 0), subject=subject)
    if name in ("append", "extend") and subject:
        return make(EventKind.APPEND, call, subject=subject, operand=positional(call, 0))
    if role is Role.MODEL and name in ("forward", "__call__"):
        return make(EventKind.FORWARD, call, subject=subject)
    if role is Role.MODEL and name not in ("parameters", "named_parameters", "state_dict"):
        return None
    if subject == "self" and scope.cls is not None and name in scope.cls.methods:
        return None  # ``self.restore_model(it)``: the class's own method, named like a model
    value = model.value_of(call.func, scope) if name not in ("item",) else None
    if value is not None and value.role is Role.MODEL:
        return make(EventKind.FORWARD, call, subject=dotted(call.func))
    return None
