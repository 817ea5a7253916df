from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import EventKind, TrainingModel
from trainlint.model.dataflow.batches import batching
from trainlint.model.dataflow.graph import Holds
from trainlint.model.dataflow.lossflow import Reduction
from trainlint.model.dataflow.provenance import parameter_update
from trainlint.model.syntax.nodes import contains, dotted
from trainlint.rule import Violation
from trainlint.slicing import ACCUMULATING_LOOP, IMPORTS_TORCH, loop_calling


class LossAccumulatedWithoutItem(Rule):
    """A loss tensor is added to a running total without `.item()`.

    ## What it does
    Flags `total += loss`, `total = total + loss` and `totals[key] += loss` inside a loop
    when `loss` is still attached to the autograd graph: a criterion or loss call
    (`F.cross_entropy`, a criterion instance, `outputs.loss`), a model's forward
    (`model(x)`, `model.forward(x)`, `self(x)` in an `nn.Module`), or arithmetic and
    indexing on these, followed through assignments and same-file helpers; a value that is
    later passed to `.backward()` counts as such whatever made it. Also flags the same
    accumulation done by a same-file object or helper: `meter.update(loss)` where
    `AverageMeter.update` does `self.sum += val * n`, a tracker method adding a dict of
    losses into `self.totals`, or `add_losses(totals, loss_dict)` doing `totals[k] += v`;
    the call in the loop is reported.

    Stays silent when the value was converted first (`.item()`, `float()`, `.detach()`,
    `.cpu().numpy()`, `.tolist()`), when it was made with gradients disabled (inside a
    `torch.no_grad()` / `inference_mode()` / `set_grad_enabled(False)` block, also one that
    has closed, or returned by a function decorated with them), on strings
    (`tokenizer.decode(...)`, f-strings), on other methods of a model-like object
    (`engine.train_micro_batch_size_per_gpu()`), on in-place parameter updates
    (`w -= lr * w.grad`), when the total is itself back-propagated later (several losses
    summed on purpose), fed back into the model, or returned by a loss-building helper, and
    on `update()` of objects whose class is not in the file. When the accumulation itself
    runs under `torch.no_grad()`, no graph is kept, so the finding is only informational.

    ## Why is this bad?
    `total += loss` makes `total` a tensor whose graph reaches back through every batch's
    forward pass. None of those graphs can be freed while `total` lives, so GPU memory
    grows with every iteration until the epoch ends (or the process runs out of memory),
    and the "number" you print is a tensor that forces a device sync each time it is read.

    ## Example
    ```python
    running_loss = 0.0
    for inputs, targets in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        running_loss += loss
    ```

    ## Use instead
    ```python
    running_loss = 0.0
    for inputs, targets in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    ```
    """

    code = "TL201"
    name = "loss-accumulated-without-item"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("torch",)
    # its findings are in a loop's iteration (or a helper it calls)
    block_triggers = (IMPORTS_TORCH, ACCUMULATING_LOOP, loop_calling("update", "add", "add_"))
    summary = "A graph-attached loss is summed into a running total (`total += loss`)."
    # unsafe: the total becomes a python float, which code after the loop may not expect
    # (``total.backward()`` elsewhere, ``total.cpu()``, logging a tensor)
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        flow = model.dataflow
        seen: set[tuple[int, str]] = set()
        for loop in model.loops:
            for event in model.iteration(loop):
                # an inlined helper's statement once per call of it (``a.update(x)``, ``b...``)
                key = (id(event.node), event.subject or "")
                if event.kind is not EventKind.ACCUMULATE or key in seen:
                    continue
                name = _accumulator(event.node)
                if name is None or not _outlives_call(event, name, loop):
                    continue  # a helper's local total starts afresh on every call
                if event.via and any(
                    inner.scope is event.scope and _over_data(model, inner) for inner in event.loops
                ):
                    continue  # the helper's own batch loop reports it (``fit()`` in a loop)
                if flow.restarted_before(name, event.node):
                    continue  # ``loss = a; loss = loss + b``: one iteration's sum
                if parameter_update(flow, event.node, event.scope):
                    continue  # ``w -= lr * w.grad``: a hand-written optimizer step
                before = model.order_of(event.node)
                fact = flow.fact_through(event.operand, event.scope, before, event.via)
                disabled = flow.grad_disabled(event.node, *event.via, loop.node)
                # made under ``no_grad`` and accumulated outside it: no graph, as ``.detach()``
                if fact.holds is not Holds.GRAPH and not (fact.no_grad and disabled):
                    continue
                uses = flow.uses(name, event.scope)
                if uses.backward or uses.model_input:
                    continue
                innermost = event.loops[-1] if event.loops else loop
                if not event.via and name in event.scope.params and not _over_data(model, loop):
                    continue  # a helper adding into its argument: reported at its callers
                if (
                    uses.returned
                    and not disabled
                    and not (
                        flow.runs_backward(event.scope)
                        or _over_data(model, innermost)
                        or _over_data(model, _caller_loop(event, loop))
                    )
                ):
                    continue  # a helper that builds a loss from several terms
                seen.add(key)
                yield self._violation(
                    model, event, name, fact.origin, innermost, disabled, _caller_loop(event, loop)
                )

    def _call_violation(self, model, event, name, loop, disabled: bool) -> Violation:
        code = model.module.code_for_node
        call = event.via[0]
        shown = code(call).strip()
        total = event.subject
        helper = code(event.node).strip()
        where = f"the loop at line {model.line_of(loop.node)}"
        scope = _caller_scope(model, call, event.scope)
        graphs = _graph_arguments(model, call, scope)
        added = model.operand_arguments(event, call, scope)
        # ``epoch_loss = accumulate(epoch_loss, loss)``: the total passed back in is a graph
        # too, but what the helper adds is ``loss``, the argument its operand is made from
        graphs = [g for g in graphs if any(g is a for a in added)] or graphs
        fixed = _converted_call(model, call, graphs, scope)
        passed = f"`{code(graphs[0]).strip()}`" if graphs else "a tensor attached to the graph"
        if disabled:
            message = (
                f"`{shown}` runs with gradients disabled, so no graph is kept, but it adds "
                f"{passed} into `{total}` (`{helper}`, {model.where(event.node)}), which "
                f"becomes a tensor instead of a number; pass a python number"
            )
        else:
            message = (
                f"`{shown}` adds {passed}, still attached to the autograd graph, into `{total}` "
                f"(`{helper}`, {model.where(event.node)}) on every iteration of {where}: "
                f"each batch's graph stays alive as long as `{total}`, so memory grows with "
                f"every batch"
            )
        plain = [g for g in graphs if not isinstance(g, cst.Dict)]
        edits = tuple(Edit(g, _item_text(model, g)) for g in plain) if plain == graphs else ()
        return Violation(
            event.via[0],
            message,
            _fix("pass a python number", fixed, edits),
            severity=Severity.INFO if disabled else None,
        )

    def _violation(self, model, event, name, origin, loop, disabled: bool, outer=None) -> Violation:
        code = model.module.code_for_node
        statement = code(event.node).strip()
        operand = event.operand
        added = code(operand).strip()
        flow = model.dataflow
        scalar = flow.reduction(operand, event.scope, model.order_of(event.node)) in (
            Reduction.MEAN,
            Reduction.SUM,
        ) or _is_loss_origin(model, origin, event.scope)
        simple = isinstance(operand, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
        wrapped = added if simple else f"({added})"
        converted = f"{wrapped}.item()" if scalar else f"{wrapped}.detach()"
        fixed = _with_operand(event.node, operand, converted) or converted
        anchor = event.node
        root = name.split(".", 1)[0]
        if (
            event.via
            and event.subject
            and (root in event.scope.params or event.subject.split(".", 1)[0] != root)
        ):
            # ``meter.update(loss)``: report the call in the loop, not the helper's line
            return self._call_violation(model, event, name, outer, disabled)
        source = ""
        if origin is not None and isinstance(origin, cst.Call):
            source = f" (it comes from `{code(origin.func).strip()}(...)` at line "
            source += f"{model.line_of(origin)})"
        where = f"the loop at line {model.line_of(loop.node)}"
        if disabled:
            message = (
                f"`{statement}` runs with gradients disabled, so no graph is kept, but `{name}` "
                f"becomes a tensor instead of a number: every print or comparison of it waits "
                f"for the device; accumulate `{converted}`"
            )
        else:
            message = (
                f"`{statement}` adds `{added}`, which is still attached to the autograd graph"
                f"{source}, to `{name}` on every iteration of {where}: each batch's graph stays "
                f"alive as long as `{name}`, so memory grows with every batch and `{name}` "
                f"ends up a tensor, not a number"
            )
        # only an accumulation written in the loop itself is edited: a helper's statement is
        # shared by every caller, and its callers may pass numbers
        in_loop = not event.via and contains(event.node, operand)
        edits = (Edit(operand, converted),) if in_loop else ()
        return Violation(
            anchor,
            message,
            _fix("accumulate a python number", fixed, edits),
            severity=Severity.INFO if disabled else None,
        )


def _converted_call(model: TrainingModel, call: cst.Call, graphs, scope) -> str:
    """``call`` as text with each graph argument converted (``loss`` -> ``loss.item()``, and
    each graph value of a dict argument)."""
    code = model.module.code_for_node

    def item(expr: cst.BaseExpression) -> str:
        return _item_text(model, expr)

    parts = []
    for arg in call.args:
        value = arg.value
        text = code(value).strip()
        if any(value is g for g in graphs):
            if isinstance(value, cst.Dict):
                items = [
                    f"{code(e.key).strip()}: "
                    + (item(e.value) if model.dataflow.is_graph(e.value, scope) else code(e.value))
                    for e in value.elements
                    if isinstance(e, cst.DictElement)
                ]
                text = "{" + ", ".join(items) + "}"
            else:
                text = item(value)
        prefix = f"{arg.keyword.value}=" if arg.keyword is not None else arg.star
        parts.append(prefix + text)
    return f"{code(call.func).strip()}({', '.join(parts)})"


def _item_text(model: TrainingModel, expr: cst.BaseExpression) -> str:
    text = model.module.code_for_node(expr).strip()
    simple = isinstance(expr, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
    return f"{text}.item()" if simple else f"({text}).item()"


def _fix(description: str, replacement: str, edits: tuple[Edit, ...]) -> Fix:
    applicability = Applicability.UNSAFE if edits else Applicability.DISPLAY
    return Fix(description, replacement, edits, applicability)


def _graph_arguments(model: TrainingModel, call: cst.Call, scope) -> list[cst.BaseExpression]:
    """The arguments of ``call`` that hold a graph (what the fix converts)."""
    flow = model.dataflow
    order = flow.order(call)
    return [a.value for a in call.args if flow.is_graph(a.value, scope, order)]


def _outlives_call(event, name: str, loop) -> bool:
    """Whether the total an inlined helper adds into lives on in the caller's loop: an
    attribute (``self.sum`` of ``meter.update``) or the caller's object passed as an argument
    (``add_losses(totals, d)`` doing ``totals[k] += v``); a helper's own local restarts."""
    if not event.via:
        return True
    root = name.split(".", 1)[0]
    return event.subject is not None and (root == "self" or root in event.scope.params)


def _caller_loop(event, loop):
    """The innermost loop around the call that inlined ``event`` (not the helper's own)."""
    if not event.via:
        return loop
    caller = [inner for inner in event.loops if inner.scope is not event.scope]
    return caller[-1] if caller else loop


def _caller_scope(model: TrainingModel, call: cst.Call, fallback):
    site = model.dataflow.call_sites().get(id(call))
    return site[0] if site is not None else fallback


def _over_data(model: TrainingModel, loop) -> bool:
    """Whether ``loop`` walks over data batches: a loader or tf.data pipeline, or slices
    (``range(0, n, size)``) fed to a model. A loop over slices that calls no model, such as
    a chunked cross-entropy summing ``F.cross_entropy`` of each chunk, builds one loss."""
    batches = batching(model.dataflow, loop)
    if batches is None:
        return False
    if batches.kind != "range":
        return True
    return any(e.kind is EventKind.FORWARD for e in model.iteration(loop))


def _accumulator(node: cst.CSTNode) -> str | None:
    if isinstance(node, cst.AugAssign):
        target = node.target
    elif isinstance(node, cst.Assign) and node.targets:
        target = node.targets[0].target
    else:
        return None
    if isinstance(target, cst.Subscript):
        target = target.value
    return dotted(target)


def _with_operand(statement: cst.CSTNode, operand, converted: str) -> str | None:
    """``statement`` with ``operand`` replaced by ``converted`` (not by text: in
    ``running_loss += loss`` the first ``loss`` is part of the accumulator's name)."""
    try:
        replacement = cst.parse_expression(converted)
        changed = statement.deep_replace(operand, replacement)
    except (cst.ParserSyntaxError, TypeError, ValueError):
        return None
    if not isinstance(changed, cst.CSTNode):
        return None
    return cst.Module([]).code_for_node(changed).strip()


def _is_loss_origin(model: TrainingModel, origin, scope) -> bool:
    if not isinstance(origin, cst.Call):
        return False
    return model.dataflow.criterion_of_call(origin, scope) is not None
