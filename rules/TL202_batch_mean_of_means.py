from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, EventKind, LoopInfo, TrainingModel
from trainlint.model.dataflow.averages import (
    Divisor,
    Finalizer,
    counters,
    divisor_kind,
    finalizers,
    meter_finalizers,
)
from trainlint.model.dataflow.batches import Batching, batching, batching_of
from trainlint.model.dataflow.lossflow import Reduction
from trainlint.model.dataflow.objects import meter_updates
from trainlint.model.loops.loop_purpose import evaluates, trains
from trainlint.model.syntax.nodes import dotted, positional
from trainlint.rule import Violation
from trainlint.slicing import ACCUMULATING_LOOP, TOTALLING_LOOP, calling

_LIST_MEANS = {
    "numpy.mean",
    "numpy.average",
    "statistics.mean",
    "statistics.fmean",
    "torch.mean",
    "tensorflow.reduce_mean",
    "tensorflow.math.reduce_mean",
}


class BatchMeanOfMeans(Rule):
    """An epoch average computed as the mean of per-batch means.

    ## What it does
    Flags an accumulator (`total += loss.item()`) or a list (`losses.append(loss.item())`)
    of mean-reduced per-batch values -- default-reduction torch losses, keras loss objects,
    `tf.reduce_mean`, `(pred == y).float().mean()` -- that is finalized after the batch loop
    by dividing by the number of batches (`len(loader)`, a counter, `i + 1`, `np.mean(list)`)
    when the last batch can be smaller than the others. Dividing such a sum by the number of
    *samples* (`len(loader.dataset)`, a counter of `x.size(0)`) is an error whatever the batch
    sizes: the result is about batch-size times too small. A same-file meter class counts
    too: `losses.update(loss.item())` on an `AverageMeter` whose `avg` divides the sum by the
    number of calls is flagged where `losses.avg` is read after the loop;
    `losses.update(loss.item(), images.size(0))` weighs by samples and is fine.

    TensorFlow: the per-batch value may be a `tf.reduce_mean`, a keras loss object or
    function under `tf.reduce_mean`, a keras `test_on_batch`/`train_on_batch` result (each
    slot), or a TF 1 fetch (`sess.run(accuracy, feed_dict=...)`, `_, c = sess.run([train_op,
    cost], ...)`, `accuracy.eval(feed_dict=...)`), over a `tf.data` dataset batched without
    `drop_remainder=True` (also one a same-file caller passes to an evaluation helper) or
    slices `range(0, len(x), batch_size)`; finalized by a counter,
    `np.mean(list)` or `tf.reduce_mean(list)`. A loop that runs a graph's training op
    (`sess.run(train_op)` with `train_op = opt.minimize(loss)`) is a train step (info). TF 1's
    `mnist.train.next_batch(batch_size)` always returns full batches: silent.

    Confidence: a warning in evaluation code (a loop that does not back-propagate and runs
    under `no_grad`, after `model.eval()`, in a function such as `validate`, or over a loader
    such as `val_loader`), where the number picks checkpoints, and when the loader is
    visibly built without `drop_last`; info for a training loss reported from a train step
    (a progress-bar number) and when the loader's construction is not visible (a parameter
    no caller in the file passes, `**kwargs` trainlint cannot read).

    Stays silent with `drop_last=True` (or `drop_remainder=True`, or data repeated before
    batching), also when set by a same-file helper (`DataLoader(ds,
    **get_dataloader_kwargs())`) or by every factory of a list or dict the loader is made
    from (`for name, make in zip(NAMES, LOADERS): make(tokenizer)`), with sizes statically
    known to divide evenly
    (`range(0, 100, 10)` over 100 rows, `TensorDataset` of 640 rows in batches of 64), with
    `reduction="sum"`, when the batch size is multiplied in before summing, and with metric
    objects (torchmetrics, `keras.metrics.Mean`), which weigh every sample themselves.

    ## Why is this bad?
    With 1,000 samples in batches of 64 the last batch holds 40 samples, yet its mean counts
    as much as any full batch: the reported loss or accuracy is not the dataset mean, and it
    shifts with the batch size. Evaluations that should agree across batch sizes or data
    orders do not, and small-batch comparisons get skewed.

    ## Example
    ```python
    total_loss = 0.0
    for inputs, targets in val_loader:
        total_loss += criterion(model(inputs), targets).item()
    val_loss = total_loss / len(val_loader)
    ```

    ## Use instead
    ```python
    total_loss = 0.0
    for inputs, targets in val_loader:
        total_loss += criterion(model(inputs), targets).item() * inputs.size(0)
    val_loss = total_loss / len(val_loader.dataset)
    ```
    """

    code = "TL202"
    name = "batch-mean-of-means"
    severity = Severity.WARNING
    frameworks = ("torch", "tf")
    # every mean-reduced per-batch value is named by one of these (losses, criteria, means)
    triggers = ("mean", "loss", "Loss", "entropy", "kl_div", "criterion")
    # its findings are in a loop's iteration (or a helper it calls)
    block_triggers = (ACCUMULATING_LOOP, TOTALLING_LOOP, calling("average", "mean", "reduce_mean"))
    summary = "An epoch average divides a sum of per-batch means by the number of batches."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        flow = model.dataflow
        for loop in model.loops:
            batches = batching(flow, loop)
            if batches is None:
                continue
            counted = counters(flow, loop)
            groups = _accumulations(model, loop)
            lists = frozenset(n for n, (is_list, _) in groups.items() if is_list)
            for name, (is_list, events) in groups.items():
                if name in counted or not events:
                    continue
                if not all(_mean_operand(model, e) for e in events):
                    continue
                for finalizer in finalizers(flow, loop, name, is_list):
                    if finalizer.divisor is None:
                        kind = Divisor.BATCHES
                    else:
                        kind = divisor_kind(
                            flow, finalizer.divisor, loop.scope, batches, counted, lists
                        )
                    if kind is Divisor.SAMPLES or (kind is Divisor.BATCHES and not batches.full):
                        yield _violation(model, loop, batches, name, events[0], finalizer, kind)
            if not batches.full:
                yield from self._meters(model, loop, batches)
        yield from self._comprehensions(model)

    def _meters(self, model: TrainingModel, loop: LoopInfo, batches: Batching):
        """``losses.update(loss.item())`` on a same-file meter whose ``avg`` divides the sum by
        the number of calls: a mean of batch means (``update(v, x.size(0))`` is fine)."""
        flow = model.dataflow
        for update in meter_updates(model, loop):
            if update.weighted:
                continue
            if flow.reduction(update.value, loop.scope, flow.order(update.call)) is not (
                Reduction.MEAN
            ):
                continue
            averages = update.summary.averages
            for finalizer in meter_finalizers(flow, loop, update.receiver, averages):
                yield _meter_violation(model, loop, batches, update, finalizer)

    def _comprehensions(self, model: TrainingModel) -> Iterator[Violation]:
        """``np.mean([accuracy_of(batch) for i in range(0, N, bs)])``."""
        flow = model.dataflow
        for site in model.calls:
            if (site.qualified or "") not in _LIST_MEANS:
                continue
            argument = positional(site.node, 0)
            if not isinstance(argument, cst.ListComp) or argument.for_in.inner_for_in:
                continue
            comp = argument.for_in
            batches = batching_of(flow, comp.iter, comp.target, site.scope)
            if batches is None or batches.full:
                continue
            if flow.reduction(argument.elt, site.scope, site.order) is not Reduction.MEAN:
                continue
            code = model.module.code_for_node
            element = code(argument.elt).strip()
            yield Violation(
                site.node,
                f"`{code(site.node.func).strip()}([...])` averages per-batch means "
                f"(`{_short(element)}` for each batch of `{code(comp.iter).strip()}`), "
                f"but {batches.why}: the smaller last batch weighs as much as a full one, so "
                f"this is not the mean over samples",
                Fix(
                    "weight each batch by its size",
                    "sum(value * batch_size for each batch) / number_of_samples",
                ),
            )


