from __future__ import annotations

import weakref
from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import Event, EventKind, TrainingModel, TrainStep
from trainlint.model.loops.caller_flags import runs_whenever_caller_allows
from trainlint.model.loops.gradients import clearing_events, clears, same_object, torch_steps
from trainlint.model.loops.unseen_code import may_clear_unseen
from trainlint.model.syntax.nodes import dotted, method_call
from trainlint.rule import Violation
from trainlint.slicing import TRAIN_LOOP


class MissingZeroGrad(Rule):
    """An optimizer is stepped in a training loop but its gradients are never cleared there.

    ## What it does
    Flags a training loop (an iteration that runs `backward()` and `optimizer.step()`) in
    which some stepped optimizer's gradients are not cleared on every iteration: no
    `optimizer.zero_grad()`, no `model.zero_grad()` of a model that feeds it, no
    `p.grad = None`. Clearing only once before the loop counts as never. Each optimizer is
    checked on its own, so a GAN that clears the discriminator but forgets the generator is
    caught. A per-batch method inherited from a base class in another module of the project
    (`self.train_step(batch)` of a `BaseTrainer` in `base.py`) is followed; the finding is
    shown on the call in this file's loop.

    Clearing under a flag the caller passes (`if do_zero_grad: optimizer.zero_grad()` where
    `do_zero_grad` is a parameter of the loop's function: the caller decides) counts.
    Clearing in a same-file helper called from the loop, closure steps (`opt.step(closure)`),
    DeepSpeed engines, Lightning and HF `Trainer` code, and gradient-accumulation windows
    (see TL104/TL105) are understood and left alone. In an accumulation loop it reports
    only an optimizer that is cleared nowhere in the loop or the loops around it.

    ## Why is this bad?
    PyTorch *adds* each `backward()` into `param.grad`. Without clearing, the gradient used
    by step *n* is the sum of the gradients of batches 1..n: updates grow without bound, the
    loss oscillates or diverges, and nothing raises an error.

    ## Example
    ```python
    optimizer.zero_grad()
    for inputs, targets in loader:
        loss = criterion(model(inputs), targets)
        loss.backward()
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

    code = "TL101"
    name = "missing-zero-grad"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("step",)
    # its findings are in a train step: a loop that steps an optimizer (or a helper does)
    block_triggers = (TRAIN_LOOP,)
    summary = "An optimizer is stepped every iteration but its gradients are never cleared."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[tuple[int, str]] = set()
        for train in model.train_steps:
            if any(e.kind is EventKind.ENGINE_STEP for e in train.events):
                continue  # DeepSpeed: the engine clears the gradients itself
            for optimizer, steps in _stepped_optimizers(train).items():
                if any(step.closure for step in steps):
                    continue  # the closure recomputes the gradients (and usually clears them)
                if self._cleared(model, train, optimizer, steps):
                    continue
                anchor = _feeding_backward(train.events, steps[0])
                if anchor is None or (id(anchor.node), optimizer) in reported:
                    continue
                reported.add((id(anchor.node), optimizer))
                yield self._violation(model, train, optimizer, steps[0], anchor)

    # ------------------------------------------------------------------ analysis
    def _cleared(
        self, model: TrainingModel, train: TrainStep, optimizer: str, steps: list[Event]
    ) -> bool:
        scope = train.loop.scope
        candidates = [
            e
            for e in clearing_events(train.events)
            if clears(model, e, optimizer, scope) is not False
        ]
        window = train.accumulation
        if window is not None and (not window.optimizers or optimizer in window.optimizers):
            # A window clears inside its guard, not every iteration; TL104/TL105 judge how.
            # Only an optimizer cleared nowhere around the loop is this rule's business.
            if candidates or _cleared_in_enclosing_loops(model, train, optimizer):
                return True
        elif all(any(runs_whenever_caller_allows(c, step) for c in candidates) for step in steps):
            return True
        return may_clear_unseen(model, train.loop, train.events, optimizer)

    # ------------------------------------------------------------------ reporting
    def _violation(
        self,
        model: TrainingModel,
        train: TrainStep,
        optimizer: str,
        step: Event,
        anchor: Event,
    ) -> Violation:
        step_line = model.where(step.node).removeprefix("line ")
        loop_line = model.line_of(train.loop.node)
        outside = _clearing_outside(model, train, optimizer)
        where = (
            f" (only at line {model.line_of(outside.node)}, outside the loop)"
            if outside is not None
            else ""
        )
        window = train.accumulation
        if window is not None and (not window.optimizers or optimizer in window.optimizers):
            message = (
                f"`{optimizer}` is stepped once per accumulation window {_at(step_line)} but "
                f"its gradients are never cleared in the loop at line {loop_line}{where}; after "
                "the first window every step applies all gradients since the start of training"
            )
            fix = Fix(
                "clear the gradients inside the accumulation guard, right after the step",
                f"{_step_text(model, step)}; {optimizer}.zero_grad()",
            )
        else:
            message = (
                f"`{optimizer}` is stepped {_at(step_line)} but its gradients are not cleared "
                f"on every iteration of the loop at line {loop_line}{where}; each backward() "
                "adds to all previous batches' gradients"
            )
            fix = Fix(
                "call zero_grad() once per iteration, before backward() (or right after step())",
                f"{optimizer}.zero_grad(); {_backward_text(model, anchor)}; "
                f"{_step_text(model, step)}",
            )
        return Violation(model.anchor_of(anchor), message, fix)


def _at(where: str) -> str:
    """``at line 12``, or ``in `base.BaseTrainer.train_step``` for another module's code."""
    return where if where.startswith("in ") else f"at line {where}"


