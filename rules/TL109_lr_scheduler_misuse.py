from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import Condition, Event, EventKind, LoopInfo, TrainingModel, TrainStep
from trainlint.model.loops.event_plumbing import exclusive, same_object
from trainlint.model.loops.schedules import (
    ScheduleKind,
    SchedulerInfo,
    batch_loss_names,
    call_order,
    is_batch_loop,
    loss_root,
    scheduler_of,
    unstepped_schedulers,
)
from trainlint.model.loops.training import modulo_operand
from trainlint.model.syntax.nodes import descendants, dotted, keyword, names_in, positional
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED, TRAIN_LOOP

_EPOCHLY = (ScheduleKind.EPOCH, ScheduleKind.PLATEAU)


class LrSchedulerMisuse(Rule):
    """A learning-rate scheduler stepped at the wrong time, at the wrong rate, or never.

    ## What it does
    Flags

    * `scheduler.step()` before `optimizer.step()` in the same iteration;
    * an epoch-based scheduler (`StepLR`, `MultiStepLR`, `ExponentialLR`, `ReduceLROnPlateau`,
      a cosine schedule whose horizon is the number of epochs) stepped in the innermost batch
      loop;
    * `ReduceLROnPlateau.step()` fed one batch's training loss;
    * a scheduler that is constructed and never stepped.

    Per-batch schedulers (`OneCycleLR`, `CyclicLR`, warmup and transformers schedules, any
    schedule whose horizon is counted in steps) and custom scheduler classes are left alone.

    ## Why is this bad?
    Stepping before the optimizer skips the first value of the schedule (PyTorch warns once
    and carries on). An epoch-based schedule stepped every batch decays hundreds of times too
    fast: `StepLR(step_size=30)` divides the learning rate by 10 every 30 *batches*.
    `ReduceLROnPlateau` watches a metric for `patience` calls without improvement; one batch's
    training loss is noise, so it cuts the rate at random. A scheduler that is never stepped
    leaves the learning rate constant, which is rarely what its author wanted.

    ## Example
    ```python
    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            scheduler.step()
    ```

    ## Use instead
    ```python
    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
        scheduler.step()
    ```
    """

    code = "TL109"
    name = "lr-scheduler-misuse"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("sched", "Schedule", "LR")  # ``WarmupLinearSchedule`` (pytorch_transformers)
    block_triggers = (*triggers, TRAIN_LOOP, IMPORTED)
    summary = "An LR scheduler stepped before the optimizer, every batch, on noise, or never."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        found: dict[int, Violation] = {}
        for violation in (
            *self._plateau_after_batches(model),
            *self._batch_cadence(model),
            *self._before_optimizer(model),
            *self._never_stepped(model),
        ):
            found.setdefault(id(violation.node), violation)
        yield from found.values()

    # ------------------------------------------------------------------ order
    def _before_optimizer(self, model: TrainingModel) -> Iterator[Violation]:
        for loop in model.loops:
            if model.is_framework_managed(loop.scope):
                continue
            events = model.iteration(loop)
            for index, event in enumerate(events):
                if event.kind is not EventKind.SCHEDULER_STEP or event.loops:
                    continue
                if not isinstance(event.node, cst.Call) or event.node.args:
                    continue  # ``step(epoch)``: the value is computed for an explicit position
                info = scheduler_of(model, event)
                if info.kind in (ScheduleKind.CUSTOM, ScheduleKind.PLATEAU):
                    continue
                steps = _optimizer_steps(events, event, info)
                if not steps or any(events.index(e) < index for e in steps):
                    continue
                if _counter_gated(event, loop, steps[0]):
                    continue
                yield self._order_violation(model, event, steps[0])

    def _order_violation(self, model: TrainingModel, event: Event, step: Event) -> Violation:
        scheduler = event.subject or "scheduler"
        optimizer = model.module.code_for_node(step.node)
        return Violation(
            event.node,
            f"`{scheduler}.step()` runs before `{optimizer}` ({model.where(step.node)}) "
            "in the same iteration: the first value of the schedule is skipped",
            Fix("step the scheduler after the optimizer", f"{optimizer}\n{scheduler}.step()"),
        )

    # ------------------------------------------------------------------ cadence
    def _batch_cadence(self, model: TrainingModel) -> Iterator[Violation]:
        for step in model.train_steps:
            if not is_batch_loop(model, step):
                continue
            for event in step.events:
                if event.kind is not EventKind.SCHEDULER_STEP or event.loops:
                    continue
                info = scheduler_of(model, event)
                if info.kind not in _EPOCHLY or _cadence_changed(model, step, event):
                    continue
                if info.kind is ScheduleKind.PLATEAU:
                    yield from self._plateau_in_batch_loop(model, step, event, info)
                elif isinstance(event.node, cst.Call) and not event.node.args:
                    yield self._epoch_in_batch_loop(model, step, event, info)

    def _epoch_in_batch_loop(
        self, model: TrainingModel, step: TrainStep, event: Event, info: SchedulerInfo
    ) -> Violation:
        scheduler = event.subject or "scheduler"
        built = f" (built at line {model.line_of(info.call)})" if info.call is not None else ""
        return Violation(
            event.node,
            f"`{scheduler}` is a {info.name}{built}, an epoch-based schedule, but it is stepped "
            f"in the batch loop at line {model.line_of(step.loop.node)}: it decays once per "
            "batch instead of once per epoch",
            Fix(
                "step it once per epoch, after the batch loop",
                f"for batch in loader:\n    ...\n    optimizer.step()\n{scheduler}.step()",
            ),
        )

    def _plateau_in_batch_loop(
        self, model: TrainingModel, step: TrainStep, event: Event, info: SchedulerInfo
    ) -> Iterator[Violation]:
        scheduler = event.subject or "scheduler"
        metric = _metric(event)
        root = loss_root(metric)
        if root is not None and root in batch_loss_names(model, step):
            message = (
                f"`{scheduler}` (ReduceLROnPlateau) is fed `{root}`, one batch's training "
                f"loss, every batch of the loop at line {model.line_of(step.loop.node)}: its "
                "patience counts noisy batches, so the learning rate is cut at random"
            )
        else:
            message = (
                f"`{scheduler}` (ReduceLROnPlateau) is stepped in the batch loop at line "
                f"{model.line_of(step.loop.node)}: its patience counts batches, not epochs"
            )
        yield Violation(event.node, message, _plateau_fix(scheduler))

    def _plateau_after_batches(self, model: TrainingModel) -> Iterator[Violation]:
        """``scheduler.step(loss)`` after the batch loop, with the last batch's loss."""
        steps = model.train_steps
        for loop in model.loops:
            if model.is_framework_managed(loop.scope):
                continue
            for event in model.iteration(loop):
                if event.kind is not EventKind.SCHEDULER_STEP or event.loops:
                    continue
                if event.scope is not loop.scope:
                    continue
                root = loss_root(_metric(event))
                if root is None or scheduler_of(model, event).kind is not ScheduleKind.PLATEAU:
                    continue
                for step in steps:
                    inner = step.loop
                    if inner is loop or inner.scope is not loop.scope:
                        continue
                    if loop not in model.enclosing_loops(inner) or root not in batch_loss_names(
                        model, step
                    ):
                        continue
                    if _rebound_after(model, root, inner, event):
                        continue
                    yield self._leaked_loss(model, event, root, inner)
                    break

    def _leaked_loss(
        self, model: TrainingModel, event: Event, root: str, inner: LoopInfo
    ) -> Violation:
        scheduler = event.subject or "scheduler"
        return Violation(
            event.node,
            f"`{scheduler}` (ReduceLROnPlateau) is fed `{root}`, the training loss of the last "
            f"batch of the loop at line {model.line_of(inner.node)}, not an epoch metric: "
            "the plateau is judged on one noisy batch",
            _plateau_fix(scheduler),
        )

    # ------------------------------------------------------------------ never stepped
    def _never_stepped(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.train_steps:
            return
        for call, target in unstepped_schedulers(model):
            name = model.module.code_for_node(call.func).rsplit(".", 1)[-1]
            yield Violation(
                call,
                f"`{target}` ({name}) is constructed but never stepped: the learning rate "
                "stays at its initial value for the whole run",
                Fix(
                    "step it: after optimizer.step() for per-batch schedules, after the batch "
                    "loop for epoch-based ones",
                    f"{target}.step()",
                ),
            )


# ---------------------------------------------------------------------- helpers
def _optimizer_steps(events: list[Event], event: Event, info: SchedulerInfo) -> list[Event]:
    steps = [
        e for e in events if e.kind is EventKind.STEP and not e.closure and not exclusive(e, event)
    ]
    if info.optimizer:
        mine = [e for e in steps if same_object(e.subject, info.optimizer)]
        return mine or steps
    return steps


def _loop_names(loop: LoopInfo) -> set[str]:
    return names_in(loop.node.target) if isinstance(loop.node, cst.For) else set()


def _mentions(test: cst.CSTNode, names: set[str]) -> bool:
    return bool(names_in(test) & names)


def _counter_gated(event: Event, loop: LoopInfo, step: Event) -> bool:
    """``if epoch > 0: scheduler.step()``: the first iteration is skipped on purpose."""
    names = _loop_names(loop)
    shared = {id(c.test) for c in step.conditions}
    return any(id(c.test) not in shared and _mentions(c.test, names) for c in event.conditions)


def _cadence_changed(model: TrainingModel, step: TrainStep, event: Event) -> bool:
    """A condition that makes the step run less than once per batch (not the window guard)."""
    guard = step.accumulation.guard if step.accumulation is not None else None
    names = _loop_names(step.loop) | _incremented(step)
    for condition in event.conditions:
        if guard is not None and condition.test is guard.test:
            continue
        if _mentions(condition.test, names) or _schedules(condition):
            return True
    return False


def _schedules(condition: Condition) -> bool:
    test = condition.test
    if modulo_operand(test) is not None:
        return True
    for node in (test, *descendants(test)):
        if isinstance(node, cst.Call) and dotted(node.func) == "len":
            return True
        name = dotted(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        if name and any(w in name.lower() for w in ("epoch", "last", "end")):
            return True
    return False


def _incremented(step: TrainStep) -> set[str]:
    return {
        e.subject
        for e in step.events
        if e.kind is EventKind.ACCUMULATE and e.subject and isinstance(e.operand, cst.Integer)
    }


def _metric(event: Event) -> cst.BaseExpression | None:
    if not isinstance(event.node, cst.Call):
        return None
    return keyword(event.node, "metrics") or positional(event.node, 0)


def _rebound_after(model: TrainingModel, name: str, inner: LoopInfo, event: Event) -> bool:
    """Whether ``name`` is reassigned after the batch loop and before the scheduler call."""
    inside = {id(n) for n in descendants(inner.node)}
    limit = call_order(model, event.node)
    for binding in model.lookup(name, inner.scope):
        if id(binding.statement) in inside or binding.order <= inner.order:
            continue
        if limit is None or binding.order < limit:
            return True
    return False


def _plateau_fix(scheduler: str) -> Fix:
    return Fix(
        "step it once per epoch with a validation metric",
        f"val_loss = evaluate(model, val_loader)\n{scheduler}.step(val_loss)",
    )
