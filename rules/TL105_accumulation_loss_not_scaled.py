from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, TrainingModel, TrainStep, WindowKind
from trainlint.model.dataflow.flows import Division, Flow
from trainlint.model.dataflow.lossflow import Reduction, backward_flow
from trainlint.model.dataflow.scaling import (
    BackwardScaling,
    backward_scaling,
    divided_on_some_path,
    divides_by_accumulation,
    divides_by_running_counter,
    divides_by_window,
    presumed_mean,
)
from trainlint.model.loops.training import scales_gradients
from trainlint.model.syntax.nodes import method_call
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP

_WINDOWS = (WindowKind.MODULO, WindowKind.COUNTER, WindowKind.INNER_LOOP)


class AccumulationLossNotScaled(Rule):
    """A mean-reduced loss is accumulated over k micro-steps without dividing it by k.

    ## What it does
    Flags the backward call of a gradient-accumulation loop (a step guarded by
    `(i + 1) % k == 0` or a counter, or an inner micro-step loop) when the value it
    differentiates is never divided by the number of accumulation steps (followed along its
    definition chain, through same-file helpers) while the loss is mean-reduced: a
    default-reduction criterion, `F.cross_entropy` and friends, `outputs.loss`, `.mean()`.

    The divisor must be the window length (`accum_steps`, `args.gradient_accumulation_steps`,
    a constant, `len(micro_batches)`). Dividing by a running micro-step counter instead
    (`loss / (i + 1)`, `loss / step` where `step` counts 1, 2, 3, ...) is flagged too, with
    its own message: the micro-batches get unequal weights.

    When the loss is never divided and trainlint cannot tell how it is reduced (a function it
    cannot see, `outputs[0]` of a model it cannot see), the finding is a warning rather than
    an error: most losses are means, but a sum-reduced one would be right as it is.

    It also flags the opposite mistake with Accelerate: `accelerator.backward(loss)` already
    divides by `gradient_accumulation_steps` when the `Accelerator` is configured with it (or
    inside `accelerator.accumulate()`), so dividing the loss by the accumulation steps as well
    shrinks the gradients k times.

    Sum-reduced losses (normalized by an item count over the window, or not), DeepSpeed
    engines (which divide themselves) and whole-epoch accumulation over a data loader are left
    alone. A function whose only loop is the micro-step loop, with the step after it, is a
    window too (one per call).

    ## Why is this bad?
    Gradients add up over the window. With a mean loss per micro-batch, k micro-steps give
    k times the gradient of one batch of k times the size: the effective learning rate is
    k times too high (and gradient clipping thresholds mean something else). Nothing raises
    an error; training is just less stable or diverges when k changes.

    ## Example
    ```python
    for i, (inputs, targets) in enumerate(loader):
        loss = criterion(model(inputs), targets)
        loss.backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```

    ## Use instead
    ```python
    for i, (inputs, targets) in enumerate(loader):
        loss = criterion(model(inputs), targets)
        (loss / accum_steps).backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```
    """

    code = "TL105"
    name = "accumulation-loss-not-scaled"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("backward",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = (
        "A mean-reduced loss is accumulated over k micro-steps but never divided by k "
        "(or divided by a running micro-step counter)."
    )

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for train in model.window_steps:
            for event in train.backwards:
                if id(event.node) in reported:
                    continue
                violation = self._check_backward(model, train, event)
                if violation is not None:
                    reported.add(id(event.node))
                    yield violation

    def _check_backward(
        self, model: TrainingModel, train: TrainStep, event: Event
    ) -> Violation | None:
        scaling = backward_scaling(model, event)
        if scaling.divides is True:
            return _double_scaling(model, train, event, scaling)
        accumulation = train.accumulation
        if scaling.divides is None or accumulation is None or accumulation.kind not in _WINDOWS:
            return None
        if not any(e is event for e in accumulation.micro_backwards):
            return None
        if accumulation.kind is WindowKind.INNER_LOOP and (
            accumulation.whole_epoch or not accumulation.micro_batched
        ):
            return None  # a whole epoch as one batch, or several losses of one batch
        flow = backward_flow(model, event, train.loop.scope)
        counters = train.micro_step_counters()
        running = divides_by_running_counter(flow, counters)
        if running is not None and flow.reduction is not Reduction.CONSTANT:
            return _running_divisor(model, train, event, running)
        if flow.reduction not in (Reduction.MEAN, Reduction.UNKNOWN):
            return None  # sum-reduced (normalized by items or not), or per-element values
        if divides_by_window(flow, accumulation.steps, counters) is not None:
            return None
        if scales_gradients(model, train):
            return None  # ``p.grad /= k`` before the step averages the window instead
        if flow.reduction is Reduction.UNKNOWN or presumed_mean(flow):
            if flow.divisions or divided_on_some_path(model, event):
                return None  # divided by something: without the reduction, cannot judge it
            return _unknown_reduction(model, train, event, flow)
        return _not_scaled(model, train, event, flow)


def _operand(model: TrainingModel, event: Event) -> str:
    return model.text_of(event.operand) or "loss"


def _steps_text(model: TrainingModel, train: TrainStep) -> str:
    accumulation = train.accumulation
    if accumulation is not None and accumulation.steps is not None:
        return model.text_of(accumulation.steps)
    return "accumulation_steps"


def _scaled_call(model: TrainingModel, event: Event, divided: str) -> str:
    """The backward call with its operand replaced by ``divided``."""
    call = event.node
    operand = event.operand
    found = method_call(call)
    if operand is None or not isinstance(call, cst.Call) or found is None:
        return f"({divided}).backward()"
    receiver, _ = found
    if receiver is operand:
        wrapped = _parse(f"({divided})")
        return model.text_of(call.with_changes(func=call.func.with_changes(value=wrapped)))
    new_args = [
        arg.with_changes(value=_parse(divided)) if arg.value is operand else arg
        for arg in call.args
    ]
    if isinstance(receiver, cst.Call):  # scaler.scale(loss).backward()
        inner = receiver.with_changes(
            args=[
                a.with_changes(value=_parse(divided)) if a.value is operand else a
                for a in receiver.args
            ]
        )
        return model.text_of(call.with_changes(func=call.func.with_changes(value=inner)))
    return model.text_of(call.with_changes(args=new_args))


def _parse(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


def _window(model: TrainingModel, train: TrainStep) -> str:
    """How the window runs, for messages: "on every micro-step and `opt` steps only when ..."."""
    accumulation = train.accumulation
    assert accumulation is not None
    optimizers = ", ".join(f"`{o}`" for o in accumulation.optimizers) or "the optimizer"
    if accumulation.kind is WindowKind.INNER_LOOP:
        inner = accumulation.inner_loop
        window = (
            f"in the micro-step loop (line {model.line_of(inner.node) if inner else 0}) and "
            f"{optimizers} steps once after it"
        )
    else:
        guard = model.text_of(accumulation.guard.test) if accumulation.guard else "a counter"
        window = f"on every micro-step and {optimizers} steps only when `{guard}`"
    return window


def _not_scaled(model: TrainingModel, train: TrainStep, event: Event, flow: Flow) -> Violation:
    operand = _operand(model, event)
    steps = _steps_text(model, train)
    window = _window(model, train)
    source = f"`{flow.sources[0].label}`" if flow.sources else "its mean"
    message = (
        f"`{operand}` is back-propagated {window}, but it is never divided by `{steps}`: "
        f"{source} averages each micro-batch, so the accumulated gradient is {steps} times "
        "the gradient of the whole window"
    )
    divided = f"{_wrap(operand)} / {steps}"
    return Violation(
        event.node,
        message,
        Fix(
            "divide the loss by the number of accumulation steps",
            _scaled_call(model, event, divided),
        ),
    )


def _running_divisor(
    model: TrainingModel, train: TrainStep, event: Event, division: Division
) -> Violation:
    operand = _operand(model, event)
    steps = _steps_text(model, train)
    divisor = model.text_of(division.divisor)
    message = (
        f"`{operand}` is divided by `{divisor}` at line {model.line_of(division.node)}, a "
        f"running micro-step counter, not the window length `{steps}`: the micro-batches get "
        f"unequal weights (1, 1/2, 1/3, ...) and the accumulated gradient is "
        "not the gradient of the whole window"
    )
    return Violation(
        event.node,
        message,
        Fix(f"divide by the window length `{steps}` instead of `{divisor}`", f"loss / {steps}"),
    )


def _unknown_reduction(
    model: TrainingModel, train: TrainStep, event: Event, flow: Flow
) -> Violation:
    operand = _operand(model, event)
    steps = _steps_text(model, train)
    source = flow.sources[0].label if flow.sources else _producer(model, event)
    message = (
        f"`{operand}` is back-propagated {_window(model, train)}, and it is never divided by "
        f"`{steps}`; trainlint cannot tell how `{source}` is reduced: if it is a mean (as most "
        f"losses are), the accumulated gradient is {steps} times the gradient of the whole "
        "window"
    )
    divided = f"{_wrap(operand)} / {steps}"
    return Violation(
        event.node,
        message,
        Fix(
            "divide a mean-reduced loss by the number of accumulation steps",
            _scaled_call(model, event, divided),
        ),
        severity=Severity.WARNING,
    )


def _producer(model: TrainingModel, event: Event) -> str:
    """The call that made an unresolved backward operand (``compute_loss(model, batch)``)."""
    operand = event.operand
    name = model.text_of(operand)
    for _ in range(3):  # ``loss = out[0]`` after ``out = model(x)``: a few hops at most
        if not isinstance(operand, (cst.Name, cst.Attribute)):
            break
        bindings = [b for b in model.lookup(name, event.scope) if b.augmented is None]
        if not bindings or bindings[0].value is None or bindings[0].from_iteration:
            break
        operand = bindings[0].value
        name = model.text_of(operand)
    return name or "the loss"


def _double_scaling(
    model: TrainingModel, train: TrainStep, event: Event, scaling: BackwardScaling
) -> Violation | None:
    flow = backward_flow(model, event, train.loop.scope)
    division = divides_by_accumulation(flow, scaling.configured)
    if division is None:
        return None
    receiver = scaling.receiver or "accelerator"
    where = "`accumulate()`"
    if scaling.constructor is not None:
        line = model.line_of(scaling.constructor)
        where = f"`Accelerator(gradient_accumulation_steps=...)` at line {line}"
    divisor = model.text_of(division.divisor)
    message = (
        f"`{receiver}.backward()` already divides the loss by the accumulation steps ({where}), "
        f"and `{_operand(model, event)}` is divided by `{divisor}` again at line "
        f"{model.line_of(division.node)}: the gradients come out {divisor} times too small"
    )
    return Violation(
        event.node,
        message,
        Fix("drop the manual division and let Accelerate scale", f"{receiver}.backward(loss)"),
    )


def _wrap(text: str) -> str:
    return text if text.isidentifier() or text.replace(".", "").isidentifier() else f"({text})"
