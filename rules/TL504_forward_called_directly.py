from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import dotted
from trainlint.rule import Violation
from trainlint.slicing import IMPORTS_TORCH


class ForwardCalledDirectly(Rule):
    """`model.forward(x)` called directly instead of `model(x)`.

    ## What it does
    Flags calls of `.forward(...)` on a receiver known to be a torch module: an instance of a
    same-file `nn.Module` subclass (or of one defined in another module of the project, read
    from its summary, also when its own base class lives in a third module), a `torch.nn`
    constructor's or a model factory's result
    (`timm.create_model`, `torchvision.models`, `from_pretrained`), a wrapper of one, a value
    annotated `nn.Module` or checked with `isinstance(x, nn.Module)`, an element of an
    `nn.ModuleList`, or a value used as only a module can be (`x.parameters()`, `x.eval()`,
    `DDP(x)`) that nothing visible made as something else.
    Silent on `self`/`super()`, compiled extensions (`fused_softmax_cuda.forward(...)`),
    `torch.autograd.Function`s, other libraries' objects with a `forward` (OpenCV, ONNX
    Runtime), plain classes and Protocols with their own `forward`, and names alone: a
    parameter called `model` may be anything.

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

    The fix (safe, applied by `--fix`) replaces `model.forward` with `model`, keeping the
    arguments as written.
    """

    code = "TL504"
    name = "forward-called-directly"
    severity = Severity.INFO
    frameworks = ("torch",)
    triggers = (".forward(",)
    block_triggers = (*triggers, IMPORTS_TORCH)
    summary = "`module.forward(x)` skips the module's hooks; call `module(x)`."
    fix_availability = "always"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        for site in model.calls:
            func = site.node.func
            if not (isinstance(func, cst.Attribute) and func.attr.value == "forward"):
                continue
            receiver = func.value
            if dotted(receiver) in ("self", "cls") or _is_super(receiver):
                continue
            first = site.node.args[0] if site.node.args else None
            if first is not None and first.keyword is None and dotted(first.value) == "self":
                continue  # ``Base.forward(self, x)``, a helper handed the calling module
            if not model.is_known_module(receiver, site.scope):
                continue  # extensions, plain classes, other libraries, bare names
            text = model.text_of(receiver)
            yield Violation(
                site.node,
                f"`{text}.forward(...)` bypasses the module's hooks (DDP, FSDP, compile, hooks)",
                Fix(
                    "call the module itself",
                    f"{text}({_arguments(model, site.node)})",
                    (Edit(func, text),),
                    Applicability.SAFE,
                ),
            )


def _is_super(receiver: cst.BaseExpression) -> bool:
    return isinstance(receiver, cst.Call) and dotted(receiver.func) == "super"


def _arguments(model: TrainingModel, call: cst.Call) -> str:
    return ", ".join(model.text_of(a).rstrip(", ") for a in call.args)
