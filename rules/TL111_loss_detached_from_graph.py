from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.dataflow.detachment import DetachedBackward
from trainlint.rule import Violation
from trainlint.slicing import IMPORTS_TORCH

_FIX = Fix(
    "keep the graph from the model output to the loss: compute the loss from the tensors the "
    "model returned (no `.item()`, `.detach()`, `.data`, `.numpy()`, `torch.tensor(...)` or "
    "`argmax` on the way) and drop the `requires_grad` that hid the error"
)


class LossDetachedFromGraph(Rule):
    """The loss handed to `backward()` has been cut off from the model.

    ## What it does
    Follows the target of each backward of a train step (a loop, or a function, that calls
    backward and an optimizer step) back to where it was made, through assignments,
    arithmetic, torch functions and tensor methods, criterion and functional-loss calls,
    lists filled by `append`, and the returns of same-file helpers. Flags it when every path
    from the model's output is cut on the way: by `.item()`, `.detach()`, `.data`,
    `.numpy()`, `.tolist()`, `float()`, `torch.tensor(...)` / `torch.Tensor(...)` /
    `torch.from_numpy(...)`, `argmax` (or the indices of `max(dim)`), a comparison, a NumPy
    function, or a forward run under `torch.no_grad()`. When `requires_grad` was switched
    back on for the cut value (`loss.requires_grad = True`, `loss.requires_grad_()`,
    `torch.tensor(loss.item(), requires_grad=True)`, `Variable(..., requires_grad=True)`),
    that line is reported, since it is what hides the problem; otherwise the cut is.

    Stays silent when some operand still carries the graph: a stop-gradient on one operand
    only (the target of a DQN or BYOL loss, `fake.detach()` fed to a discriminator), on
    `requires_grad_()` on inputs (saliency maps, adversarial examples), on hand-written
    weights (`torch.zeros(..., requires_grad=True)`, `nn.Parameter`), and whenever a path
    runs through code it cannot read (another module's function, an attribute set
    elsewhere).

    ## Why is this bad?
    `.item()`, `.detach()`, `.numpy()` and `torch.tensor(...)` return values with no history:
    a loss rebuilt from them is a new leaf, not a function of the weights. Backward then
    either fails with "element 0 of tensors does not require grad", or, once
    `requires_grad=True` is forced onto the loss to silence that, runs and computes a
    gradient for the loss alone. Every parameter's `.grad` stays `None`, `optimizer.step()`
    does nothing, and the model never trains while the loop looks healthy.

    ## Example
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss = torch.tensor(loss.item(), requires_grad=True)
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    """

    code = "TL111"
    name = "loss-detached-from-graph"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("backward",)
    block_triggers = (*triggers, IMPORTS_TORCH)
    summary = "The backward target was cut from the model's graph (`.item()`, `.detach()`, ...)."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        reported: set[int] = set()
        for detached in model.graph_cuts.detached_backwards():
            anchor = detached.trace.anchor
            if anchor is None or id(anchor) in reported or not model.line_of(anchor):
                continue  # a stub's node (another module's code) has no line here
            reported.add(id(anchor))
            yield Violation(anchor, _message(model, detached, anchor), _FIX)


def _message(model: TrainingModel, detached: DetachedBackward, anchor: cst.CSTNode) -> str:
    code = model.text_of
    event = detached.event
    target = code(event.operand).strip()
    backward = code(event.node).strip()
    trace = detached.trace
    cut = trace.cuts[0] if trace.cuts else None
    cut_text = _short(code(cut)) if cut is not None else ""
    if cut is not None and not isinstance(cut, cst.BaseExpression):
        cut_text += "` under `no_grad"  # a forward run with gradients disabled
    if trace.forced:
        return (
            f"`{_short(code(anchor))}` makes a leaf that requires grad out of a value already "
            f"cut from the model's graph (`{cut_text}`, {model.where(cut)}): `{backward}` "
            f"({model.where(event.node)}) runs, but no gradient reaches the parameters, so "
            f"the optimizer step changes nothing"
        )
    return (
        f"`{cut_text}` cuts the model's output from the graph, and every path to `{target}` "
        f"goes through it: `{backward}` ({model.where(event.node)}) reaches no parameter "
        f"(it fails with 'does not require grad', or trains nothing)"
    )


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 70 else text[:67] + "..."
