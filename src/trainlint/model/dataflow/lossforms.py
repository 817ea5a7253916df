"""Syntax-level helpers for the loss definition chain (see :mod:`.lossflow`).

Which calls are torch losses, which methods keep a tensor's values, how a call's arguments map
to a helper's parameters, in-place ``loss.div_(k)`` statements, and the visiting order of calls
(comparable with binding orders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, dotted, literal, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

#: torch.nn.functional losses; every one defaults to ``reduction="mean"``.
FUNCTIONAL_LOSSES = {
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "soft_margin_loss",
    "multilabel_soft_margin_loss", "margin_ranking_loss", "hinge_embedding_loss",
    "cosine_embedding_loss", "poisson_nll_loss", "gaussian_nll_loss", "triplet_margin_loss",
    "multi_margin_loss", "ctc_loss",
}  # fmt: skip
TOKEN_LOSSES = ("CrossEntropyLoss", "NLLLoss", "cross_entropy", "nll_loss")
#: Methods that return the same values in another dtype, device or shape.
PASS_THROUGH = {
    "float", "double", "half", "to", "cuda", "cpu", "squeeze", "contiguous", "clone", "type",
    "view_as", "reshape",
}  # fmt: skip


def is_distribution(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, before: int
) -> bool:
    """``Categorical(probs)`` of ``torch.distributions``, directly or through its name (its
    ``log_prob`` is one value per sample, not a batch mean)."""
    if isinstance(expr, (cst.Name, cst.Attribute)):
        bindings = [
            b
            for b in model.lookup(dotted(expr) or "", scope)
            if b.order < before and b.augmented is None and b.unpack_index is None
        ]
        expr = max(bindings, key=lambda b: b.order).value if bindings else None
    if not isinstance(expr, cst.Call):
        return False
    return is_under(model.imports.qualify(expr.func), "torch.distributions")


def options_of(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def source_text(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def is_masked_selection(node: cst.BaseExpression, per_element: bool) -> bool:
    """``losses[mask]``, ``losses.masked_select(mask)``, ``losses[labels != -100]``: a
    per-element loss filtered by a condition, so the count it averages over varies."""
    if isinstance(node, cst.Subscript):
        index = selector(node)
        if index is None:
            return False
        return (
            per_element
            or "mask" in source_text(index).lower()
            or any(isinstance(n, cst.Comparison) for n in (index, *descendants(index)))
        )
    found = method_call(node)
    return found is not None and found[1] == "masked_select"


LATEST = 1 << 30
_CALL_ORDERS: WeakKeyDictionary[TrainingModel, dict[int, int]] = WeakKeyDictionary()


def call_order(model: TrainingModel, call: cst.Call) -> int:
    """The visiting order of ``call`` (comparable with binding orders)."""
    orders = _CALL_ORDERS.get(model)
    if orders is None:
        orders = {id(site.node): site.order for site in model.calls}
        _CALL_ORDERS[model] = orders
    return orders.get(id(call), LATEST)


_IN_PLACE: WeakKeyDictionary[TrainingModel, dict[tuple[int, str], list]] = WeakKeyDictionary()


def in_place_scalings(
    model: TrainingModel, name: str, scope: Scope
) -> list[tuple[int, cst.Call, cst.BaseExpression]]:
    """``name.div_(k)`` / ``name.mul_(1 / k)`` statements in ``scope``: (order, call, k)."""
    index = _IN_PLACE.get(model)
    if index is None:
        index = {}
        for statement, where in model.expression_statements:
            found = method_call(statement.value)
            argument = positional(statement.value, 0) if found is not None else None
            if found is None or found[1] not in ("div_", "mul_") or argument is None:
                continue
            divisor = argument if found[1] == "div_" else reciprocal_of(argument)
            target = dotted(found[0])
            if divisor is not None and target:
                order = model.order_of(statement) or 0
                index.setdefault((id(where), target), []).append((order, statement.value, divisor))
        _IN_PLACE[model] = index
    return index.get((id(scope), name), [])


def reciprocal_of(node: cst.BaseExpression) -> cst.BaseExpression | None:
    """``k`` for ``1 / k`` or ``1.0 / k``."""
    node = node.with_changes(lpar=(), rpar=()) if getattr(node, "lpar", ()) else node
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide):
        return node.right if literal(node.left, None) in (1, 1.0) else None
    return None


def selector(node: cst.Subscript) -> cst.BaseExpression | None:
    """The index of ``x[index]`` when it selects by a computed value (not a literal or slice)."""
    if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
        return None
    index = node.slice[0].slice.value
    return None if literal(index, None) is not None else index
