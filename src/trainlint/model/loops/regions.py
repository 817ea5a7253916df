"""Evaluation regions vs train steps: what a loop is *for*.

A loop whose iteration back-propagates (directly or in a same-file helper) trains; a loop that
does not, and runs with gradients disabled, after ``model.eval()``, in a function named like an
evaluation (``validate``, ``evaluate``, ``test_epoch``), or over a loader named so
(``val_loader``), evaluates. Rules weigh findings by it: a mean of batch means in evaluation
code misreports the metric that picks checkpoints (TL202 warning); in a train step it is a
running loss printed for a progress bar (info).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import EventKind
from trainlint.model.syntax.nodes import dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo

_EVAL_FUNCTION = re.compile(
    r"(^|_)(eval|evaluate|evaluation|valid|validate|validation|val|test|testing|predict|"
    r"inference|infer|score)(_|$)",
    re.I,
)
_EVAL_LOADER = re.compile(
    r"(^|_)(val|valid|validation|test|eval|dev|holdout)(_|$|loader|set)", re.I
)
_TRAINING = {EventKind.BACKWARD, EventKind.STEP, EventKind.ENGINE_STEP}


def trains(model: TrainingModel, loop: LoopInfo) -> bool:
    """Whether an iteration of ``loop`` back-propagates or steps an optimizer."""
    return any(event.kind in _TRAINING for event in model.iteration(loop))


def evaluates(model: TrainingModel, loop: LoopInfo) -> bool:
    """Whether ``loop`` is evaluation code (see the module docstring)."""
    if trains(model, loop):
        return False
    if model.dataflow.grad_disabled(loop.node):
        return True
    if _EVAL_FUNCTION.search(loop.scope.short_name):
        return True
    iterable = loop.iter_expr
    while isinstance(iterable, cst.Call) and iterable.args:  # ``tqdm(val_loader)``
        iterable = iterable.args[0].value
    name = (dotted(iterable) or "").rsplit(".", 1)[-1]
    if name and _EVAL_LOADER.search(name):
        return True
    return _switched_to_eval(model, loop)


def _switched_to_eval(model: TrainingModel, loop: LoopInfo) -> bool:
    """``model.eval()`` (or ``model.train(False)``) is the last mode switch before the loop in
    its function."""
    evaluating = False
    for site in sorted(model.calls, key=lambda s: s.order):
        if site.scope is not loop.scope or site.order >= loop.order:
            continue
        method = method_call(site.node)
        if method is None:
            continue
        if method[1] == "eval" and not site.node.args:
            evaluating = True
        elif method[1] == "train":
            value = site.node.args[0].value if site.node.args else None
            evaluating = isinstance(value, cst.Name) and value.value == "False"
    return evaluating
