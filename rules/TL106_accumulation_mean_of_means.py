from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel, TrainStep, WindowKind
from trainlint.model.dataflow.flows import LossSource
from trainlint.model.dataflow.lossflow import Reduction, backward_flow
from trainlint.model.dataflow.scaling import backward_scaling, divides_by_window
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP


class AccumulationMeanOfMeans(Rule):
    """A token-level mean loss is averaged again over the micro-steps of an accumulation window.

    ## What it does
    Flags, inside a gradient-accumulation window, a mean-reduced token-level loss whose
    denominator changes from one micro-batch to the next (cross-entropy with `ignore_index`,
    or a masked mean such as `(losses * mask).sum() / mask.sum()`) when the window then
    divides it by the number of micro-steps: by hand (`loss / accum_steps`) or through
    `accelerator.backward` inside `accelerator.accumulate()`.

    A model's own `outputs.loss` is not flagged: whether its labels hold ignored (padding)
    tokens depends on the data pipeline, often packed to equal lengths. Pass
    `num_items_in_batch` and transformers normalizes over the window itself.

    ## Why is this bad?
    Each micro-batch's mean is taken over its own number of real tokens, then the means are
    averaged: a micro-batch with 10 real tokens weighs as much as one with 1,000. The result
    differs from training on the whole window as one batch, and more so the more padding
    varies. This is the gradient-accumulation bug fixed in Hugging Face transformers in 2024.

    ## Example
    ```python
    for i, batch in enumerate(loader):
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        (loss / accum_steps).backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()
    ```

    ## Use instead
    ```python
    window = []
    for batch in loader:
        window.append(batch)
        if len(window) < accum_steps:
            continue
        tokens_in_window = sum((b["labels"] != -100).sum() for b in window)
        for micro in window:
            logits = model(micro["input_ids"])
            loss = F.cross_entropy(
                logits.flatten(0, 1), micro["labels"].flatten(),
                ignore_index=-100, reduction="sum",
            )
            (loss / tokens_in_window).backward()
        optimizer.step()
        optimizer.zero_grad()
        window = []
    ```
    """

    code = "TL106"
    name = "accumulation-mean-of-means"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("backward",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "A token-level mean loss is averaged again over the micro-steps of a window."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for train in model.train_steps:
            accumulation = train.accumulation
            if accumulation is None:
                continue
            if accumulation.kind is WindowKind.INNER_LOOP and accumulation.whole_epoch:
                continue
            for event in accumulation.micro_backwards:
                scaling = backward_scaling(model, event)
                flow = backward_flow(model, event, train.loop.scope)
                if flow.reduction is not Reduction.MEAN:
                    continue
                division = divides_by_window(flow, accumulation.steps)
                if division is None and scaling.divides is not True:
                    continue
                if accumulation.kind is WindowKind.ACCELERATE and scaling.divides is not True:
                    continue
                for source in flow.sources:
                    token_mean = source.token_level and source.reduction is Reduction.MEAN
                    if token_mean and id(source.node) not in reported:
                        reported.add(id(source.node))
                        yield _violation(model, train, source, _by(model, division, scaling))


def _by(model: TrainingModel, division, scaling) -> str:  # type: ignore[no-untyped-def]
    """How the window averages, for the message (only then: a line number costs positions)."""
    if division is not None:
        return (
            f"divided by `{model.text_of(division.divisor)}` at line {model.line_of(division.node)}"
        )
    return f"averaged by `{scaling.receiver or 'accelerator'}.backward()`"


def _violation(model: TrainingModel, train: TrainStep, source: LossSource, by: str) -> Violation:
    why = (
        "averages over the tokens that are not `ignore_index`"
        if source.token_level == "ignore_index"
        else "averages over the tokens its mask keeps"
    )
    message = (
        f"`{source.label}` {why} in each micro-batch, and the window's micro-steps are then "
        f"{by}: a micro-batch with few real tokens weighs as much as a full one, so the "
        "update differs from one batch of the whole window"
    )
    fix = Fix(
        'sum over tokens (reduction="sum") and divide by the real tokens of the whole window',
        'loss = F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") '
        "/ tokens_in_window",
    )
    return Violation(source.node, message, fix)