def _stepped_optimizers(train: TrainStep) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {}
    for step in torch_steps(train.events):
        if step.subject:
            found.setdefault(step.subject, []).append(step)
    return found


def _feeding_backward(events: list[Event], step: Event) -> Event | None:
    """The first backward after the previous step of another optimizer (the one feeding
    ``step``); for a single-optimizer loop, simply the loop's first backward."""
    position = events.index(step)
    start = 0
    for index in range(position - 1, -1, -1):
        event = events[index]
        if event.kind is EventKind.STEP and event.subject != step.subject:
            start = index + 1
            break
    for event in events[start:position]:
        if event.kind is EventKind.BACKWARD:
            return event
    return next((e for e in events if e.kind is EventKind.BACKWARD), None)


def _cleared_in_enclosing_loops(model: TrainingModel, train: TrainStep, optimizer: str) -> bool:
    return any(
        clears(model, e, optimizer, train.loop.scope) is not False
        for outer in model.enclosing_loops(train.loop)
        for e in clearing_events(model.iteration(outer))
    )


def _clearing_outside(model: TrainingModel, train: TrainStep, optimizer: str) -> Event | None:
    """A clearing of ``optimizer`` outside the loop: in a loop around it, or before it."""
    scope = train.loop.scope
    own = {id(e.node) for e in train.events}
    for outer in model.enclosing_loops(train.loop):
        for event in clearing_events(model.iteration(outer)):
            if id(event.node) not in own and clears(model, event, optimizer, scope):
                return event
    for order, call, subject in _zero_grad_statements(model).get(id(scope), ()):
        if order < train.loop.order and same_object(model, subject, optimizer, scope):
            return Event(EventKind.ZERO_GRAD, call, scope, subject=subject)
    return None


#: model -> id(scope) -> its ``x.zero_grad()`` statements: (order, call, ``x``). Built once
#: per model; scanning every statement per finding was quadratic in the number of loops.
_ZERO_GRADS: weakref.WeakKeyDictionary[TrainingModel, dict[int, list[tuple[int, cst.Call, str]]]]
_ZERO_GRADS = weakref.WeakKeyDictionary()


def _zero_grad_statements(model: TrainingModel) -> dict[int, list[tuple[int, cst.Call, str]]]:
    found = _ZERO_GRADS.get(model)
    if found is None:
        found = {}
        for statement, scope in model.expression_statements:
            order = model.order_of(statement)
            call = statement.value
            method = method_call(call)
            if order is None or not isinstance(call, cst.Call) or method is None:
                continue
            subject = dotted(method[0])
            if method[1] == "zero_grad" and subject is not None:
                found.setdefault(id(scope), []).append((order, call, subject))
        _ZERO_GRADS[model] = found
    return found


def _step_text(model: TrainingModel, step: Event) -> str:
    return model.module.code_for_node(step.node)


def _backward_text(model: TrainingModel, backward: Event) -> str:
    return model.module.code_for_node(backward.node)
