"""What one loop is for: whether it trains (its iteration back-propagates or steps, directly or
in a same-file helper, or runs a TF 1 graph's training op) or evaluates (no training, and run
with gradients disabled, after ``model.eval()``, in a function or over a loader named like an
evaluation). The evaluation regions built on it are in :mod:`.regions`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import EventKind
from trainlint.model.syntax.nodes import calls_in, dotted, keyword, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo

EVAL_FUNCTION = re.compile(
    r"(^|_)(eval|evaluate|evaluation|valid|validate|validation|val|test|testing|predict|"
    r"inference|infer|score)(_|$)",
    re.I,
)
EVAL_LOADER = re.compile(r"(^|_)(val|valid|validation|test|eval|dev|holdout)(_|$|loader|set)", re.I)
TRAINING = {EventKind.BACKWARD, EventKind.STEP, EventKind.ENGINE_STEP}
SWITCHES = (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)


def trains(model: TrainingModel, loop: LoopInfo) -> bool:
    """Whether an iteration of ``loop`` back-propagates or steps an optimizer (also a TF 1
    ``sess.run`` of a training op: see :func:`runs_graph_train_op`)."""
    return any(event.kind in TRAINING for event in model.iteration(loop)) or runs_graph_train_op(
        model, loop
    )


_GRAPH_STEPS = ("minimize", "apply_gradients")


def runs_graph_train_op(model: TrainingModel, loop: LoopInfo) -> bool:
    """``sess.run([train_op, loss], feed_dict=...)`` in ``loop`` where ``train_op`` is an
    ``optimizer.minimize(...)`` / ``apply_gradients(...)`` op built in the graph (TF 1): the
    loop trains, though the step was written outside it. Not a train-step event (no backward
    and no step call are in the loop, and the torch rules reading events must not see one)."""
    for call in calls_in(loop.node):
        method = method_call(call)
        fetches = positional(call, 0) or keyword(call, "fetches")
        if method is None or method[1] != "run" or fetches is None:
            continue
        if isinstance(fetches, (cst.List, cst.Tuple)):
            candidates = [e.value for e in fetches.elements]
        else:
            candidates = [fetches]
        if any(_is_graph_step(model, f, loop) for f in candidates):
            return True
    return False


def _is_graph_step(model: TrainingModel, fetch: cst.BaseExpression, loop: LoopInfo) -> bool:
    if isinstance(fetch, (cst.Name, cst.Attribute)):
        bindings = model.lookup(dotted(fetch) or "", loop.scope)
        fetch = bindings[0].value if bindings and bindings[0].value is not None else fetch
    method = method_call(fetch)
    return method is not None and method[1] in _GRAPH_STEPS


def evaluates(model: TrainingModel, loop: LoopInfo) -> bool:
    """Whether ``loop`` is evaluation code (see the module docstring)."""
    if trains(model, loop):
        return False
    if model.dataflow.grad_disabled(loop.node):
        return True
    if EVAL_FUNCTION.search(loop.scope.short_name):
        return True
    iterable = loop.iter_expr
    while isinstance(iterable, cst.Call) and iterable.args:  # ``tqdm(val_loader)``
        iterable = iterable.args[0].value
    name = (dotted(iterable) or "").rsplit(".", 1)[-1]
    if name and EVAL_LOADER.search(name):
        return True
    return _switched_to_eval(model, loop)


def _switched_to_eval(model: TrainingModel, loop: LoopInfo) -> bool:
    """``model.eval()`` (or ``model.train(False)``) is the last mode switch before the loop in
    its function: written there, or made by a helper it calls first (``set_eval(model)``,
    ``self.switch_mode("eval")``, same file or another module: their events are inlined)."""
    last, evaluating = -1, False
    for site in sorted(model.calls, key=lambda s: s.order):
        if site.scope is not loop.scope or site.order >= loop.order:
            continue
        method = method_call(site.node)
        if method is None:
            continue
        if method[1] == "eval" and not site.node.args:
            last, evaluating = site.order, True
        elif method[1] == "train":
            value = site.node.args[0].value if site.node.args else None
            last, evaluating = site.order, isinstance(value, cst.Name) and value.value == "False"
    modes = model.modes
    for event in modes.scope_events(loop.scope):
        if not event.via or event.kind not in SWITCHES:
            continue
        order = modes.order_of_event(event)
        if last < order < loop.order:
            last, evaluating = order, event.kind is EventKind.EVAL_MODE
    return evaluating
