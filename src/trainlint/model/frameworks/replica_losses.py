"""How a replica step function reduces its loss: per replica, or to the global batch.

Walks the definition chain of a gradient target (through its bindings, ``+=``, arithmetic,
TensorFlow ops and the returns of same-file helpers) and finds the reductions that average
over this replica's examples only:

* ``tf.reduce_mean(x)`` / ``tf.math.reduce_mean`` / ``keras.ops.mean`` / ``K.mean`` with no
  ``axis`` (with one it reduces each example, not the batch);
* a keras loss object (``keras.losses.X(...)``) built without ``reduction=`` or with
  ``AUTO``/``SUM_OVER_BATCH_SIZE``; ``NONE`` and ``SUM`` leave the scaling to the code.

Already globally averaged, and not walked further: ``tf.nn.compute_average_loss``,
``tf.nn.scale_regularization_loss``; a value divided by something that is not a literal
(``/ strategy.num_replicas_in_sync``, ``/ global_batch_size``) or multiplied by such a
quotient, which is the user scaling by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

_MEANS = {
    "tensorflow.reduce_mean",
    "tensorflow.math.reduce_mean",
    "tensorflow.keras.backend.mean",
    "tensorflow.keras.ops.mean",
}
_GLOBAL = {"tensorflow.nn.compute_average_loss", "tensorflow.nn.scale_regularization_loss"}
_PER_REPLICA_REDUCTIONS = {"auto", "sum_over_batch_size"}
#: Methods that scale a loss and keep its reduction (mixed precision).
_SCALING_METHODS = {"get_scaled_loss", "scale_loss"}


@dataclass(frozen=True)
class ReplicaMean:
    """A per-replica mean on the path to a replica step's loss."""

    node: cst.Call  # the reduction: ``tf.reduce_mean(...)`` or the loss object's call
    how: str  # how it reads, for messages
    constructor: cst.Call | None = None  # the loss object's constructor, when one


