from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, EventKind, TrainingModel, TrainStep, WindowKind
from trainlint.model.loops.event_plumbing import exclusive, loop_name, same_object
from trainlint.model.loops.scalers import scaled_for, scaler_name
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP

_CYCLE = (EventKind.BACKWARD, EventKind.STEP)


class GradClipMisplaced(Rule):
    """Gradient clipping that does not clip the gradients the optimizer applies.

    ## What it does
    Flags a `clip_grad_norm_` / `clip_grad_value_` call that runs

    * after `optimizer.step()` and before the next `backward()`, or before the `backward()`
      whose gradients it was meant to clip (the step applies unclipped gradients);
    * after `scaler.scale(loss).backward()` with no `scaler.unscale_(optimizer)` in between
      (it clips the loss-scaled gradients against an unscaled threshold);
    * in a gradient-accumulation loop, on every micro-step instead of once before the step
      (a warning: it clips partial sums, not the gradient the step applies).

    `accelerator.clip_grad_norm_` and Fabric's `clip_gradients` are left alone: they unscale
    and synchronize by themselves.

    ## Why is this bad?
    Clipping only limits the update if it touches the gradients between the last backward
    and the step. Clipping after the step changes gradients that are about to be cleared;
    clipping before backward touches last batch's (usually zeroed) gradients. Under AMP the
    gradients are multiplied by the loss scale (65536 at start), so almost every step is
    clipped to a tiny update, and inf/NaN gradients are clipped instead of skipped.

    ## Example
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = criterion(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    ```
    """

    code = "TL107"
    name = "grad-clip-misplaced"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("clip_grad",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "Gradient clipping after step(), before backward(), or before scaler.unscale_()."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        seen: set[int] = set()
        for step in model.train_steps:
            for index, event in enumerate(step.events):
                if event.kind is not EventKind.CLIP or event.managed or id(event.node) in seen:
                    continue
                found = (
                    self._outside_cycle(model, step, index)
                    or self._still_scaled(model, step, index)
                    or self._every_micro_step(model, step, index)
                )
                if found is not None:
                    seen.add(id(event.node))
                    yield found

    # ------------------------------------------------------------------ placement
    def _outside_cycle(self, model: TrainingModel, step: TrainStep, index: int) -> Violation | None:
        """The clip sits between a step and the next backward (cyclically)."""
        events, clip = step.events, step.events[index]
        size = len(events)
        before = _nearest(events, clip, (events[(index - k) % size] for k in range(1, size)))
        after = _nearest(events, clip, (events[(index + k) % size] for k in range(1, size)))
        if before is None or after is None:
            return None
        if before.kind is not EventKind.STEP or after.kind is not EventKind.BACKWARD:
            return None
        text = _call_text(model, clip)
        step_text = model.module.code_for_node(before.node)
        backward_line = model.line_of(after.node)
        if events.index(after) > index:
            message = (
                f"`{text}` runs before the backward at line {backward_line}, so it clips "
                f"the previous batch's gradients and `{step_text}` applies unclipped ones"
            )
        else:
            message = (
                f"`{text}` runs after `{step_text}` (line {model.line_of(before.node)}): the "
                "step already applied unclipped gradients, and these are about to be replaced"
            )
        return Violation(
            clip.node,
            message,
            Fix(
                "clip between backward() and step()",
                f"loss.backward()\n{_full_text(model, clip)}\n{step_text}",
            ),
        )

    def _still_scaled(self, model: TrainingModel, step: TrainStep, index: int) -> Violation | None:
        """Under a GradScaler, the clip runs before ``scaler.unscale_(optimizer)``."""
        events, clip = step.events, step.events[index]
        scope = step.loop.scope
        backward = None
        for event in reversed(events[:index]):
            if exclusive(event, clip):
                continue
            if event.kind is EventKind.UNSCALE:
                return None
            if event.kind is EventKind.BACKWARD:
                backward = event
                break
        if backward is None or not scaled_for(model, backward, clip):
            return None
        scaler = scaler_name(model, backward, scope) or "scaler"
        optimizer = self._scaled_optimizer(model, step, index, scaler) or "optimizer"
        text = _call_text(model, clip)
        return Violation(
            clip.node,
            f"`{text}` clips gradients still multiplied by `{scaler}`'s loss scale (backward "
            f"at line {model.line_of(backward.node)}): the threshold is compared with values "
            "thousands of times too large, so nearly every step is clipped",
            Fix(
                "unscale before clipping",
                f"{scaler}.unscale_({optimizer})\n{_full_text(model, clip)}\n"
                f"{scaler}.step({optimizer})\n{scaler}.update()",
            ),
        )

    @staticmethod
    def _scaled_optimizer(
        model: TrainingModel, step: TrainStep, index: int, scaler: str
    ) -> str | None:
        scope = step.loop.scope
        for event in step.events[index + 1 :] + step.events[:index]:
            stepped_by = loop_name(model, event, scope, event.scaled_by)
            if event.kind is EventKind.STEP and event.subject and same_object(stepped_by, scaler):
                return event.subject
        return None

    def _every_micro_step(
        self, model: TrainingModel, step: TrainStep, index: int
    ) -> Violation | None:
        """In an accumulation window, the clip runs on every micro-step."""
        accumulation, clip = step.accumulation, step.events[index]
        if accumulation is None:
            return None
        text = _call_text(model, clip)
        fix = Fix(
            "clip once per window, inside the guard, right before step()",
            f"if (i + 1) % accumulation_steps == 0:\n    {_full_text(model, clip)}\n"
            "    optimizer.step()",
        )
        if accumulation.kind in (WindowKind.MODULO, WindowKind.COUNTER):
            guard = accumulation.guard
            if guard is None or any(_same_test(model, c.test, guard.test) for c in clip.conditions):
                return None
            guarded = [
                e
                for e in step.steps
                if any(_same_test(model, c.test, guard.test) for c in e.conditions)
            ]
            if guarded and all(exclusive(e, clip) for e in guarded):
                return None  # ``if k > 1: <accumulate> else: <clip and step every batch>``
            guard_text = model.module.code_for_node(guard.test)
            where = f"outside the accumulation guard `if {guard_text}:`"
        elif accumulation.kind is WindowKind.INNER_LOOP and accumulation.inner_loop is not None:
            if not any(loop is accumulation.inner_loop for loop in clip.loops):
                return None
            where = (
                f"inside the micro-step loop (line {model.line_of(accumulation.inner_loop.node)})"
            )
        else:
            return None
        return Violation(
            clip.node,
            f"`{text}` runs {where}, on every micro-step: it clips partial sums of the "
            "accumulated gradients instead of the gradient the step applies",
            fix,
            severity=Severity.WARNING,
        )


def _nearest(events: list[Event], clip: Event, candidates: Iterator[Event]) -> Event | None:
    for event in candidates:
        if event.kind in _CYCLE and not event.closure and not exclusive(event, clip):
            return event
    return None


def _same_test(model: TrainingModel, first, second) -> bool:
    return first is second or model.module.code_for_node(first) == model.module.code_for_node(
        second
    )


def _full_text(model: TrainingModel, event: Event) -> str:
    return model.module.code_for_node(event.node)


def _call_text(model: TrainingModel, event: Event) -> str:
    text = model.module.code_for_node(event.node)
    return text if len(text) <= 80 else text.split("(", 1)[0] + "(...)"
