from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, EventKind, TrainingModel, TrainStep, WindowKind
from trainlint.model.loops.events import CLEARING
from trainlint.model.loops.gradients import clears
from trainlint.model.loops.training import Accumulation, epoch_start, is_window_condition
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP


class AccumulationZeroGradEveryStep(Rule):
    """Gradients are cleared on every micro-step of a gradient-accumulation loop.

    ## What it does
    Flags a gradient-accumulation loop (the optimizer steps only every k micro-steps: under
    `if (i + 1) % k == 0`, a counter, a flag such as `need_update`, or after an inner
    micro-step loop) where `zero_grad()` runs on every micro-step: outside the guard, or
    inside the inner loop.

    As a warning, it also flags `zero_grad()` at the start of each epoch when the guard's
    counter runs across epochs (`global_step % k`) and nothing steps the last, partial
    window: those micro-batches' gradients are thrown away at the next epoch. When the
    epoch-start call is the only clearing the optimizer gets, every step applies all of the
    epoch's earlier windows too, and that is reported as an error.

    `accelerator.accumulate()` blocks are left alone: Accelerate skips the step and the
    clearing between window boundaries itself, so `zero_grad()` on every iteration is right.

    ## Why is this bad?
    `backward()` adds into `.grad`; clearing it before the window is complete wipes the
    micro-batches accumulated so far. The step then applies the gradient of the last
    micro-batch alone (divided by k, if the loss is scaled): the effective batch is k times
    smaller than intended and the learning rate k times too small. Nothing raises an error.

    ## Example
    ```python
    for i, (inputs, targets) in enumerate(loader):
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets) / accum_steps
        loss.backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
    ```

    ## Use instead
    ```python
    for i, (inputs, targets) in enumerate(loader):
        loss = criterion(model(inputs), targets) / accum_steps
        loss.backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```
    """

    code = "TL104"
    name = "accumulation-zero-grad-every-step"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("zero_grad", ".grad")
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "zero_grad() runs on every micro-step of a gradient-accumulation loop."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for train in model.window_steps:
            accumulation = train.accumulation
            if accumulation is None or accumulation.kind is WindowKind.ACCELERATE:
                continue
            if any(e.kind is EventKind.ENGINE_STEP for e in train.events):
                continue  # DeepSpeed clears at its own window boundaries
            for violation in self._check_window(model, train, accumulation):
                if id(violation.node) not in reported:
                    reported.add(id(violation.node))
                    yield violation

    def _check_window(
        self, model: TrainingModel, train: TrainStep, accumulation: Accumulation
    ) -> Iterator[Violation]:
        window_clears = [e for e in train.events if _clears_window(model, train, e)]
        for event in window_clears:
            if not _clears_window(model, train, event, proven=True):
                continue
            if accumulation.kind is WindowKind.INNER_LOOP:
                if any(lp is accumulation.inner_loop for lp in event.loops):
                    yield _inner_loop_violation(model, train, accumulation, event)
            elif not any(
                is_window_condition(model, c, event.scope, train.events) for c in event.conditions
            ):
                yield _every_step_violation(model, train, accumulation, event)
        start = epoch_start(model, train)
        if start is None:
            return
        epoch_clears = [e for e in start.clears if _clears_window(model, train, e, proven=True)]
        if not epoch_clears:
            return
        if not window_clears:
            yield _only_epoch_violation(model, train, accumulation, epoch_clears[0])
        elif start.counter_runs_across and not start.flushed:
            yield _partial_window_violation(model, train, accumulation, epoch_clears[0])


def _clears_window(
    model: TrainingModel, train: TrainStep, event: Event, *, proven: bool = False
) -> bool:
    """Whether ``event`` clears (or may clear) an optimizer stepped once per window.

    ``p.grad = None`` over some parameters counts as clearing the window only when it is not
    the one being blamed (``proven``): which parameters it clears is rarely clear, and
    frozen ones are cleared on every step on purpose."""
    if event.kind not in CLEARING:
        return False
    if proven and event.kind is EventKind.GRAD_CLEAR:
        return False
    optimizers = train.accumulation.optimizers if train.accumulation else ()
    if not optimizers:
        return True
    return any(clears(model, event, name, train.loop.scope) is not False for name in optimizers)


def _step(train: TrainStep, accumulation: Accumulation) -> Event | None:
    wanted = set(accumulation.optimizers)
    return next((e for e in train.steps if not wanted or e.subject in wanted), None)


