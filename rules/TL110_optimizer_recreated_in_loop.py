from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import EventKind, TrainingModel
from trainlint.model.loops.creations import OptimizerCreation
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import LoopInfo, Scope, argument_for
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP

_FIX = Fix("build the optimizer once, before the loop (and the scheduler with it)")


class OptimizerRecreatedInLoop(Rule):
    """An optimizer is rebuilt inside the loop that trains with it.

    ## What it does
    Flags an optimizer constructor (`torch.optim.*`, `timm`/`transformers` optimizers,
    keras optimizers) that runs on every iteration of a loop which also steps that
    optimizer, while the model whose parameters it takes is built outside the loop. Also
    flags a function that builds an optimizer for a model it is given and trains with it,
    when a loop of the file calls it for the same model again and again (one epoch per call).

    Stays silent when the model is re-created in the same loop (k-fold cross-validation,
    hyper-parameter search, one fresh model per run), re-initialized there
    (`model.load_state_dict(initial)`, `model.apply(reset)`), or is the loop's own target
    (`for net in nets:`), on an optimizer per task made from per-task weights (meta-learning
    inner loops), and on an optimizer built under a condition inside the loop (switching
    optimizers at a milestone is deliberate).

    ## Why is this bad?
    An optimizer carries state across steps: momentum buffers, Adam's first and second
    moments and step counts, and the learning rate a scheduler adjusts. Rebuilding it every
    epoch throws all of that away, so Adam restarts its bias-corrected warm-up each epoch,
    momentum never builds up, and a scheduler attached to the old optimizer schedules
    nothing.

    ## Example
    ```python
    for epoch in range(epochs):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    ```

    ## Use instead
    ```python
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
    ```
    """

    code = "TL110"
    name = "optimizer-recreated-in-loop"
    severity = Severity.WARNING
    frameworks = ("torch", "tf")
    triggers = ("optim",)
    block_triggers = (*triggers, TRAIN_LOOP)
    summary = "An optimizer is rebuilt on every iteration of the loop that trains with it."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for creation in model.creations.optimizers:
            if creation.target is None or creation.conditional:
                continue
            if creation.loops:
                violation = _in_loop(model, creation, creation.loops[0])
            else:
                violation = _per_call(model, creation)
            if violation is not None:
                yield violation


def _steps(model: TrainingModel, events, target: str) -> list:
    return [e for e in events if e.kind is EventKind.STEP and e.subject == target]


def _owners(model: TrainingModel, creation: OptimizerCreation, steps) -> list[str]:
    owners = list(creation.owners)
    for step in steps:
        owners += model.creations.stepped_owners(step.node)
    return owners


def _in_loop(model: TrainingModel, creation: OptimizerCreation, loop: LoopInfo) -> Violation | None:
    steps = _steps(model, model.iteration(loop), creation.target or "")
    owners = _owners(model, creation, steps)
    if not steps or not owners:
        return None
    creations = model.creations
    fresh = [*owners, creation.given] if creation.given else owners
    if any(creations.made_in_loop(name, creation.scope, loop) for name in fresh):
        return None  # a fresh model, or per-task weights made in the loop
    return Violation(
        creation.call,
        f"`{creation.target}` is rebuilt on every iteration of the loop at line "
        f"{model.line_of(loop.node)}, which trains `{owners[0]}` built outside it: the "
        "optimizer's momentum/Adam moments (and any scheduler's learning rate) restart each time",
        _FIX,
    )


def _per_call(model: TrainingModel, creation: OptimizerCreation) -> Violation | None:
    """``def train_epoch(model, ...)`` builds its own optimizer; a loop calls it per epoch."""
    scope = creation.scope
    if scope.is_module:
        return None
    steps = _steps(model, model.function_events(scope), creation.target or "")
    params = [o for o in _owners(model, creation, steps) if o in scope.params]
    if not steps or not params:
        return None
    for site in model.calls:
        if model.callee(site.node, site.scope) is not scope:
            continue
        loops = model.creations.loops_around(site.node)
        if not loops or model.creations.conditional(site.node, loops[0]):
            continue
        passed = _passed(site.node, scope, params[0])
        if passed is None or model.creations.made_in_loop(passed, site.scope, loops[0]):
            continue
        return Violation(
            creation.call,
            f"`{creation.target}` is rebuilt on every call of `{scope.short_name}`, which the "
            f"loop at line {model.line_of(loops[0].node)} runs again and again for "
            f"`{passed}`: the optimizer's state restarts each time",
            Fix(f"build the optimizer once, outside the loop, and pass it to `{scope.short_name}`"),
        )
    return None


def _passed(call: cst.Call, callee: Scope, param: str) -> str | None:
    return dotted(argument_for(call, callee, param))
