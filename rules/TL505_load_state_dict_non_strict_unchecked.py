from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.edits import append_lines
from trainlint.model import Role, TrainingModel, UnusedResult
from trainlint.model.syntax.nodes import argument, literal
from trainlint.model.syntax.scopes import Scope
from trainlint.rule import TextEdit, Violation

#: Objects whose ``load_state_dict`` has no ``strict`` flag and returns nothing to check.
_NOT_MODULES = {Role.OPTIMIZER, Role.SCHEDULER, Role.SCALER, Role.LOADER, Role.DATASET}
_NAMES = ("missing_keys", "unexpected_keys")


class LoadStateDictNonStrictUnchecked(Rule):
    """`load_state_dict(..., strict=False)` whose report of mismatched keys is thrown away.

    ## What it does
    Flags a call `x.load_state_dict(state, strict=False)` (also `strict` passed
    positionally) whose result is discarded: the call is a statement of its own, or its
    result is bound to names that nothing reads afterwards.

    Stays silent when the result is kept and read (`msg = m.load_state_dict(...)` then
    `print(msg)`, `missing, unexpected = ...` then a check, `return m.load_state_dict(...)`),
    assigned to `_` (a deliberate discard), on a notebook cell's last line (Jupyter displays
    the result under the cell), when `strict` is not literally `False`, on objects whose
    `load_state_dict` takes no `strict` (optimizers, schedulers, grad scalers), and on
    instances of classes that override `load_state_dict` with a method that returns nothing,
    and on state dicts filtered to the module's own keys first
    (`{k: v for k, v in ckpt.items() if k in model.state_dict()}`): a partial load whose
    keys the code matched itself, or copied from another live module
    (`encoder.load_state_dict(decoder.state_dict(), strict=False)`): the two architectures
    in the code decide which keys match, and sharing the common layers is the point.

    ## Why is this bad?
    With `strict=False`, `load_state_dict` no longer raises when the checkpoint's keys do
    not match the model's: it loads what matches and returns the rest as
    `missing_keys`/`unexpected_keys`. If nobody looks at them, a renamed layer, a
    `module.` prefix left by DataParallel or a checkpoint of another architecture loads
    nothing at all, and training silently starts from random weights.

    ## Example
    ```python
    model.load_state_dict(torch.load("backbone.pt"), strict=False)
    ```

    ## Use instead
    ```python
    missing_keys, unexpected_keys = model.load_state_dict(torch.load("backbone.pt"), strict=False)
    if missing_keys or unexpected_keys:
        print(f"missing keys: {missing_keys}, unexpected keys: {unexpected_keys}")
    ```

    The fix (unsafe: it adds output, and a custom `load_state_dict` elsewhere may not return
    the keys) captures the result and reports mismatched keys as above; for a result bound
    to names nobody reads it adds the check of those names.
    """

    code = "TL505"
    name = "load-state-dict-non-strict-unchecked"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("load_state_dict",)
    block_triggers = triggers
    summary = "`load_state_dict(..., strict=False)` whose missing/unexpected keys nobody checks."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for site in model.calls:
            call = site.node
            func = call.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "load_state_dict"):
                continue
            if literal(argument(call, 1, "strict"), None) is not False:
                continue
            receiver = func.value
            if model.role_of(receiver, site.scope) in _NOT_MODULES:
                continue
            if model.own_method_returns_nothing(receiver, site.scope, "load_state_dict"):
                continue  # a wrapper's override: there is no result to capture
            state = argument(call, 0, "state_dict")
            if model.matched_to_own_keys(state, receiver, site.scope):
                continue  # filtered to the module's keys: a partial load done on purpose
            if model.copied_from_module(state, receiver, site.scope):
                continue  # ``enc.load_state_dict(dec.state_dict(), strict=False)``: on purpose
            discarded = model.unused_result(call, site.scope)
            if discarded is None:
                continue
            yield _violation(model, call, site.scope, discarded)


def _violation(
    model: TrainingModel, call: cst.Call, scope: Scope, discarded: UnusedResult
) -> Violation:
    shown = f"{model.text_of(call.func)}(..., strict=False)"
    if discarded.unread:
        names = ", ".join(f"`{n}`" for n in discarded.unread)
        lost = f"its result is bound to {names}, which nothing reads"
    else:
        lost = "its result is discarded"
    message = (
        f"`{shown}` loads only the keys that match and returns the rest, but {lost}: a "
        f"renamed layer or a `module.` prefix would load nothing and go unnoticed; check "
        f"`missing_keys`/`unexpected_keys`"
    )
    missing, unexpected = _check_names(model, discarded)
    replacement = f"{missing}, {unexpected} = {model.text_of(call)}"
    return Violation(
        call,
        message,
        Fix(
            "capture the result and check the mismatched keys",
            replacement if not discarded.unread else None,
            _edits(model, call, discarded, missing, unexpected),
            Applicability.UNSAFE,
        ),
    )


def _check_names(model: TrainingModel, discarded: UnusedResult) -> tuple[str, str]:
    """The two names the check reads: the unread ones, or new names no code of the file uses."""
    unread = discarded.unread
    if len(unread) == 2:
        return unread[0], unread[1]
    if len(unread) == 1:
        return f"{unread[0]}.missing_keys", f"{unread[0]}.unexpected_keys"
    suffix = ""
    count = 0
    while any(re.search(rf"\b{name}{suffix}\b", model.text) for name in _NAMES):
        count += 1
        suffix = f"_{count}"
    return _NAMES[0] + suffix, _NAMES[1] + suffix


def _edits(
    model: TrainingModel,
    call: cst.Call,
    discarded: UnusedResult,
    missing: str,
    unexpected: str,
) -> tuple[Edit | TextEdit, ...]:
    if discarded.statement is None or len(discarded.unread) > 2:
        return ()
    unit = model.module.default_indent
    check = append_lines(
        model,
        discarded.statement,
        [
            f"if {missing} or {unexpected}:",
            f'{unit}print(f"missing keys: {{{missing}}}, unexpected keys: {{{unexpected}}}")',
        ],
    )
    if check is None:
        return ()
    if discarded.unread:
        return (check,)
    return (Edit(call, f"{missing}, {unexpected} = {model.text_of(call)}"), check)