def _window(model: TrainingModel, train: TrainStep, accumulation: Accumulation) -> str:
    step = _step(train, accumulation)
    where = f" (line {model.line_of(step.node)})" if step is not None else ""
    if accumulation.guard is not None:
        return f"only when `{model.text_of(accumulation.guard.test)}`{where}"
    return f"once per window{where}"


def _every_step_violation(
    model: TrainingModel, train: TrainStep, accumulation: Accumulation, event: Event
) -> Violation:
    call = model.text_of(event.node)
    optimizer = ", ".join(f"`{o}`" for o in accumulation.optimizers) or "the optimizer"
    step = _step(train, accumulation)
    step_text = model.text_of(step.node) if step is not None else "optimizer.step()"
    guard = model.text_of(accumulation.guard.test) if accumulation.guard else "boundary"
    message = (
        f"`{call}` runs on every micro-step, but {optimizer} is stepped "
        f"{_window(model, train, accumulation)}: each micro-step wipes the gradients "
        "accumulated so far, so the step sees only the last micro-batch"
    )
    fix = Fix(
        "zero the gradients inside the guard, right after the step",
        f"if {guard}: {step_text}; {call}",
    )
    return Violation(event.node, message, fix)


def _inner_loop_violation(
    model: TrainingModel, train: TrainStep, accumulation: Accumulation, event: Event
) -> Violation:
    call = model.text_of(event.node)
    inner = accumulation.inner_loop
    inner_line = model.line_of(inner.node) if inner is not None else 0
    step = _step(train, accumulation)
    step_text = model.text_of(step.node) if step is not None else "optimizer.step()"
    if accumulation.whole_epoch:
        message = (
            f"`{call}` runs inside the batch loop (line {inner_line}) while `{step_text}` runs "
            f"once after it, at the end of the epoch{_line_suffix(model, step)}: only the last "
            "batch's gradients reach the step"
        )
        fix = Fix(
            "step inside the batch loop (or clear once, before it)",
            f"{call}; loss.backward(); {step_text}",
        )
        return Violation(event.node, message, fix)
    message = (
        f"`{call}` runs inside the micro-step loop (line {inner_line}) while `{step_text}` "
        f"runs once after it{_line_suffix(model, step)}: every micro-batch wipes the previous "
        "ones' gradients, so the step sees only the last micro-batch"
    )
    fix = Fix(
        "clear once per window, before the micro-step loop",
        f"{call}; for ...: loss.backward(); {step_text}",
    )
    return Violation(event.node, message, fix)


def _only_epoch_violation(
    model: TrainingModel, train: TrainStep, accumulation: Accumulation, event: Event
) -> Violation:
    call = model.text_of(event.node)
    step = _step(train, accumulation)
    step_text = model.text_of(step.node) if step is not None else "optimizer.step()"
    guard = model.text_of(accumulation.guard.test) if accumulation.guard else "boundary"
    optimizer = ", ".join(f"`{o}`" for o in accumulation.optimizers) or "the optimizer"
    message = (
        f"`{call}` is the only clearing, at the start of each epoch, but {optimizer} is "
        f"stepped {_window(model, train, accumulation)}: every step applies the gradients "
        "of all earlier windows of the epoch again"
    )
    fix = Fix("clear inside the guard, right after the step", f"if {guard}: {step_text}; {call}")
    return Violation(event.node, message, fix)


def _partial_window_violation(
    model: TrainingModel, train: TrainStep, accumulation: Accumulation, event: Event
) -> Violation:
    call = model.text_of(event.node)
    counter = accumulation.counter or "the counter"
    guard = model.text_of(accumulation.guard.test) if accumulation.guard else "boundary"
    message = (
        f"`{call}` at the start of each epoch throws away the last, partial window: the step "
        f"waits for `{guard}` (line {_guard_line(model, train, accumulation)}), "
        f"and `{counter}` runs across epochs, so the micro-batches left at the end of an "
        "epoch are back-propagated but never stepped"
    )
    step = _step(train, accumulation)
    step_text = model.text_of(step.node) if step is not None else "optimizer.step()"
    fix = Fix(
        "also step the last, partial window of each epoch (or drop this zero_grad)",
        f"if {guard} or is_last_batch: {step_text}; {call}",
    )
    return Violation(event.node, message, fix, severity=Severity.WARNING)


def _guard_line(model: TrainingModel, train: TrainStep, accumulation: Accumulation) -> int:
    step = _step(train, accumulation)
    return model.line_of(step.node) if step is not None else 0


def _line_suffix(model: TrainingModel, event: Event | None) -> str:
    return f" (line {model.line_of(event.node)})" if event is not None else ""
