from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, EventKind, TrainingModel, TrainStep
from trainlint.model.loops.event_plumbing import exclusive, loop_name, same_object
from trainlint.model.loops.scalers import scaled_for, scaler_is_live, scaler_name
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP


class AmpScalerMisuse(Rule):
    """A `GradScaler` used half-way: the scaled gradients reach the optimizer untreated.

    ## What it does
    In a loop that back-propagates through `scaler.scale(loss).backward()`, flags

    * `optimizer.step()` called directly instead of `scaler.step(optimizer)`;
    * `scaler.step(optimizer)` with no `scaler.update()` in the loop;
    * `scaler.update()` before `scaler.step(optimizer)` in one iteration (a warning).

    Stays silent on apex `amp.scale_loss` contexts, timm-style scaler wrappers
    (`loss_scaler(loss, optimizer)`), and scalers built with `enabled=False`.

    ## Why is this bad?
    `scaler.scale(loss)` multiplies the loss, and so every gradient, by the loss scale
    (65536 at start). `scaler.step` divides it back out and skips steps whose gradients
    overflowed; a direct `optimizer.step()` applies gradients thousands of times too large,
    infs and NaNs included. Without `update()` the scale never adapts: after one overflow every
    later step is skipped, or the scale stays too small for fp16. Calling `update()` before
    `step()` adjusts the scale from a step that has not happened yet.

    ## Example
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    ```
    """

    code = "TL108"
    name = "amp-scaler-misuse"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("scaler", "Scaler", ".scale(")
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "A GradScaler-scaled backward whose step bypasses or never updates the scaler."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        seen: set[int] = set()
        for step in model.train_steps:
            for violation in self._check_step(model, step):
                if id(violation.node) not in seen:
                    seen.add(id(violation.node))
                    yield violation

    def _check_step(self, model: TrainingModel, step: TrainStep) -> Iterator[Violation]:
        scope = step.loop.scope
        events = step.events
        for index, event in enumerate(events):
            if event.kind is not EventKind.STEP or event.closure or event.scaled_by:
                continue
            backward = _feeding_backward(events, index)
            if backward is None or not scaled_for(model, backward, event):
                continue
            scaler = scaler_name(model, backward, scope) or "scaler"
            optimizer = event.subject or "optimizer"
            yield Violation(
                event.node,
                f"`{optimizer}.step()` is called directly although the loss was scaled by "
                f"`{scaler}` (line {model.line_of(backward.node)}): the gradients are still "
                "multiplied by the loss scale and overflowed steps are not skipped",
                Fix(
                    "step through the scaler",
                    f"{scaler}.step({optimizer})\n{scaler}.update()",
                ),
            )
        yield from self._updates(model, step)

    def _updates(self, model: TrainingModel, step: TrainStep) -> Iterator[Violation]:
        scope = step.loop.scope
        events = step.events
        scaled_steps = [e for e in events if e.kind is EventKind.STEP and e.scaled_by]
        updates = [e for e in events if e.kind is EventKind.SCALER_UPDATE]
        for scaled_step in scaled_steps:
            scaler = loop_name(model, scaled_step, scope, scaled_step.scaled_by)
            if not scaler_is_live(model, scaled_step):
                continue
            mine = [u for u in updates if same_object(u.subject, scaler)]
            optimizer = scaled_step.subject or "optimizer"
            if not mine:
                yield Violation(
                    scaled_step.node,
                    f"`{scaler}.step({optimizer})` is called in the loop at line "
                    f"{model.line_of(step.loop.node)}, but `{scaler}.update()` never is: "
                    "the loss scale never adapts, so after an overflow every step is skipped",
                    Fix("update the scale after stepping", f"{scaler}.update()"),
                )
                continue
            first_step = min(
                (
                    e
                    for e in scaled_steps
                    if same_object(loop_name(model, e, scope, e.scaled_by), scaler)
                ),
                key=events.index,
            )
            if scaled_step is not first_step:
                continue
            for update in mine:
                if events.index(update) < events.index(first_step) and not exclusive(
                    update, first_step
                ):
                    yield Violation(
                        update.node,
                        f"`{scaler}.update()` runs before `{scaler}.step({optimizer})` (line "
                        f"{model.line_of(first_step.node)}) in the same iteration: the scale is "
                        "adjusted before the step it should learn from",
                        Fix(
                            "call update() once, after every scaler.step() of the iteration",
                            f"{scaler}.step({optimizer})\n{scaler}.update()",
                        ),
                        severity=Severity.WARNING,
                    )
                    break


def _feeding_backward(events: list[Event], index: int) -> Event | None:
    """The backward whose gradients the step at ``index`` applies: the nearest one before it,
    wrapping around to the end of the iteration (``step(); ...; backward()`` loops)."""
    step, size = events[index], len(events)
    for offset in range(1, size):
        event = events[(index - offset) % size]
        if event.kind is EventKind.BACKWARD and not exclusive(event, step):
            return event
    return None
