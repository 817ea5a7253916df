"""How a per-batch value was reduced over its batch: mean, sum, per-sample, or unknown.

A torch criterion or functional loss reduces with its ``reduction=`` (default ``"mean"``;
legacy ``size_average=False`` / ``reduce=False``), a keras loss object with its
``reduction=`` (default: a mean over the batch), keras loss *functions* and
``tf.nn.*_cross_entropy*`` return one value per sample, ``tf.reduce_mean`` / ``x.mean()``
without an axis average, ``tf.reduce_sum`` / ``x.sum()`` add up. The reduction survives
conversions (``.item()``, ``float()``, ``.numpy()``), scaling by a constant and sums of
means; multiplying a mean by the batch size turns it into a sum.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call, positional
from trainlint.model.values.roles import Role, Value

if TYPE_CHECKING:
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import Binding, Scope


class Reduction(enum.Enum):
    MEAN = "mean"
    SUM = "sum"
    NONE = "none"  # per-element values (``reduction="none"``)
    CONSTANT = "constant"  # a number, a weight: carries no loss
    UNKNOWN = "unknown"


def criterion_reduction(value: Value | None) -> Reduction:
    """The reduction a criterion object applies (``nn.MSELoss(reduction="sum")`` -> SUM)."""
    if value is None or value.role is not Role.CRITERION:
        return Reduction.UNKNOWN
    return _reduction_option(value.options)


def _reduction_option(options: dict[str, cst.BaseExpression]) -> Reduction:
    reduction = literal(options.get("reduction"), "?") if "reduction" in options else "mean"
    if literal(options.get("reduce"), True) is False:
        return Reduction.NONE
    if literal(options.get("size_average"), True) is False:
        return Reduction.SUM
    return {"mean": Reduction.MEAN, "sum": Reduction.SUM, "none": Reduction.NONE}.get(
        reduction,  # type: ignore[arg-type]
        Reduction.UNKNOWN,
    )


@dataclass(frozen=True)
class CriterionInfo:
    kind: str  # qualified constructor or functional name ("" when known by name only)
    reduction: Reduction
    ignore_index: cst.BaseExpression | None = None


#: torch.nn.functional losses; every one defaults to ``reduction="mean"``.
FUNCTIONAL_LOSSES = frozenset(
    [
        "cross_entropy",
        "nll_loss",
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "huber_loss",
        "binary_cross_entropy",
        "binary_cross_entropy_with_logits",
        "kl_div",
        "poisson_nll_loss",
        "gaussian_nll_loss",
        "ctc_loss",
        "margin_ranking_loss",
        "hinge_embedding_loss",
        "multilabel_margin_loss",
        "soft_margin_loss",
        "multilabel_soft_margin_loss",
        "cosine_embedding_loss",
        "multi_margin_loss",
        "triplet_margin_loss",
        "triplet_margin_with_distance_loss",
    ]
)
#: Calls and methods that convert a value without changing what it averages.
_KEEPING_METHODS = {
    "item", "tolist", "numpy", "detach", "cpu", "cuda", "to", "float", "double", "half",
    "clone", "contiguous", "squeeze", "view", "reshape", "data",
}  # fmt: skip
_KEEPING_FUNCTIONS = {"float", "numpy.float32", "numpy.float64", "numpy.asarray", "numpy.array"}
_MEANS = {"torch.mean", "numpy.mean", "tensorflow.reduce_mean", "tensorflow.math.reduce_mean"}
_SUMS = {"torch.sum", "numpy.sum", "tensorflow.reduce_sum", "tensorflow.math.reduce_sum"}
_SIZE_NAME = re.compile(
    r"(^|_)(batch_?size|bs|bsz|n|num|size|n_?samples|num_?samples|b)$", re.IGNORECASE
)


def is_size_like(expr: cst.BaseExpression | None) -> bool:
    """``x.size(0)``, ``x.shape[0]``, ``len(x)``, ``batch_size``: a number of samples."""
    if expr is None:
        return False
    if isinstance(expr, cst.Call):
        method = method_call(expr)
        if method is not None and method[1] == "size":
            return literal(positional(expr, 0), 0) == 0
        if isinstance(expr.func, cst.Name) and expr.func.value in ("len", "int", "float"):
            return expr.func.value == "len" or is_size_like(positional(expr, 0))
        if method is not None and method[1] in _KEEPING_METHODS:
            return is_size_like(method[0])
        return False
    if isinstance(expr, cst.Subscript) and len(expr.slice) == 1:
        index = expr.slice[0].slice
        if isinstance(index, cst.Index) and literal(index.value, None) == 0:
            base = expr.value
            return (dotted(base) or "").endswith(".shape") or (
                isinstance(base, cst.Call) and (method_call(base) or (None, ""))[1] == "size"
            )
        return False
    name = dotted(expr)
    return bool(name and _SIZE_NAME.search(name.rsplit(".", 1)[-1]))


_KERAS_REDUCTIONS = {
    "SUM": Reduction.SUM,
    "NONE": Reduction.NONE,
    "SUM_OVER_BATCH_SIZE": Reduction.MEAN,
    "AUTO": Reduction.MEAN,
}


def criterion_info(value: Value) -> CriterionInfo:
    """Reduction and ``ignore_index`` of a criterion object (torch ``*Loss`` or keras loss).

    The torch reading is :func:`criterion_reduction` (shared with the gradient
    accumulation rules); keras' ``reduction=Reduction.SUM`` / ``"sum_over_batch_size"`` are
    read here. A criterion known only by its name gets torch's default, the mean."""
    option = value.options.get("reduction")
    text = literal(option, None) if option is not None else None
    if option is not None and not isinstance(text, str):
        text = (dotted(option) or "").rsplit(".", 1)[-1].upper()
    if isinstance(text, str) and text.upper() in _KERAS_REDUCTIONS:
        reduction = _KERAS_REDUCTIONS[text.upper()]
    else:
        reduction = criterion_reduction(value)
    return CriterionInfo(value.kind, reduction, value.options.get("ignore_index"))


