"""Code the model cannot see (helpers imported from other files, unresolved calls): whether it
may clear an optimizer's gradients (TL101) or compute gradients (TL103), judged from the names
it is called by, so that the gradient-cycle rules stay silent instead of guessing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.events import Event
from trainlint.model.syntax.nodes import descendants, dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

#: Words in the name of a function the model cannot see that may clear an optimizer passed to it.
_CLEARING_HINTS = ("zero", "clear", "reset", "step", "update", "optim", "grad")
#: ... and that may compute gradients (for TL103). ``zero_grad``, ``no_grad``,
#: ``clip_grad_norm_`` or ``GradScaler`` must not count, so "grad" alone is not a hint.
_GRADIENT_HINTS = (
    "backward",
    "backprop",
    "compute_grad",
    "calc_grad",
    "calculate_grad",
    "get_grad",
    "accumulate_grad",
    "optimize",
    "minimize",
)
_INPLACE_GRAD_METHODS = {"copy_", "add_", "set_", "fill_", "mul_", "div_", "sub_", "data"}


def _unresolved_calls(model: TrainingModel, node: cst.CSTNode, scope: Scope) -> Iterator[cst.Call]:
    for child in descendants(node):
        if isinstance(child, cst.Call) and model.callee(child, scope) is None:
            yield child


def _call_name(call: cst.Call) -> str:
    name = dotted(call.func)
    return (name or "").rsplit(".", 1)[-1].lower()


def regions(model: TrainingModel, loop: LoopInfo, events: Iterable[Event]):
    """The loop body and every same-file helper body its events were reached through."""
    yield loop.node, loop.scope
    seen: set[int] = set()
    for event in events:
        if event.via and id(event.scope.node) not in seen:
            seen.add(id(event.scope.node))
            yield event.scope.node, event.scope


def may_clear_unseen(
    model: TrainingModel, loop: LoopInfo, events: list[Event], optimizer: str
) -> bool:
    """A call the model cannot follow that could clear ``optimizer`` (``utils.zero(opt)``)."""
    short = optimizer.rsplit(".", 1)[-1]
    classified = {id(e.node) for e in events}
    for region, scope in regions(model, loop, events):
        for call in _unresolved_calls(model, region, scope):
            if id(call) in classified:
                continue
            name = _call_name(call)
            if "grad" in name and any(word in name for word in ("zero", "clear", "reset")):
                return True  # ``zero_grads(model)``, ``clear_gradients()``
            passes = any((dotted(arg.value) or "").rsplit(".", 1)[-1] == short for arg in call.args)
            if passes and any(hint in name for hint in _CLEARING_HINTS):
                return True
    return False


def may_compute_gradients_unseen(model: TrainingModel, node: cst.CSTNode, scope: Scope) -> bool:
    """Calls or assignments the event model does not classify that may produce gradients."""
    for child in descendants(node):
        if isinstance(child, cst.Call):
            name = _call_name(child)
            if model.callee(child, scope) is None and (
                name == "grad" or any(hint in name for hint in _GRADIENT_HINTS)
            ):
                return True
            method = method_call(child)
            if (
                method is not None
                and _touches_grad(method[0])
                and (method[1] in _INPLACE_GRAD_METHODS or method[1].endswith("_"))
            ):
                return True
        elif isinstance(child, (cst.Assign, cst.AugAssign)):
            targets = (
                [t.target for t in child.targets]
                if isinstance(child, cst.Assign)
                else [child.target]
            )
            if any(_touches_grad(t) for t in targets):
                return True
    return False


def _touches_grad(node: cst.CSTNode) -> bool:
    """``p.grad``, ``p.grad.data``, ``p.grad[...]``."""
    while isinstance(node, cst.Subscript):
        node = node.value
    name = dotted(node) or ""
    return name.endswith(".grad") or ".grad." in name
