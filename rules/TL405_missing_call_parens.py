from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.rule import Violation

_METHODS = {"zero_grad", "step", "backward", "eval", "train", "detach_", "requires_grad_"}
#: Names common enough on other objects (configs, enums) that the receiver must be known to
#: be an optimizer, scheduler, model... before a bare ``x.step`` counts as a forgotten call.
_AMBIGUOUS = {"step", "eval", "train"}


class MissingCallParens(Rule):
    """A training method named but never called: `optimizer.step` without `()`.

    ## What it does
    Flags an expression statement that is a bare attribute ending in `zero_grad`, `step`,
    `backward`, `eval`, `train`, `detach_` or `requires_grad_`. For `step`, `eval` and
    `train`, names common on other objects (`config.train`), the receiver must be known to be
    an optimizer, scheduler, model or similar.

    ## Why is this bad?
    Naming a method does nothing: `optimizer.zero_grad` evaluates to a bound method and
    throws it away. The gradients are never cleared (or the step never taken, or the model
    stays in training mode), and Python raises no error.

    ## Example
    ```python
    optimizer.zero_grad
    loss.backward()
    optimizer.step()
    ```

    ## Use instead
    ```python
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ```
    """

    code = "TL405"
    name = "missing-call-parens"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = tuple(f".{m}" for m in sorted(_METHODS))
    # the method named, not called: no ``(`` after it on its line
    block_triggers = (r"re:\.(?:" + "|".join(sorted(_METHODS)) + r")\b[ \t]*(?:[#;)\]]|$)",)
    summary = "A training method is named but not called (`optimizer.zero_grad` without `()`)."
    fix_availability = "always"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for statement, scope in model.expression_statements:
            value = statement.value
            if not (isinstance(value, cst.Attribute) and value.attr.value in _METHODS):
                continue
            if value.attr.value in _AMBIGUOUS and model.role_of(value.value, scope) is None:
                continue
            text = model.module.code_for_node(value)
            yield Violation(
                statement,
                f"`{text}` names the method but never calls it, so nothing happens",
                Fix(
                    "add the call parentheses",
                    f"{text}()",
                    (Edit(value, f"{text}()"),),
                    Applicability.SAFE,
                ),
            )
