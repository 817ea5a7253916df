from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.rule import Violation


class ForwardCalledDirectly(Rule):
    """`model.forward(x)` called directly instead of `model(x)`.

    ## What it does
    Flags calls of `.forward(...)` on any receiver other than `self` or `super()`.

    ## Why is this bad?
    `nn.Module.__call__` runs the forward pre-hooks and hooks around `forward`: DDP's
    gradient synchronisation, FSDP's parameter gathering, `torch.compile` wrappers,
    quantization observers, `register_forward_hook` probes. Calling `forward` skips them,
    which silently breaks distributed training and instrumentation.

    ## Example
    ```python
    logits = model.forward(images)
    ```

    ## Use instead
    ```python
    logits = model(images)
    ```
    """

    code = "TL504"
    name = "forward-called-directly"
    severity = Severity.INFO
    frameworks = ("torch",)
    triggers = (".forward(",)
    summary = "`module.forward(x)` skips the module's hooks; call `module(x)`."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        for site in model.calls:
            func = site.node.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "forward"):
                continue
            receiver = func.value
            if isinstance(receiver, cst.Name) and receiver.value in ("self", "cls"):
                continue
            if isinstance(receiver, cst.Call) and getattr(receiver.func, "value", None) == "super":
                continue
            text = model.module.code_for_node(receiver)
            arguments = ", ".join(
                model.module.code_for_node(a).rstrip(", ") for a in site.node.args
            )
            yield Violation(
                site.node,
                f"`{text}.forward(...)` bypasses the module's hooks (DDP, FSDP, compile, hooks)",
                Fix("call the module itself", f"{text}({arguments})"),
            )