def _accumulations(model: TrainingModel, loop: LoopInfo) -> dict[str, tuple[bool, list[Event]]]:
    """Accumulators (``+=``) and lists (``.append``) filled once per iteration of ``loop``."""
    groups: dict[str, tuple[bool, list[Event]]] = {}
    mixed: set[str] = set()
    for event in model.iteration(loop):
        if event.kind not in (EventKind.ACCUMULATE, EventKind.APPEND):
            continue
        if event.loops or event.via or not event.subject:
            continue
        if isinstance(event.node, cst.AugAssign) and not isinstance(
            event.node.operator, cst.AddAssign
        ):
            mixed.add(event.subject)
            continue
        if isinstance(event.node, cst.AugAssign) and isinstance(event.node.target, cst.Subscript):
            mixed.add(event.subject)  # per-key totals are finalized per key
            continue
        is_list = event.kind is EventKind.APPEND
        known = groups.setdefault(event.subject, (is_list, []))
        if known[0] != is_list:
            mixed.add(event.subject)
        known[1].append(event)
    return {k: v for k, v in groups.items() if k not in mixed}


def _mean_operand(model: TrainingModel, event: Event) -> bool:
    flow = model.dataflow
    before = flow.order(event.node)
    return flow.reduction(event.operand, event.scope, before) is Reduction.MEAN


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _batch_size_expression(loop: LoopInfo, batches: Batching) -> str:
    target = loop.node.target if isinstance(loop.node, cst.For) else None
    if batches.counter is not None and isinstance(target, cst.Tuple) and len(target.elements) > 1:
        target = target.elements[1].value
    if isinstance(target, (cst.Tuple, cst.List)) and target.elements:
        target = target.elements[0].value
    name = dotted(target)
    if batches.kind == "range" or not name:
        return "batch_size"
    return f"{name}.shape[0]" if batches.kind == "tf.data" else f"{name}.size(0)"


