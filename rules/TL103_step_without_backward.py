from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, TrainingModel
from trainlint.model.loops.gradients import backward_reaches_loop, local_anchor, torch_steps
from trainlint.model.syntax.nodes import descendants, dotted
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP


class StepWithoutBackward(Rule):
    """A loop steps an optimizer but nothing in it computes gradients.

    ## What it does
    Flags `optimizer.step()` (or `scaler.step(optimizer)`) in a loop that computes a loss
    or runs a model, when no `backward()`, `torch.autograd.grad` or `param.grad = ...`
    assignment is reachable from the loop: not in its body, not in the same-file helpers it
    calls, not earlier in the function around it, not in the callers of that function.

    Closure steps (`optimizer.step(closure)`, as LBFGS needs), gradients set by hand or by
    hooks, and helper loops that only step a list of optimizers after a backward elsewhere
    are left alone. TensorFlow's `apply_gradients(grads_and_vars)` takes its gradients as
    arguments and is not checked.

    ## Why is this bad?
    `step()` applies whatever is in `param.grad`. With no backward, that is `None` (the
    step silently does nothing) or the stale gradient of some earlier batch, applied again
    and again. The loss is computed and logged, so the loop looks like training while the
    model does not learn from the data it sees.

    ## Example
    ```python
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        optimizer.step()
    ```

    ## Use instead
    ```python
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
    ```
    """

    code = "TL103"
    name = "step-without-backward"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("step",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "optimizer.step() runs in a loop where no backward() computes gradients."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for loop in model.loops:
            if model.is_framework_managed(loop.scope):
                continue
            events = model.iteration(loop)
            own_steps = [s for s in torch_steps(events) if not s.loops and not s.closure]
            if not own_steps or backward_reaches_loop(model, loop):
                continue
            for step in own_steps:
                anchor = local_anchor(step)
                if id(anchor) in reported:
                    continue
                reported.add(id(anchor))
                yield self._violation(model, step, anchor, loop.node)

    def _violation(
        self, model: TrainingModel, step: Event, anchor: cst.CSTNode, loop_node: cst.CSTNode
    ) -> Violation:
        step_text = model.module.code_for_node(step.node)
        optimizer = step.subject or "optimizer"
        message = (
            f"`{step_text}` runs in the loop at line {model.line_of(loop_node)} but nothing "
            "computes gradients for it: no backward(), autograd.grad or .grad assignment is "
            f"reachable, so `{optimizer}` applies no gradients or stale ones"
        )
        loss = _loss_name(loop_node) or "loss"
        backward = (
            f"{step.scaled_by}.scale({loss}).backward()" if step.scaled_by else f"{loss}.backward()"
        )
        fix = Fix("call backward() on the loss before the step", f"{backward}; {step_text}")
        return Violation(anchor, message, fix)


def _loss_name(loop_node: cst.CSTNode) -> str | None:
    """The name the loop binds its loss to (``loss`` in ``logits, loss = model(x, y)``)."""
    for node in descendants(loop_node):
        if not isinstance(node, cst.Assign):
            continue
        for target in node.targets:
            elements = (
                [e.value for e in target.target.elements]
                if isinstance(target.target, (cst.Tuple, cst.List))
                else [target.target]
            )
            for element in elements:
                name = dotted(element)
                if name and "loss" in name.lower():
                    return name
    return None
