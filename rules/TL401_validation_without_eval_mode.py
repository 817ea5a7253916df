from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.edits import insert_after, insert_before
from trainlint.model import TrainingModel
from trainlint.model.loops.event_types import Event
from trainlint.model.loops.mode_exemptions import plain_function, samples_noise
from trainlint.model.loops.modes import Mode, forward_target, model_value, torch_forwards
from trainlint.model.loops.regions import EvalRegion, RegionKind
from trainlint.model.syntax.nodes import contains
from trainlint.rule import Violation
from trainlint.slicing import EVAL_FUNCTION, EVAL_LOOP, TRAIN_LOOP

#: Evaluation that keeps dropout on on purpose (Monte Carlo dropout, uncertainty estimates).
_MC_DROPOUT = re.compile(r"mc_?dropout|monte_?carlo|enable_dropout|uncertaint|bayes", re.I)


class ValidationWithoutEvalMode(Rule):
    """A model is evaluated without `model.eval()`.

    ## What it does
    Flags the first model call of an evaluation region that runs while the model is still
    in training mode: a loop over a loader named like `val`/`valid`/`test`/`eval`/`dev`, a
    function named like `validate`/`evaluate`/`test`/`predict`, or model calls after the
    epoch's training loop, none of them running a backward. The mode is followed through
    helpers (same file or another module of the project) and callers:
    `model.eval()` (or `model.train(False)`) before the region, in the function or in every
    caller of it (same file, or another module of the project: `model.eval();
    validate(model, loader)` in `train.py` for `validate` in `engine.py`), counts, as does
    loading a Hugging Face model with `from_pretrained` (it returns the model in eval mode)
    when nothing switched it to training since, and so
    does a helper that switches a collection of models by its argument
    (`self.set_model_mode("eval")`). A mode chosen at run time (`set_mode(mode)` with a train
    and an eval branch) is not reported.

    An error when the model is known to hold Dropout or BatchNorm (a same-file class, a
    `torch.nn` container, a pretrained torchvision/timm/Hugging Face model); a warning when
    what it holds cannot be read; silent when it is known to hold neither (both modes compute
    the same thing). Also silent on Lightning `validation_step`/`test_step`, HF Trainer,
    keras and flax models, methods of the `nn.Module` itself, unit tests (also loops inside
    them), and Monte Carlo
    dropout that keeps training mode on purpose, and `model.train()` written in the region
    before forwards under `no_grad` (BatchNorm statistics recomputed, as SWA's `bn_update`),
    and on a generator sampled from a random draw (`G(fixed_noise)` where `fixed_noise` was
    made by `torch.randn`, whatever its name; a tensor named `z` that holds data is no noise)
    by a file that never switches that generator to eval mode.

    ## Why is this bad?
    In training mode Dropout keeps zeroing activations and BatchNorm normalizes with the
    current batch's statistics (and updates its running averages with validation data). The
    validation metric is noisy and too low, checkpoints are chosen on it, and the running
    statistics used later at inference are corrupted.

    ## Example
    ```python
    for epoch in range(epochs):
        model.train()
        train_one_epoch(model, train_loader, optimizer)
        for x, y in val_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Use instead
    ```python
    for epoch in range(epochs):
        model.train()
        train_one_epoch(model, train_loader, optimizer)
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                correct += (model(x).argmax(1) == y).sum().item()
    ```
    """

    code = "TL401"
    name = "validation-without-eval-mode"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("torch",)
    # an evaluation-named function, a loop over an eval loader, or code after a train step
    block_triggers = (EVAL_FUNCTION, EVAL_LOOP, TRAIN_LOOP)
    summary = "An evaluation loop or function runs the model in training mode (no `.eval()`)."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        modes = model.modes
        for region in model.eval_regions:
            forwards = torch_forwards(model, region.events)
            if not forwards:
                continue
            first = forwards[0]
            state = modes.mode_at(region.scope, first)
            if state.mode in (Mode.EVAL, Mode.EITHER) or _mc_dropout(model, region):
                continue
            if modes.recalibrates(region, first, state) or samples_noise(model, region, first):
                continue
            target = forward_target(first.node)
            if plain_function(model, target, first.scope):
                continue  # ``def net(X): ...`` written from scratch: no mode to switch
            value = model_value(model, target, first.scope)
            layers = model.module_structure.of_value(value)
            if layers.known_free:
                continue
            yield self._violation(model, region, first, state, layers.layers)

    def _violation(self, model, region: EvalRegion, first, state, layers) -> Violation:
        name = first.subject or "the model"
        where = region.describe(model)
        if state.mode is Mode.TRAIN and state.switch is not None:
            before = (
                f"the last mode switch before it is `{model.text_of(state.switch.node)}` "
                f"(line {model.line_of(state.switch.node)})"
            )
        else:
            before = f"no `{name}.eval()` runs before it, here or in a caller"
        effect = (
            "dropout keeps zeroing activations and BatchNorm normalizes with batch statistics "
            "(and moves its running averages toward the evaluation data), so the metric is off"
        )
        if list(layers) == ["from_pretrained"]:
            effect = (
                f"`{name}` is a pretrained Hugging Face model (`from_pretrained`), whose dropout "
                f"behaves differently in training mode: {effect}"
            )
        elif layers:
            shown = ", ".join(f"`{layer}`" for layer in layers[:3])
            effect = f"`{name}` holds {shown}, which behave differently in training mode: {effect}"
        else:
            effect = f"if `{name}` holds Dropout or BatchNorm, {effect}"
        called = model.text_of(first.node)
        mode = "in training mode" if state.mode is Mode.TRAIN else "maybe in training mode"
        message = f"{where} calls `{called}` {mode}: {before}; {effect}"
        return Violation(
            first.node,
            message,
            _fix(model, region, first.subject, state.switch),
            Severity.ERROR if layers else None,
        )