class ReplicaLosses:
    """``TrainingModel.replica_losses``: per-replica means on a loss's definition chain."""

    max_depth = 30

    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    def per_replica_mean(
        self, target: cst.BaseExpression, scope: Scope, before: int | None
    ) -> ReplicaMean | None:
        return self._walk(target, scope, before, 0, set())

    def _walk(
        self,
        node: cst.BaseExpression,
        scope: Scope,
        before: int | None,
        depth: int,
        seen: set[int],
    ) -> ReplicaMean | None:
        if depth > self.max_depth:
            return None
        if isinstance(node, (cst.Name, cst.Attribute)) and dotted(node) is not None:
            return self._name(dotted(node) or "", scope, before, depth, seen)
        if isinstance(node, cst.Call):
            return self._call(node, scope, before, depth, seen)
        if isinstance(node, cst.BinaryOperation):
            if _scaled_by_hand(node):
                return None
            return self._walk(node.left, scope, before, depth + 1, seen) or self._walk(
                node.right, scope, before, depth + 1, seen
            )
        if isinstance(node, cst.UnaryOperation):
            return self._walk(node.expression, scope, before, depth + 1, seen)
        return None

    def _name(
        self, name: str, scope: Scope, before: int | None, depth: int, seen: set[int]
    ) -> ReplicaMean | None:
        bindings = self.model.lookup(name, scope, before)
        if not bindings or bindings[0].scope is not scope:
            return None
        binding = bindings[0]
        if id(binding) in seen or binding.value is None or binding.from_iteration:
            return None
        seen.add(id(binding))
        if binding.augmented is not None:
            if binding.augmented == "DivideAssign" and not _is_literal(binding.value):
                return None  # ``loss /= strategy.num_replicas_in_sync``
            if binding.augmented == "MultiplyAssign" and _is_quotient(binding.value):
                return None  # ``loss *= 1.0 / strategy.num_replicas_in_sync``
            found = self._walk(binding.value, scope, binding.order, depth + 1, seen)
            return found or self._name(name, scope, binding.order, depth + 1, seen)
        if binding.unpack_index is not None and not isinstance(binding.value, cst.Call):
            return None
        return self._walk(binding.value, scope, binding.order, depth + 1, seen)

    def _call(
        self, call: cst.Call, scope: Scope, before: int | None, depth: int, seen: set[int]
    ) -> ReplicaMean | None:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        if qualified in _GLOBAL:
            return None
        if qualified in _MEANS:
            axis = keyword(call, "axis")
            positional = [a for a in call.args if a.keyword is None]
            if axis is None and len(positional) > 1:
                axis = positional[1].value
            if axis is None or literal(axis, "?") is None:
                return ReplicaMean(call, f"`{model.text_of(call.func)}`")
            return None  # a mean over one axis of each example
        constructor = self._loss_constructor(call, scope)
        if constructor is not None:
            reduction = _reduction_of(constructor)
            if reduction in _PER_REPLICA_REDUCTIONS:
                label = model.text_of(call.func)
                return ReplicaMean(call, f"the keras loss `{label}`", constructor)
            return None
        if is_under(qualified, "tensorflow"):
            if is_under(qualified, "tensorflow.keras.losses"):
                return None  # a loss function: one value per example
            return self._first(call.args, scope, before, depth, seen)
        method = method_call(call)
        if method is not None and method[1] in _SCALING_METHODS:
            return self._first(call.args, scope, before, depth, seen)
        callee = model.callee(call, scope, external=False)
        if callee is not None and depth < self.max_depth:
            for returned, order in zip(callee.returns, callee.return_orders, strict=False):
                found = self._walk(returned, callee, order, depth + 5, seen)
                if found is not None:
                    return found
        return None

    def _first(
        self,
        args: tuple[cst.Arg, ...] | list[cst.Arg],
        scope: Scope,
        before: int | None,
        depth: int,
        seen: set[int],
    ) -> ReplicaMean | None:
        for arg in args:
            found = self._walk(arg.value, scope, before, depth + 1, seen)
            if found is not None:
                return found
        return None

    def _loss_constructor(self, call: cst.Call, scope: Scope) -> cst.Call | None:
        """The ``keras.losses.X(...)`` constructor of the loss object ``call`` calls."""
        func = call.func
        if isinstance(func, cst.Call):
            qualified = self.model.imports.qualify(func.func) or ""
            return func if _is_loss_class(qualified) else None
        value = self.model.value_of(func, scope)
        if value is None or value.call is None or not _is_loss_class(value.kind):
            return None
        return value.call


def _is_loss_class(qualified: str) -> bool:
    last = qualified.rsplit(".", 1)[-1]
    return is_under(qualified, "tensorflow.keras.losses") and last[:1].isupper() and last != "Loss"


def _reduction_of(constructor: cst.Call) -> str | None:
    """``"auto"``/``"sum_over_batch_size"``/``"none"``/``"sum"``; None when not readable."""
    given = keyword(constructor, "reduction")
    if given is None:
        return "sum_over_batch_size"
    value = literal(given, None)
    if isinstance(value, str):
        return value.lower()
    name = dotted(given)
    return name.rsplit(".", 1)[-1].lower() if name else None


def _is_literal(node: cst.BaseExpression) -> bool:
    return isinstance(node, (cst.Integer, cst.Float))


def _scaled_by_hand(node: cst.BinaryOperation) -> bool:
    """``x / n`` with ``n`` not a literal, or ``x * (1 / n)``: scaled to the global batch."""
    if isinstance(node.operator, cst.Divide):
        return not _is_literal(node.right)
    if isinstance(node.operator, cst.Multiply):
        return _is_quotient(node.left) or _is_quotient(node.right)
    return False


def _is_quotient(node: cst.BaseExpression) -> bool:
    """``1.0 / n`` with ``n`` not a literal."""
    return (
        isinstance(node, cst.BinaryOperation)
        and isinstance(node.operator, cst.Divide)
        and not _is_literal(node.right)
    )
