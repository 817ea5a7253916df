"""An example trainlint rule pack (see README, "Writing a rule pack")."""

from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Role, TrainingModel
from trainlint.rule import Violation


class SgdWithoutMomentum(Rule):
    """An SGD optimizer built without momentum.

    ## What it does
    Flags `torch.optim.SGD(...)` however it was imported (`optim.SGD`, `from torch.optim
    import SGD as S`) when no momentum is given.

    ## Why is this bad?
    Our team's convention: plain SGD converges too slowly on our models.

    ## Example
    ```python
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ```

    ## Use instead
    ```python
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ```
    """

    code = "XYZ001"
    name = "sgd-without-momentum"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("SGD",)  # files that never mention SGD are skipped before parsing
    summary = "An SGD optimizer is built without momentum."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for site in model.calls:
            value = model.value_of(site.node, site.scope)  # resolved through the imports
            if value is None or value.role is not Role.OPTIMIZER or value.short_kind != "SGD":
                continue
            positional = [a for a in site.node.args if a.keyword is None and not a.star]
            if "momentum" not in value.options and len(positional) < 3:
                yield Violation(
                    site.node,
                    f"`{site.dotted}(...)` has no momentum",
                    Fix("pass momentum", "momentum=0.9"),
                )