def criterion_of_call(flow: Dataflow, call: cst.Call, scope: Scope) -> CriterionInfo | None:
    """The criterion a call runs: a functional torch loss, or a criterion object -- resolved
    through what same-file callers pass when it is a parameter."""
    model = flow.model
    qualified = model.imports.qualify(call.func) or ""
    if qualified.startswith("torch.nn.functional.") and qualified[20:] in FUNCTIONAL_LOSSES:
        options = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        reduction = criterion_reduction(Value(Role.CRITERION, qualified, call, options))
        return CriterionInfo(qualified, reduction, options.get("ignore_index"))
    value = model.value_of(call.func, scope)
    if value is None or value.role is not Role.CRITERION:
        return None
    if value.call is None and model.callee(call, scope) is not None:
        return None  # a same-file function named like a criterion: its returns tell
    name = dotted(call.func)
    if value.call is not None or name is None or name not in scope.params:
        return criterion_info(value)
    passed = [model.value_of(arg, caller) for arg, caller in flow.arguments_for(name, scope)]
    infos = [criterion_info(v) for v in passed if v is not None and v.role is Role.CRITERION]
    if infos and len(infos) == len(passed) and len({i.reduction for i in infos}) == 1:
        return infos[0]
    return criterion_info(value)


def _same(reductions: list[Reduction]) -> Reduction:
    if reductions and all(r is reductions[0] for r in reductions):
        return reductions[0]
    return Reduction.UNKNOWN


#: keras ``Model`` methods returning the batch's mean loss (and mean metrics when compiled
#: with some: ``loss, accuracy = model.test_on_batch(x, y)``).
_KERAS_BATCH_METHODS = ("train_on_batch", "test_on_batch")


def _is_constant(expr: cst.BaseExpression) -> bool:
    return isinstance(literal(expr, None), (int, float)) and not isinstance(
        literal(expr, None), bool
    )