def _mc_dropout(model: TrainingModel, region: EvalRegion) -> bool:
    return model.source_mentions([region.node, *(e.scope.node for e in region.events)], _MC_DROPOUT)


def _fix(
    model: TrainingModel, region: EvalRegion, subject: str | None, switch: Event | None
) -> Fix:
    description = "call `model.eval()` before evaluating and `model.train()` after it"
    if not subject or not subject.replace(".", "").replace("_", "").isalnum():
        return Fix(description)
    description = f"call `{subject}.eval()` before evaluating and `{subject}.train()` after it"
    edits = []
    if region.kind is RegionKind.FUNCTION:
        body = getattr(region.node, "body", None)
        statements = list(getattr(body, "body", ()))
        if statements and _is_docstring(statements[0]) and len(statements) > 1:
            statements = statements[1:]
        # after the function's own switch to train mode (``self.set_mode()``), if it has one
        anchor = (switch.via[0] if switch.via else switch.node) if switch is not None else None
        switching = [s for s in statements if anchor is not None and contains(s, anchor)]
        if switching and any(contains(switching[0], e.node) for e in region.forwards):
            edit = None  # the switch and the model call share a block: no line fits between
        elif switching:
            edit = insert_after(model, switching[0], f"{subject}.eval()")
        else:
            edit = insert_before(model, statements[0], f"{subject}.eval()") if statements else None
        edits = [edit] if edit is not None else []
    else:
        before = insert_before(model, region.node, f"{subject}.eval()")
        after = insert_after(model, region.last, f"{subject}.train()")
        if region.last_jumps:
            after = None  # the block ends in ``return``/``break``: nothing runs after it
        edits = [e for e in (before, after) if e is not None]
    if not edits:
        return Fix(description)
    return Fix(description, f"{subject}.eval()", tuple(edits), Applicability.UNSAFE)


def _is_docstring(statement: cst.CSTNode) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.Expr)
        and isinstance(statement.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )
