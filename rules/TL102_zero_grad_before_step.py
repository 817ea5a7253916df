from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.edits import move_after, statement_of
from trainlint.model import Event, EventKind, TrainingModel, TrainStep
from trainlint.model.loops.gradients import clears, local_anchor, runs_whenever, torch_steps
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP

_CLEARS_ALL = (EventKind.ZERO_GRAD, EventKind.MODEL_ZERO_GRAD)


class ZeroGradBeforeStep(Rule):
    """Gradients are cleared between `backward()` and `step()`: the step applies zeros.

    ## What it does
    Flags `optimizer.zero_grad()` (or `model.zero_grad()` of the model the optimizer
    trains) that runs after the last `backward()` of an iteration and before that
    optimizer's `step()`, on every path where the step runs.

    Clearing before `backward()` or after `step()` is fine and not reported; so is a
    `zero_grad()` in a branch that skips the step (`continue` on a NaN loss), and clearing a
    submodule or a few parameters (a deliberate freeze). In a gradient-accumulation loop, a
    `zero_grad()` outside the accumulation guard is TL104's finding, not this one.

    ## Why is this bad?
    `zero_grad()` throws away the gradients `backward()` just computed, so `step()` sees
    zeros (or `None`): plain SGD does nothing, and momentum/Adam keep moving the weights on
    stale statistics. The loss stays flat while the code runs without an error.

    ## Example
    ```python
    for inputs, targets in loader:
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.zero_grad()
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

    code = "TL102"
    name = "zero-grad-before-step"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("zero_grad",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "zero_grad() runs between backward() and step(), so the step applies zeros."
    fix_availability = "sometimes"
    # Unsafe: code between the two calls that reads the gradients (logging grad norms) sees
    # them cleared before, and real ones after.
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for train in model.train_steps:
            for step in torch_steps(train.events):
                if step.subject is None or step.closure:
                    continue
                for clearing, backward in self._clearings_before(model, train, step):
                    anchor = local_anchor(clearing, step, backward)
                    if id(anchor) in reported:
                        continue
                    reported.add(id(anchor))
                    yield self._violation(model, step, clearing, backward, anchor)

    def _clearings_before(
        self, model: TrainingModel, train: TrainStep, step: Event
    ) -> Iterator[tuple[Event, Event]]:
        events = train.events
        position = events.index(step)
        last_backward = None
        for index in range(position - 1, -1, -1):
            if events[index].kind is EventKind.BACKWARD:
                last_backward = index
                break
        if last_backward is None:
            return
        backward = events[last_backward]
        for event in events[last_backward + 1 : position]:
            if event.kind not in _CLEARS_ALL or not runs_whenever(event, step):
                continue
            if _every_micro_step(train, step, event):
                continue  # TL104 reports zero_grad on every micro-step of a window
            if clears(model, event, step.subject or "", train.loop.scope) is True:
                yield event, backward

    def _violation(
        self, model: TrainingModel, step: Event, clearing: Event, backward: Event, anchor
    ) -> Violation:
        optimizer = step.subject or "optimizer"
        clearing_text = model.module.code_for_node(clearing.node)
        step_text = model.module.code_for_node(step.node)
        backward_text = model.module.code_for_node(backward.node)
        message = (
            f"`{clearing_text}` runs after the last backward() (line "
            f"{model.line_of(backward.node)}) and before `{step_text}` (line "
            f"{model.line_of(step.node)}): the gradients of `{optimizer}` are thrown away, so "
            "the step applies zeros and the model does not learn"
        )
        description = (
            "clear the gradients after step() (or before backward(), outside accumulation)"
        )
        replacement = f"{backward_text}; {step_text}; {clearing_text}"
        moved, after = statement_of(model, clearing.node), statement_of(model, step.node)
        edits = move_after(model, moved, after) if moved and after else None
        if edits is None:
            return Violation(anchor, message, Fix(description, replacement))
        fix = Fix(description, replacement, edits, Applicability.UNSAFE)
        return Violation(anchor, message, fix)


def _every_micro_step(train: TrainStep, step: Event, clearing: Event) -> bool:
    """``clearing`` runs on each micro-step of the accumulation window ``step`` closes."""
    window = train.accumulation
    if window is None or (window.optimizers and step.subject not in window.optimizers):
        return False
    if window.guard is not None:
        return not any(c.test is window.guard.test for c in clearing.conditions)
    if window.inner_loop is not None:
        return any(loop is window.inner_loop for loop in clearing.loops)
    return False
