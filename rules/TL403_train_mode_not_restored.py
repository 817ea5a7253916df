from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.edits import insert_before
from trainlint.model import TrainingModel
from trainlint.model.loops.restoring import UnrestoredSwitch
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED, IMPORTS_TORCH


class TrainModeNotRestored(Rule):
    """The model is switched to eval mode and never switched back before training resumes.

    ## What it does
    Flags an eval switch (`model.eval()`, `model.train(False)`, or a call of a helper, same
    file or another module of the project, that makes one: `set_mode("eval")` over a dict
    of models counts for each of them) reachable in a training loop, from which the next
    pass through the train step (the loop that runs backward and the optimizer step) can be
    reached without `model.train()` on the same model. Loop iterations are followed one
    after the other: `model.train()` at the top of the epoch, inside the train step, or in a
    helper called on the way (`train_one_epoch()` starting with `model.train()`) counts, and
    so does restoring a saved mode (`model.train(was_training)`, `model.train(mode=saved)`,
    `if was_training: model.train()`). A `model.train()` that runs under a condition the
    switch does not share does not. Each model the train step runs is checked (a GAN's
    generator and critic), a second one only when a stepped optimizer holds its parameters.
    Silent when the model is known to hold neither Dropout nor BatchNorm (both modes compute
    the same thing), on a model made afresh each iteration (`snapshot =
    copy.deepcopy(model)`), and on frozen parts: run only under `no_grad`, or with their
    parameters frozen (`requires_grad_(False)`, `p.requires_grad = False`).

    ## Why is this bad?
    After the first evaluation every later epoch trains in eval mode: Dropout is off, so the
    model overfits, and BatchNorm normalizes with frozen running statistics that it no longer
    updates. Nothing fails; training just quietly gets worse after epoch one.

    ## Example
    ```python
    model.train()
    for epoch in range(epochs):
        for x, y in train_loader:
            ...
            loss.backward()
            optimizer.step()
        model.eval()
        evaluate(model, val_loader)
    ```

    ## Use instead
    ```python
    for epoch in range(epochs):
        model.train()
        for x, y in train_loader:
            ...
            loss.backward()
            optimizer.step()
        model.eval()
        evaluate(model, val_loader)
    ```
    """

    code = "TL403"
    name = "train-mode-not-restored"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = (".eval(", ".train(")
    block_triggers = (*triggers, IMPORTED, IMPORTS_TORCH)
    summary = "`model.eval()` in a training loop is never undone by `model.train()`."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        restoring = model.restoring
        for item in restoring.unrestored_switches():
            if restoring.layers_switched(item).known_free:
                continue  # no Dropout, no BatchNorm: both modes compute the same thing
            yield self._violation(model, item)

    def _violation(self, model: TrainingModel, item: UnrestoredSwitch) -> Violation:
        switch = model.text_of(item.switch.node)
        name = item.subject or item.switch.subject or "model"
        train_line = model.line_of(item.step.loop.node)
        if item.anchor is item.switch.node:
            what = f"`{switch}` switches `{name}` to eval mode"
        elif model.line_of(item.switch.node):
            what = (
                f"`{model.text_of(item.anchor)}` switches `{name}` to eval mode (`{switch}`, "
                f"line {model.line_of(item.switch.node)})"
            )
        else:  # the helper is another module's (a summary's stub has no lines here)
            what = f"`{model.text_of(item.anchor)}` switches `{name}` to eval mode (in its module)"
        message = (
            f"{what} and nothing switches it back: the train step at line {train_line} is "
            f"reached again with no `{name}.train()` on the way, so every later epoch trains "
            "with dropout off and BatchNorm's running statistics frozen"
        )
        return Violation(item.anchor, message, _fix(model, item, name))


def _fix(model: TrainingModel, item: UnrestoredSwitch, name: str) -> Fix:
    """``model.train()`` just before the train step's loop, in the loop's own names."""
    description = f"call `{name}.train()` at the top of each epoch, before the training loop"
    loop = item.step.loop
    local = _name_in_loop(model, item)
    if local is None:
        return Fix(description)
    # the switch inside the train step itself: every iteration must start in train mode
    body = list(getattr(loop.body, "body", ()))
    where = body[0] if item.loop is loop and body else loop.node
    edit = insert_before(model, where, f"{local}.train()")
    if edit is None:
        return Fix(description)
    return Fix(description, f"{local}.train()", (edit,), Applicability.UNSAFE)


def _name_in_loop(model: TrainingModel, item: UnrestoredSwitch) -> str | None:
    """The model's name in the train step's function (a helper's parameter, maybe)."""
    loop = item.step.loop
    for event in model.iteration(loop):
        if event.kind.value == "forward" and event.subject and event.scope is loop.scope:
            if item.loop is loop or item.subject is None:
                return event.subject
            for outer in model.iteration(item.loop):
                if outer.node is event.node and outer.subject == item.subject:
                    return event.subject
    return None