def reduction_of(
    flow: Dataflow, expr: cst.BaseExpression, scope: Scope, before: int | None
) -> Reduction:
    """How ``expr`` (a per-batch value) was reduced over the batch."""
    if isinstance(expr, (cst.Name, cst.Attribute)):
        return _of_name(flow, expr, scope, before)
    if isinstance(expr, cst.Call):
        return _of_call(flow, expr, scope, before, None)
    if isinstance(expr, cst.BinaryOperation):
        return _of_arithmetic(flow, expr, scope, before)
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        return flow.reduction(expr.expression, scope, before)
    if isinstance(expr, cst.Comparison):
        return Reduction.NONE
    if isinstance(expr, cst.Subscript):
        base = expr.value
        if isinstance(base, cst.Call) and len(expr.slice) == 1:
            index = expr.slice[0].slice
            position = literal(index.value, None) if isinstance(index, cst.Index) else None
            if isinstance(position, int):
                return _of_call(flow, base, scope, before, position)
        if flow.made_by_model(base, scope, before) and _is_loss_key(expr):
            return Reduction.MEAN  # outputs["loss"] of a model call
    return Reduction.UNKNOWN


def _is_loss_key(expr: cst.Subscript) -> bool:
    index = expr.slice[0].slice if len(expr.slice) == 1 else None
    return isinstance(index, cst.Index) and literal(index.value, None) == "loss"


def _of_name(
    flow: Dataflow, expr: cst.BaseExpression, scope: Scope, before: int | None
) -> Reduction:
    name = dotted(expr) or ""
    binding = flow.binding_before(name, scope, before)
    if binding is not None:
        return _of_binding(flow, name, binding, scope)
    if isinstance(expr, cst.Attribute):
        if expr.attr.value == "loss" and flow.made_by_model(expr.value, scope, before):
            return Reduction.MEAN  # outputs.loss of a model call (HF models average)
        if expr.attr.value == "data":
            return flow.reduction(expr.value, scope, before)
    return Reduction.UNKNOWN


def _of_binding(flow: Dataflow, name: str, binding: Binding, scope: Scope) -> Reduction:
    value, order = binding.value, binding.order
    if value is None or binding.from_iteration or isinstance(binding.statement, cst.WithItem):
        return Reduction.UNKNOWN
    if binding.augmented:
        previous = flow.binding_before(name, scope, order)
        if previous is None or previous.order >= order:
            return Reduction.UNKNOWN
        earlier = _of_binding(flow, name, previous, scope)
        return _plus(earlier, flow.reduction(value, scope, order))
    if binding.unpack_index is not None:
        if isinstance(value, (cst.Tuple, cst.List)) and binding.unpack_index < len(value.elements):
            return flow.reduction(value.elements[binding.unpack_index].value, scope, order)
        if isinstance(value, cst.Call):
            return _of_call(flow, value, scope, order, binding.unpack_index)
        return Reduction.UNKNOWN
    return flow.reduction(value, scope, order)


def _plus(left: Reduction, right: Reduction) -> Reduction:
    return left if left is right and left is not Reduction.NONE else Reduction.UNKNOWN


def _of_arithmetic(
    flow: Dataflow, expr: cst.BinaryOperation, scope: Scope, before: int | None
) -> Reduction:
    operator = expr.operator
    left, right = expr.left, expr.right
    if isinstance(operator, (cst.Add, cst.Subtract)):
        if _is_constant(right):
            return flow.reduction(left, scope, before)
        if _is_constant(left):
            return flow.reduction(right, scope, before)
        return _plus(flow.reduction(left, scope, before), flow.reduction(right, scope, before))
    if isinstance(operator, cst.Multiply):
        for factor, other in ((left, right), (right, left)):
            if _is_constant(factor):
                return flow.reduction(other, scope, before)
        for factor, other in ((left, right), (right, left)):
            inner = flow.reduction(other, scope, before)
            if inner is Reduction.MEAN and is_size_like(factor):
                return Reduction.SUM  # the batch size multiplied back in
        return Reduction.UNKNOWN
    if isinstance(operator, cst.Divide):
        inner = flow.reduction(left, scope, before)
        if _is_constant(right):
            return inner
        if inner is Reduction.SUM and is_size_like(right):
            return Reduction.MEAN
        if inner is Reduction.MEAN and not is_size_like(right):
            return Reduction.MEAN  # scaled by a constant such as accumulation steps
    return Reduction.UNKNOWN


