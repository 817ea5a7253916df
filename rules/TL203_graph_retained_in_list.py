from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.dataflow.lossflow import Reduction
from trainlint.model.dataflow.retention import RetainedAppend
from trainlint.model.syntax.nodes import contains, method_call
from trainlint.rule import Violation
from trainlint.slicing import ACCUMULATING_LOOP, IMPORTS_TORCH, loop_calling


class GraphRetainedInList(Rule):
    """A tensor still attached to the autograd graph is appended to a list in a loop.

    ## What it does
    Flags `xs.append(v)`, `xs.extend([v, ...])` and `xs += [v]` in a loop that runs with
    gradients enabled, when `v` is a graph tensor (a loss, a model output, arithmetic and
    indexing on these, followed through assignments and same-file helpers) and the list
    lives through the loop's iterations (made before the loop, an attribute, or a list a
    helper was given). Values moved with `.cpu()` alone are reported as information: the
    tensor is on the CPU but still holds its graph.

    Stays silent when the list is later back-propagated (the REINFORCE `saved_log_probs`
    stacked or summed into the policy loss, also when the appends are written
    `self.saved_log_probs` and the loss reads `policy.saved_log_probs`), fed to a model, or
    returned (the caller may build a loss from it); when the value was converted first
    (`.item()`, `.detach()`, `.detach().cpu()`, `.cpu().numpy()`, `.tolist()`); when the
    append runs under `torch.no_grad()` / `inference_mode()` (also through a decorator or
    the caller); and when the list is made afresh in the same iteration.

    ## Why is this bad?
    A graph tensor references the autograd graph that produced it, and with it every
    activation the forward pass saved for backward. Keeping one per iteration in a list
    keeps all those graphs alive: memory grows with every batch until the list goes away,
    typically ending in an out-of-memory error halfway through an epoch or an evaluation.

    ## Example
    ```python
    losses = []
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss)
    ```

    ## Use instead
    ```python
    losses = []
    for x, y in loader:
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    ```
    """

    code = "TL203"
    name = "graph-retained-in-list"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("torch",)
    # its findings are in a loop's iteration (or a helper it calls)
    block_triggers = (IMPORTS_TORCH, ACCUMULATING_LOOP, loop_calling("append", "extend", "insert"))
    summary = "A graph tensor is appended to a list on every iteration, keeping each graph alive."
    # unsafe: the list then holds numbers or detached tensors, which code after the loop
    # might not expect (a later ``torch.stack(xs).backward()`` trainlint could not see)
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        for retained in model.retained_appends:
            if not model.line_of(retained.event.node):
                continue  # another module's code, seen through a stub
            yield _violation(model, retained)


def _violation(model: TrainingModel, retained: RetainedAppend) -> Violation:
    code = model.text_of
    event = retained.event
    value = retained.value
    shown = code(value).strip()
    scalar = _is_scalar_loss(model, retained)
    simple = isinstance(value, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
    wrapped = shown if simple else f"({shown})"
    # ``.detach()`` keeps the device, so code after the loop (``torch.cat(xs) == labels``)
    # still runs; moving to the CPU as well is left to the reader (the message says so)
    converted = f"{wrapped}.item()" if scalar else f"{wrapped}.detach()"
    called = method_call(value)
    if retained.kept_on_cpu and called is not None:  # ``out.cpu()``: detach before moving
        converted = f"{code(called[0]).strip()}.detach().cpu()"
    where = f"the loop at line {model.line_of(retained.loop.node)}"
    origin = retained.fact.origin
    source = ""
    if isinstance(origin, cst.Call) and model.line_of(origin):
        source = f" (made by `{_short(code(origin.func))}(...)` at line {model.line_of(origin)})"
    if retained.kept_on_cpu:
        message = (
            f"`{_short(code(event.node))}` moves `{_short(shown)}` to the CPU but keeps its "
            f"autograd graph{source}: `{retained.name}` holds one graph per iteration of "
            f"{where}, and each keeps the activations it saved on the device; detach first"
        )
    else:
        message = (
            f"`{_short(code(event.node))}` keeps `{_short(shown)}`, still attached to the "
            f"autograd graph{source}, in `{retained.name}` on every iteration of {where}, and "
            f"`{retained.name}` is never back-propagated: every iteration's graph stays alive, "
            f"so memory grows with each one"
        )
    # only an append written in the loop itself is edited: a helper's is shared by its callers
    edits = (Edit(value, converted),) if not event.via and contains(event.node, value) else ()
    return Violation(
        event.node,
        message,
        Fix(
            "append a python number or a detached tensor (`.detach().cpu()` also frees the "
            "device memory)",
            converted,
            edits,
            Applicability.UNSAFE if edits else Applicability.DISPLAY,
        ),
        severity=Severity.INFO if retained.kept_on_cpu else None,
    )


def _is_scalar_loss(model: TrainingModel, retained: RetainedAppend) -> bool:
    flow = model.dataflow
    event = retained.event
    reduction = flow.reduction(retained.value, event.scope, flow.order(event.node))
    if reduction in (Reduction.MEAN, Reduction.SUM):
        return True
    origin = retained.fact.origin
    return isinstance(origin, cst.Call) and flow.criterion_of_call(origin, event.scope) is not None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
