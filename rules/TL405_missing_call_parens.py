from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.rule import Violation

_METHODS = {"zero_grad", "step", "backward", "eval", "train", "detach_", "requires_grad_"}


class MissingCallParens(Rule):
    """A training method named but never called: `optimizer.step` without `()`.

    ## What it does
    Flags an expression statement that is a bare attribute ending in `zero_grad`, `step`,
    `backward`, `eval`, `train`, `detach_` or `requires_grad_`.

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
    summary = "A training method is named but not called (`optimizer.zero_grad` without `()`)."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for statement, _scope in model.expression_statements:
            value = statement.value
            if isinstance(value, cst.Attribute) and value.attr.value in _METHODS:
                text = model.module.code_for_node(value)
                yield Violation(
                    statement,
                    f"`{text}` names the method but never calls it, so nothing happens",
                    Fix("add the call parentheses", f"{text}()"),
                )