def _of_call(
    flow: Dataflow, call: cst.Call, scope: Scope, before: int | None, index: int | None
) -> Reduction:
    model = flow.model
    criterion = flow.criterion_of_call(call, scope)
    if criterion is not None:
        return criterion.reduction if index is None else Reduction.UNKNOWN
    qualified = model.imports.qualify(call.func) or ""
    first = positional(call, 0)
    external = model.returned_summary(call, scope, index)
    if external is not None and external.reduction != Reduction.UNKNOWN.value:
        return Reduction(external.reduction)  # another module's function or forward
    if qualified:
        return _of_library_call(flow, call, qualified, scope, before)
    method = method_call(call)
    if method is not None:
        receiver, name = method
        if name in _KEEPING_METHODS:
            return flow.reduction(receiver, scope, before)
        if name == "run" and first is not None:  # TF1 ``sess.run(accuracy, feed_dict=...)``
            if index is None:
                return flow.reduction(first, scope, before)
            if isinstance(first, (cst.List, cst.Tuple)) and index < len(first.elements):
                # ``_, c = sess.run([train_op, cost], ...)``: the fetch in that slot
                return flow.reduction(first.elements[index].value, scope, before)
            return Reduction.UNKNOWN
        if name in _KERAS_BATCH_METHODS and model.imports.imports("tensorflow.keras"):
            return Reduction.MEAN  # the batch's mean loss (and metrics, slot by slot)
        if name == "eval" and index is None:
            return flow.reduction(receiver, scope, before)  # TF1 ``accuracy.eval(feed_dict)
        if name in ("mean", "sum") and not call.args:
            inner = flow.reduction(receiver, scope, before)
            if inner in (Reduction.MEAN, Reduction.SUM):
                return inner  # already a scalar
            return Reduction.MEAN if name == "mean" else Reduction.SUM
        if name in ("mean", "sum"):
            return Reduction.NONE if _has_axis(call) else _of_method_default(name)
    if isinstance(call.func, cst.Name) and call.func.value in ("float", "abs") and first:
        return flow.reduction(first, scope, before)
    callee = model.callee(call, scope)
    if callee is not None:
        found = []
        for returned in callee.returns:
            if index is not None:
                if not isinstance(returned, cst.Tuple) or index >= len(returned.elements):
                    continue
                returned = returned.elements[index].value
            found.append(flow.reduction(returned, callee, None))
        return _same(found)
    return Reduction.UNKNOWN


def _of_method_default(name: str) -> Reduction:
    return Reduction.MEAN if name == "mean" else Reduction.SUM


def _has_axis(call: cst.Call) -> bool:
    return (
        any(keyword(call, k) is not None for k in ("dim", "axis"))
        or positional(call, 0) is not None
    )


def _of_library_call(
    flow: Dataflow, call: cst.Call, qualified: str, scope: Scope, before: int | None
) -> Reduction:
    first = positional(call, 0)
    last = qualified.rsplit(".", 1)[-1]
    if qualified in _KEEPING_FUNCTIONS and first is not None:
        return flow.reduction(first, scope, before)
    if qualified in _MEANS or qualified in _SUMS:
        axis_index = 1
        axis = keyword(call, "axis") or keyword(call, "dim") or positional(call, axis_index)
        if axis is not None:
            return Reduction.NONE
        inner = flow.reduction(first, scope, before)
        if inner in (Reduction.MEAN, Reduction.SUM):
            return inner
        return Reduction.MEAN if qualified in _MEANS else Reduction.SUM
    if qualified.startswith("tensorflow.keras.losses.") and last[:1].islower():
        return Reduction.NONE  # keras loss functions return one value per sample
    if qualified.startswith("tensorflow.nn.") and "cross_entropy" in last:
        return Reduction.NONE
    if qualified.startswith(("tensorflow.losses.", "tensorflow.compat.v1.losses.")):
        return Reduction.MEAN
    return Reduction.UNKNOWN
