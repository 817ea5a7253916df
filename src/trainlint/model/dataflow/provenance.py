"""Provenance: where a value was made, and what that says about its autograd graph.

A value's graph is decided where it is *made*, not where it is used:

* made inside ``with torch.no_grad()`` / ``torch.inference_mode()`` /
  ``torch.set_grad_enabled(False)``, or returned by a function decorated with them, it carries
  no graph wherever it goes afterwards, also after the ``with`` block has closed;
* only some producers make graph tensors: a model's forward (``model(x)``, ``model.forward(x)``,
  ``self(x)`` in an ``nn.Module``), a loss, and arithmetic or indexing on those. Any other
  method of a model-like object (``engine.train_micro_batch_size_per_gpu()``,
  ``pipe.model.model_times()``) is not known to make one; strings (``tokenizer.decode(...)``,
  ``.strip()``, concatenation with a string, f-strings) never do;
* a frozen model (``backbone.requires_grad_(False)``, nothing unfreezing it) run on values that
  carry no graph themselves makes none either: a feature extractor's outputs are plain tensors;
* a value later passed to ``.backward()`` (``accelerator.backward(x)``,
  ``scaler.scale(x).backward()``) is a graph tensor, whatever made it: evidence by use when the
  producer is unknown.

:class:`~.graph.Dataflow` asks these questions while it computes a :class:`~.graph.Fact`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.facts import (
    NUMBER,
    TENSOR,
    TORCH_NO_GRAPH,
    TUPLE_REDUCTIONS,
    UNKNOWN,
    Fact,
    Holds,
    join,
)
from trainlint.model.dataflow.reductions import FUNCTIONAL_LOSSES
from trainlint.model.loops.frozen import parameters_frozen
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, dotted, method_call, names_in

if TYPE_CHECKING:
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import Binding, Scope
    from trainlint.model.values.roles import Value

#: Methods of a model-like object that run its forward pass (or return a loss from it). Any
#: other method (``num_parameters()``, ``train_micro_batch_size_per_gpu()``, ``generate()``) is
#: not known to return a graph tensor.
FORWARD_METHODS = {"forward", "__call__", "training_step", "validation_step", "compute_loss"}

#: Methods that return strings (or lists of them): a string never carries a graph.
STRING_METHODS = {
    "decode", "batch_decode", "convert_ids_to_tokens", "convert_tokens_to_string", "strip",
    "lstrip", "rstrip", "lower", "upper", "title", "split", "splitlines", "join", "replace",
    "format", "encode_plus", "startswith", "endswith", "capitalize", "zfill", "ljust", "rjust",
}  # fmt: skip


_GRADIENT_NAMES = {"grad", "grads", "gradient", "gradients", "g", "dw", "db", "dW"}


def library_call_fact(
    flow: Dataflow,
    call: cst.Call,
    qualified: str,
    scope: Scope,
    before: int | None,
    index: int | None,
) -> Fact:
    """What a call into numpy / torch / tensorflow makes: numbers, a functional loss (a graph),
    a factory tensor (no graph), or what its tensor arguments carry."""
    root = qualified.partition(".")[0]
    last = qualified.rsplit(".", 1)[-1]
    if root in ("numpy", "math", "statistics"):
        return NUMBER
    if qualified.startswith("torch.nn.functional.") and last in FUNCTIONAL_LOSSES:
        return TENSOR if detached_operands(flow, call, scope, before) else Fact(Holds.GRAPH, call)
    if root == "torch":
        if last in TORCH_NO_GRAPH or (last in TUPLE_REDUCTIONS and index == 1):
            return TENSOR
        return join(*(flow.fact(a.value, scope, before) for a in call.args))
    if root == "tensorflow":
        return join(*(flow.fact(a.value, scope, before) for a in call.args))
    return UNKNOWN


def forward_like(method: str) -> bool:
    """Whether calling ``method`` on a model runs (part of) its forward pass or its loss."""
    return method in FORWARD_METHODS or "loss" in method or method.startswith("encode_")


def is_string(expr: cst.BaseExpression | None) -> bool:
    """A literal string or f-string (``"a" + x`` and ``f"{x}"`` are strings too)."""
    return isinstance(expr, (cst.SimpleString, cst.FormattedString, cst.ConcatenatedString))


def string_operation(expr: cst.BinaryOperation) -> bool:
    """``"prefix" + text`` / ``text + "suffix"`` / ``"%d" % x``: the result is a string."""
    return is_string(expr.left) or is_string(expr.right)


def made_without_graph(flow: Dataflow, statement: cst.CSTNode) -> bool:
    """Whether ``statement`` runs with gradients disabled (a ``no_grad`` block around it, or a
    decorator of its function), so every tensor it makes has no graph."""
    return flow.placement.grad_disabled(statement)


def frozen_forward(flow: Dataflow, call: cst.Call, scope: Scope, before: int | None) -> bool:
    """``backbone(images)`` of a model whose parameters are all frozen, on arguments that carry
    no graph: nothing in it requires gradients, so the output has no graph (a frozen VGG run
    on a generator's output still has one, through its input)."""
    name = dotted(call.func)
    if name is None or not parameters_frozen(flow.model, name):
        return False
    return not any(flow.fact(a.value, scope, before).holds is Holds.GRAPH for a in call.args)


def detached_operands(flow: Dataflow, call: cst.Call, scope: Scope, before: int | None) -> bool:
    """``F.l1_loss(pred.detach(), y)``: a loss of a detached prediction and values with no
    known graph (the batch's targets) has none either; an operand with a graph keeps it."""
    operands = [a.value for a in call.args if a.keyword is None or a.keyword.value != "weight"]
    facts = [flow.fact(v, scope, before) for v in operands]
    if any(f.holds is Holds.GRAPH or f.no_grad for f in facts):
        return False  # a graph, or made under ``no_grad`` (that provenance is told elsewhere)
    return any(_detached(v) for v in operands)  # a factory tensor (``torch.tensor([r])``) is not


def _detached(expr: cst.BaseExpression) -> bool:
    """``pred.detach().cpu()`` / ``out.data``: the operand is cut from its graph as written."""
    for node in (expr, *descendants(expr)):
        called = method_call(node) if isinstance(node, cst.Call) else None
        if called is not None and called[1] == "detach":
            return True
        if isinstance(node, cst.Attribute) and node.attr.value == "data":
            return True
    return False


def detached_criterion_call(
    flow: Dataflow, value: Value, call: cst.Call, scope: Scope, before: int | None
) -> bool:
    """``criterion(pred.detach().cpu(), y.cpu())`` of a torch loss (or a criterion known only
    by its name): no graph. A project's loss class may hold parameters of its own, whose graph
    survives detached operands."""
    library = not value.kind or is_under(value.kind, "torch.nn")
    return library and detached_operands(flow, call, scope, before)


def binding_without_graph(flow: Dataflow, binding: Binding) -> bool:
    """Whether ``binding`` was made with gradients disabled."""
    statement = binding.statement
    if isinstance(statement, cst.WithItem):
        return False
    return made_without_graph(flow, statement)


def return_without_graph(flow: Dataflow, callee: Scope, statement: cst.CSTNode) -> bool:
    """Whether ``callee`` returns from ``statement`` with gradients disabled: decorated with
    ``@torch.no_grad()`` / ``@torch.inference_mode()``, or returning inside such a block."""
    return made_without_graph(flow, statement)


def backward_evidence(flow: Dataflow, name: str, scope: Scope) -> bool:
    """Whether ``name`` is passed to a backward in ``scope`` (``name.backward()``,
    ``accelerator.backward(name)``, ``scaler.scale(name).backward()``): it is a graph tensor."""
    return name in backpropagated(flow, scope)


def backpropagated(flow: Dataflow, scope: Scope) -> frozenset[str]:
    """Names whose value a backward in ``scope`` differentiates. Not the receiver of
    ``engine.backward(loss)`` / ``accelerator.backward(loss)``: with an argument, the argument
    is the tensor; without one (``loss.backward()``), the receiver is."""
    cache = flow.backpropagated
    if id(scope) in cache:
        return cache[id(scope)]
    found: set[str] = set()
    for site in flow.model.calls:
        if site.scope is not scope:
            continue
        call = site.node
        method = method_call(call)
        qualified = site.qualified or ""
        if qualified in ("torch.autograd.backward", "torch.autograd.grad") and call.args:
            found |= _plain_names(call.args[0].value)
            continue
        if method is None or method[1] not in ("backward", "manual_backward"):
            continue
        receiver = method[0]
        arguments = [a.value for a in call.args if a.keyword is None and not a.star]
        if arguments:
            found |= _plain_names(arguments[0])
            continue
        inner = method_call(receiver)
        if inner is not None and inner[1] == "scale" and isinstance(receiver, cst.Call):
            receiver = receiver.args[0].value if receiver.args else receiver
        found |= _plain_names(receiver)
    cache[id(scope)] = frozenset(found)
    return cache[id(scope)]


def _plain_names(expr: cst.BaseExpression) -> set[str]:
    """``loss`` in ``loss``, ``(loss / k)``, ``loss.mean()``: names whose value is the tensor."""
    while isinstance(expr, cst.BinaryOperation):
        expr = expr.left
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        expr = expr.func.value  # ``loss.mean()``, ``loss.sum()``
    name = dotted(expr)
    return {name} if name else set()


def parameter_update(flow: Dataflow, statement: cst.CSTNode, scope: Scope) -> bool:
    """``w -= lr * w.grad``, ``model.w -= lr * grad``, ``p.data += ...``: an in-place update of
    a parameter (an SGD step written by hand), not an accumulator of losses."""
    if not isinstance(statement, cst.AugAssign):
        return False
    target = statement.target
    if isinstance(target, cst.Subscript):
        target = target.value
    name = dotted(target) or ""
    if not name:
        return False
    last = name.rsplit(".", 1)[-1]
    if last in ("data", "weight", "bias") or name.startswith("model.") or ".param" in name:
        return True
    grads = {n for n in names_in(statement.value) if n.rsplit(".", 1)[-1] in _GRADIENT_NAMES}
    if grads and (
        isinstance(statement.operator, cst.SubtractAssign) or flow.grad_disabled(statement)
    ):
        return True  # ``param -= lr * param.grad`` / ``w += -lr * grad`` under no_grad
    for binding in flow.model.lookup(name, scope):
        if binding.from_iteration and "parameters" in flow.model.text_of(binding.value):
            return True  # ``for p in model.parameters(): p -= ...``
    return False