def _samples_expression(batches: Batching) -> str:
    if batches.kind == "loader" and batches.name:
        return f"len({batches.name}.dataset)"
    if batches.dataset:
        return f"len({batches.dataset})"
    return "the number of samples"


def _violation(
    model: TrainingModel,
    loop: LoopInfo,
    batches: Batching,
    name: str,
    event: Event,
    finalizer: Finalizer,
    kind: Divisor,
) -> Violation:
    code = model.module.code_for_node
    done = _short(code(finalizer.node).strip())
    operand = _short(code(event.operand).strip()) if event.operand is not None else "a mean"
    source = batches.name or _short(code(batches.source).strip())
    line = model.line_of(loop.node)
    size = _batch_size_expression(loop, batches)
    if event.kind is EventKind.APPEND:
        fix_code = f"{name}.append({operand} * {size})  # then: sum({name}) / "
        fix_code += _samples_expression(batches)
    else:
        fix_code = f"{name} += {operand} * {size}  # then: {name} / {_samples_expression(batches)}"
    fix = Fix("weight each batch's mean by its size and divide by the number of samples", fix_code)
    if kind is Divisor.SAMPLES:
        divisor = code(finalizer.divisor).strip() if finalizer.divisor is not None else "?"
        message = (
            f"`{done}` divides a sum of per-batch means (`{name}` collects `{operand}` once per "
            f"batch of `{source}`, line {line}) by a number of samples, `{divisor}`: the result "
            f"is about batch-size times too small"
        )
        return Violation(finalizer.node, message, fix, severity=Severity.ERROR)
    message = (
        f"`{done}` averages per-batch means: `{name}` collects `{operand}` once per batch of "
        f"`{source}` (line {line}), but {batches.why}; that batch weighs as much as a full "
        f"one, so the result is not the mean over samples"
    )
    return Violation(finalizer.node, message, fix, severity=_confidence(model, loop, batches))


def _confidence(model: TrainingModel, loop: LoopInfo, batches: Batching) -> Severity:
    """Warning in evaluation code (the metric that picks checkpoints) and for loaders visibly
    built without ``drop_last``; info for a training loss reported from a train step (a
    progress-bar number) or a loader whose construction trainlint cannot see."""
    if evaluates(model, loop):
        return Severity.WARNING
    if trains(model, loop) or not batches.visible:
        return Severity.INFO
    return Severity.WARNING


def _meter_violation(model, loop, batches, update, finalizer) -> Violation:
    code = model.module.code_for_node
    read = _short(code(finalizer.node).strip())
    value = _short(code(update.value).strip())
    source = batches.name or _short(code(batches.source).strip())
    size = _batch_size_expression(loop, batches)
    summary = update.summary
    if summary.weight_param:
        fix_code = f"{update.receiver}.update({value}, {size})"
        how = f"pass the batch size as `{summary.weight_param}`"
    else:
        fix_code = f"{update.receiver}.update({value} * {size})  # and count samples, not calls"
        how = "weight each value by its batch size and count samples"
    message = (
        f"`{read}` is a mean of per-batch means: `{code(update.call).strip()}` (line "
        f"{model.line_of(update.call)}) adds one mean per batch of `{source}` (line "
        f"{model.line_of(loop.node)}) and `{summary.total}` is divided by the number of calls, "
        f"but {batches.why}; that batch weighs as much as a full one"
    )
    return Violation(
        finalizer.node, message, Fix(how, fix_code), severity=_confidence(model, loop, batches)
    )
