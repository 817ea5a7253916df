from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.edits import insert_before
from trainlint.model import TrainingModel
from trainlint.model.dataflow.carryover import CarriedTotal, TotalKind
from trainlint.model.syntax.nodes import dotted, literal
from trainlint.rule import TextEdit, Violation
from trainlint.slicing import ACCUMULATING_LOOP, TOTALLING_LOOP

_WHAT = {
    TotalKind.TOTAL: "running total",
    TotalKind.LIST: "list of batch values",
    TotalKind.METER: "meter",
    TotalKind.METRIC: "metric",
}


class MetricAccumulatorNotReset(Rule):
    """A per-epoch loss or metric total is never reset between epochs.

    ## What it does
    Flags a running total, a meter or a metric object that is made before the epoch loop,
    added to in the batch loop inside it, and read after the batch loop on every epoch
    (printed, logged, divided), while nothing in the epoch loop starts it afresh:

    * `running_loss = 0.0` before the loop, `running_loss += loss.item()` (or a count of
      correct predictions) per batch;
    * `losses = []` before the loop, `losses.append(loss.item())` per batch and the whole
      list averaged per epoch (`np.mean(losses)`, `sum(losses) / len(losses)`);
    * a same-project meter (`losses = AverageMeter()`, also from `utils.py`) whose `update`
      sums its values, read through its average (`losses.avg`);
    * torchmetrics / torcheval metrics (`update`, calling it, then `compute()`) and keras
      metrics (`update_state`, calling it, also inside a `@tf.function` step the batch loop
      calls, then `result()`).

    Stays silent on counters of steps or samples (`global_step += 1`,
    `seen += x.size(0)`), on totals reset anywhere in the epoch loop (also inside a
    condition of the batch loop, as `if i % 100 == 99: ...; running_loss = 0.0`, or in a
    same-file helper it calls), on lists kept as a history (`losses[-1]`, a slice, a
    plot), on meters and metrics re-created per epoch, reset, or handed
    to another call that may reset them, and on totals read only inside the batch loop.

    ## Why is this bad?
    The first epoch's report is right; every later one mixes in all earlier epochs. A loss
    reported per epoch becomes the cumulative sum (or the average since the start of
    training), so it looks as if training stalled, and an accuracy computed from
    never-reset counts changes more and more slowly. Early stopping, checkpoint selection
    and `ReduceLROnPlateau` fed from it act on the wrong numbers.

    ## Example
    ```python
    running_loss = 0.0
    for epoch in range(epochs):
        for x, y in loader:
            ...
            running_loss += loss.item()
        print(f"epoch {epoch}: {running_loss / len(loader.dataset)}")
    ```

    ## Use instead
    ```python
    for epoch in range(epochs):
        running_loss = 0.0
        for x, y in loader:
            ...
            running_loss += loss.item()
        print(f"epoch {epoch}: {running_loss / len(loader.dataset)}")
    ```

    The fix (unsafe: a total kept across epochs on purpose would change) starts the total
    afresh at the top of the epoch loop: `running_loss = 0.0` (the value it was made with),
    `losses = []`, `metric.reset()` for torchmetrics/torcheval, `metric.reset_state()` for
    keras, and a meter's own `reset()` (or `clear()`) when its class has one.
    """

    code = "TL204"
    name = "metric-accumulator-not-reset"
    severity = Severity.WARNING
    frameworks = ("torch", "tf")
    triggers = ("+", "update", "metrics", "append")
    # its findings are in a loop's iteration (or a helper it calls)
    block_triggers = (ACCUMULATING_LOOP, TOTALLING_LOOP)
    summary = "A per-epoch loss/metric total is filled in the batch loop and never reset."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for carried in model.carried_totals:
            yield _violation(model, carried)


def _violation(model: TrainingModel, carried: CarriedTotal) -> Violation:
    name = carried.name
    what = _WHAT[carried.kind]
    made = f" (made at line {model.line_of(carried.made)})" if carried.made is not None else ""
    message = (
        f"{what} `{name}`{made} grows in the batch loop at line "
        f"{model.line_of(carried.batch_loop.node)} but nothing in the epoch loop at line "
        f"{model.line_of(carried.epoch_loop.node)} resets it: from the second epoch on, this "
        f"report includes every earlier epoch"
    )
    if carried.companions:
        names = ", ".join(f"`{n}`" for n, _ in carried.companions)
        message += f" (and {names}, which it is divided by, must be reset with it)"
    if carried.kind is TotalKind.METER:
        method = carried.reset_method
        resets: list[str | None] = [f"{carried.name}.{method}()" if method else None]
    else:
        resets = [_reset_code(model, carried.kind, carried.name, carried.made)]
    resets += [_reset_code(model, TotalKind.TOTAL, n, made) for n, made in carried.companions]
    reset = "; ".join(r for r in resets if r) if all(resets) else None
    edits: tuple[TextEdit, ...] = ()
    first = _first_statement(carried.epoch_loop.body)
    if reset is not None and first is not None:
        placed = [insert_before(model, first, r) for r in resets if r]
        if all(placed):
            edits = (TextEdit(placed[0].span, "".join(p.content for p in placed)),)  # type: ignore[union-attr]
    return Violation(
        carried.report,
        message,
        Fix(
            "reset it at the top of each epoch",
            reset,
            edits,
            Applicability.UNSAFE if edits else Applicability.DISPLAY,
        ),
    )


def _reset_code(model: TrainingModel, kind: TotalKind, name: str, made) -> str | None:
    if kind is TotalKind.TOTAL:
        value = _initial_value(made, name)
        if value is not None and isinstance(literal(value, None), (int, float)):
            return f"{name} = {model.text_of(value)}"
        return None
    if kind is TotalKind.LIST:
        return f"{name} = []"
    if kind is TotalKind.METRIC:
        value = getattr(made, "value", None)
        qualified = model.imports.qualify(value.func) if isinstance(value, cst.Call) else None
        keras = "keras" in (qualified or "") or (qualified or "").startswith("tensorflow.")
        return f"{name}.reset_state()" if keras else f"{name}.reset()"
    return None  # a meter: its own class says how it resets (``reset_method``)


def _initial_value(made: cst.CSTNode | None, name: str) -> cst.BaseExpression | None:
    """What ``name`` was made with: ``total = 0.0``, or its slot of ``a, b = 0, 0.0``."""
    value = getattr(made, "value", None)
    targets = getattr(made, "targets", ())
    if len(targets) == 1 and isinstance(targets[0].target, cst.Tuple):
        names = [dotted(e.value) for e in targets[0].target.elements]
        values = value.elements if isinstance(value, cst.Tuple) else ()
        if name in names and len(values) == len(names):
            return values[names.index(name)].value
        return None
    return value


def _first_statement(body: cst.BaseSuite) -> cst.BaseStatement | None:
    if isinstance(body, cst.IndentedBlock) and body.body:
        return body.body[0]
    return None
