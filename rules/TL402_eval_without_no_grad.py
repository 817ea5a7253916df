from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.edits import insert_before, wrap_in_block
from trainlint.model import TrainingModel
from trainlint.model.loops.modes import torch_forwards
from trainlint.model.loops.regions import EvalRegion, RegionKind
from trainlint.model.syntax.nodes import dotted
from trainlint.rule import Violation
from trainlint.slicing import EVAL_FUNCTION, EVAL_LOOP, TRAIN_LOOP

#: Evaluation that differentiates on purpose: saliency maps, adversarial examples.
_NEEDS_GRAD = re.compile(r"requires_grad|enable_grad|\.grad\b|autograd|\bgrad\(")
_WRAPPING_DECORATORS = ("staticmethod", "classmethod", "property")
#: The pre-0.4 spelling of "no graph": since PyTorch 0.4 it only warns and records the graph.
_VOLATILE = re.compile(r"\bvolatile\s*=\s*True\b")


class EvalWithoutNoGrad(Rule):
    """A model is evaluated with gradients enabled.

    ## What it does
    Flags the first model call of an evaluation region (a loop over a loader named like
    `val`/`test`/`eval`/`dev`, a function named like `validate`/`evaluate`/`test`/`predict`,
    or model calls after the epoch's training loop, none of them running a backward) that
    runs outside `torch.no_grad()`, `torch.inference_mode()` and `set_grad_enabled(False)`:
    as a `with` block, a decorator, a `torch.set_grad_enabled(False)` statement before it, or
    around every same-file call of the function (a function only other modules of the project
    call: around each of their calls).

    Legacy `Variable(x, volatile=True)` does not count: since PyTorch 0.4 it is ignored (with
    a warning) and the graph is recorded; the message says so.

    Silent on evaluation that needs autograd (`torch.autograd.grad` with respect to the
    inputs, `requires_grad_()` on them, `torch.enable_grad()`: saliency maps, adversarial
    attacks), Lightning and HF Trainer evaluation (the framework disables gradients), and
    methods of the `nn.Module` itself.

    ## Why is this bad?
    With gradients enabled every forward pass records an autograd graph and keeps every
    intermediate activation alive for a backward that never comes: evaluation uses several
    times the memory it needs (often running out of memory on the larger validation
    batches) and runs slower. Results kept from it (`outputs.append(model(x))`) keep their
    graphs alive too.

    ## Example
    ```python
    model.eval()
    for x, y in val_loader:
        correct += (model(x).argmax(1) == y).sum().item()
    ```

    ## Use instead
    ```python
    model.eval()
    with torch.inference_mode():
        for x, y in val_loader:
            correct += (model(x).argmax(1) == y).sum().item()
    ```
    """

    code = "TL402"
    name = "eval-without-no-grad"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("torch",)
    # an evaluation-named function, a loop over an eval loader, or code after a train step
    block_triggers = (EVAL_FUNCTION, EVAL_LOOP, TRAIN_LOOP)
    summary = "An evaluation loop or function runs the model with gradients enabled."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        modes = model.modes
        for region in model.eval_regions:
            if region.needs_gradients or _differentiates(model, region):
                continue
            for event in torch_forwards(model, region.events):
                if modes.grad_disabled(region.scope, event, region.node, other_modules=True):
                    continue
                yield Violation(
                    event.node,
                    f"{region.describe(model)} calls `{model.text_of(event.node)}` with "
                    "gradients enabled: every forward records an autograd graph and keeps its "
                    "activations alive for a backward that never runs (memory and time)"
                    f"{_volatile_note(model, region)}",
                    _fix(model, region),
                )
                break


def _differentiates(model: TrainingModel, region: EvalRegion) -> bool:
    return model.source_mentions([region.node, *(e.scope.node for e in region.events)], _NEEDS_GRAD)


def _volatile_note(model: TrainingModel, region: EvalRegion) -> str:
    if _VOLATILE.search(model.text_of(region.node)):
        return "; `Variable(..., volatile=True)` has had no effect since PyTorch 0.4"
    return ""


def _no_grad_name(model: TrainingModel) -> str | None:
    """How this file can spell ``torch.no_grad()``."""
    for local, qualified in model.imports.local_names().items():
        if qualified == "torch":
            return f"{local}.no_grad()"
    for local, qualified in model.imports.local_names().items():
        if qualified in ("torch.no_grad", "torch.inference_mode"):
            return f"{local}()"
    return None


def _fix(model: TrainingModel, region: EvalRegion) -> Fix:
    description = "run it under `torch.no_grad()` (or `torch.inference_mode()`)"
    spelled = _no_grad_name(model)
    if spelled is None:
        return Fix(description)
    edits = None
    if region.kind is RegionKind.LOADER:
        edits = wrap_in_block(model, region.node, f"with {spelled}:")
        replacement = f"with {spelled}:"
    elif region.kind is RegionKind.FUNCTION and isinstance(region.node, cst.FunctionDef):
        names = {dotted(d.decorator) for d in region.node.decorators}
        if not names & set(_WRAPPING_DECORATORS):
            found = insert_before(model, region.node, f"@{spelled}")
            edits = (found,) if found is not None else None
        replacement = f"@{spelled}"
    if not edits:
        return Fix(description)
    return Fix(description, replacement, edits, Applicability.UNSAFE)
