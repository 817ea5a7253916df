"""The definition chain of a loss: how a backward operand was computed.

``backward_flow(model, event, loop_scope)`` follows the value a backward differentiates back
through assignments (``loss = loss / k``, ``loss /= k``, tuple unpacking), same-file helpers
(their returns, and their parameters back to the caller's arguments) and arithmetic, to the
loss calls it came from. It answers the questions the accumulation rules ask:

* which divisions apply to the whole value (``(loss / k).backward()``, ``loss * (1 / k)``,
  ``torch.div(loss, k)``, ``loss.div_(k)``);
* how the loss is reduced: a default-reduction criterion, ``F.cross_entropy`` and friends,
  ``outputs.loss``, ``.mean()`` are *mean*; ``reduction="sum"``, ``.sum()`` are *sum*;
* whether it is a token-level mean whose denominator changes per micro-batch (cross-entropy
  with ``ignore_index``, a masked mean, a language-model ``outputs.loss``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.flows import (
    CONSTANT_FLOW,
    UNKNOWN_FLOW,
    Division,
    Flow,
    LossSource,
    combine,
)
from trainlint.model.dataflow.lossforms import (
    FUNCTIONAL_LOSSES,
    LATEST,
    PASS_THROUGH,
    TOKEN_LOSSES,
    call_order,
    in_place_scalings,
    is_distribution,
    is_masked_selection,
    options_of,
    selector,
    source_text,
)
from trainlint.model.dataflow.reductions import Reduction, _reduction_option, criterion_reduction
from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call, positional
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.events import Event
    from trainlint.model.syntax.scopes import Binding, Scope


# ---------------------------------------------------------------------- the tracer
@dataclass
class _Frame:
    call: cst.Call  # the call that entered ``callee``
    caller: Scope
    callee: Scope


@dataclass
class _Tracer:
    model: TrainingModel
    budget: int = 60
    seen: set[tuple[int, int]] = field(default_factory=set)

    def expression(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int, frames: list[_Frame]
    ) -> Flow:
        if expr is None or self.budget <= 0:
            return UNKNOWN_FLOW
        key = (id(expr), id(scope))
        if key in self.seen:
            return UNKNOWN_FLOW
        self.budget -= 1
        self.seen.add(key)
        try:
            return self._expression(expr, scope, before, frames)
        finally:
            self.seen.discard(key)

    def _expression(
        self, expr: cst.BaseExpression, scope: Scope, before: int, frames: list[_Frame]
    ) -> Flow:
        if isinstance(expr, (cst.Integer, cst.Float)):
            return CONSTANT_FLOW
        if isinstance(expr, cst.UnaryOperation):
            return self.expression(expr.expression, scope, before, frames)
        if isinstance(expr, cst.BinaryOperation):
            return self._binary(expr, scope, before, frames)
        if isinstance(expr, cst.Call):
            return self._call(expr, scope, before, frames, None)
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, scope, before, frames)
        if isinstance(expr, cst.Attribute) and dotted(expr) is None and expr.attr.value == "loss":
            return self._model_loss(expr, expr.value if isinstance(expr.value, cst.Call) else None)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._name(expr, scope, before, frames)
        return UNKNOWN_FLOW

    # ------------------------------------------------------------------ arithmetic
    def _binary(
        self, expr: cst.BinaryOperation, scope: Scope, before: int, frames: list[_Frame]
    ) -> Flow:
        operator = expr.operator
        left = self.expression(expr.left, scope, before, frames)
        if isinstance(operator, (cst.Divide, cst.FloorDivide)):
            if left.reduction is Reduction.CONSTANT:
                return Flow(Reduction.CONSTANT, reciprocal=expr.right)
            masked = self._masked_mean(expr, left)
            if masked is not None:
                return masked
            return left.with_division(Division(expr, expr.right))
        right = self.expression(expr.right, scope, before, frames)
        if isinstance(operator, cst.Multiply):
            for flow, other in ((left, right), (right, left)):
                if other.reduction is Reduction.CONSTANT and other.reciprocal is not None:
                    return flow.with_division(Division(expr, other.reciprocal))
            product = combine([left, right])
            divisions = (*left.divisions, *right.divisions)  # a factor divided divides it all
            if Reduction.NONE in (left.reduction, right.reduction):
                # ``-dist.log_prob(a) * reward``: a product of per-element values stays one
                return Flow(Reduction.NONE, divisions, product.sources)
            return Flow(product.reduction, divisions, product.sources)
        if isinstance(operator, (cst.Add, cst.Subtract)):
            return combine([left, right])
        return UNKNOWN_FLOW

    @staticmethod
    def _masked_mean(expr: cst.BinaryOperation, numerator: Flow) -> Flow | None:
        """``(losses * mask).sum() / mask.sum()``: a mean over this micro-batch's real tokens."""
        if numerator.reduction is not Reduction.SUM:
            return None
        denominator = expr.right
        counted = method_call(denominator)
        if counted is None or counted[1] not in ("sum", "count_nonzero", "numel"):
            return None
        source = LossSource(expr, "masked mean", Reduction.MEAN, token_level="mask")
        return Flow(Reduction.MEAN, (), (*numerator.sources, source))

    # ------------------------------------------------------------------ calls
    def _call(
        self,
        call: cst.Call,
        scope: Scope,
        before: int,
        frames: list[_Frame],
        index: int | None,
    ) -> Flow:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        last = qualified.rsplit(".", 1)[-1]
        method = method_call(call)
        if qualified.startswith("torch.nn.functional.") and last in FUNCTIONAL_LOSSES:
            return self._loss_call(call, f"F.{last}", _reduction_option(options_of(call)), last)
        if qualified in ("torch.mean", "torch.sum"):
            inner = self.expression(positional(call, 0), scope, before, frames)
            reduction = Reduction.MEAN if last == "mean" else Reduction.SUM
            return Flow(reduction, (), inner.sources)
        if qualified in ("torch.div", "torch.true_divide") and positional(call, 1) is not None:
            inner = self.expression(positional(call, 0), scope, before, frames)
            return inner.with_division(Division(call, positional(call, 1)))  # type: ignore[arg-type]
        if method is not None:
            receiver, name = method
            found = self._method(call, receiver, name, scope, before, frames)
            if found is not None:
                return found
        if model.callee(call, scope) is not None:
            return self._callee_returns(call, scope, frames, index)
        value = model.value_of(call.func, scope)
        if value is not None and value.role is Role.CRITERION:
            label = dotted(call.func) or value.short_kind or "criterion"
            reduction = (
                criterion_reduction(value) if value.call is not None else Reduction.MEAN
            )  # a criterion known only by name: torch's default reduction
            return self._loss_call(call, label, reduction, value.short_kind, value.options)
        return self._callee_returns(call, scope, frames, index)

    def _method(
        self,
        call: cst.Call,
        receiver: cst.BaseExpression,
        name: str,
        scope: Scope,
        before: int,
        frames: list[_Frame],
    ) -> Flow | None:
        if name in ("mean", "sum", "nanmean", "nansum"):
            inner = self.expression(receiver, scope, before, frames)
            sources = inner.sources
            if name.endswith("mean") and is_masked_selection(
                receiver, inner.reduction is Reduction.NONE
            ):
                sources = (*sources, LossSource(call, "masked mean", Reduction.MEAN, "mask"))
            reduction = Reduction.MEAN if name.endswith("mean") else Reduction.SUM
            return Flow(reduction, inner.divisions, sources)
        if name in ("div", "div_", "true_divide") and positional(call, 0) is not None:
            inner = self.expression(receiver, scope, before, frames)
            return inner.with_division(Division(call, positional(call, 0)))  # type: ignore[arg-type]
        if name in ("mul", "mul_") and positional(call, 0) is not None:
            inner = self.expression(receiver, scope, before, frames)
            factor = self.expression(positional(call, 0), scope, before, frames)
            if factor.reciprocal is not None:
                return inner.with_division(Division(call, factor.reciprocal))
            return inner
        if name in PASS_THROUGH:
            return self.expression(receiver, scope, before, frames)
        if name == "log_prob" and is_distribution(self.model, receiver, scope, before):
            # one log-probability per sample (the terms of REINFORCE): not a batch mean
            return Flow(Reduction.NONE, (), ())
        return None

    def _loss_call(
        self,
        call: cst.Call,
        label: str,
        reduction: Reduction,
        kind: str,
        options: dict[str, cst.BaseExpression] | None = None,
    ) -> Flow:
        token = None
        given = {**(options or {}), **options_of(call)}
        if kind in TOKEN_LOSSES and "ignore_index" in given:
            token = "ignore_index"
        return Flow(reduction, (), (LossSource(call, label, reduction, token),))

    def _callee_returns(
        self, call: cst.Call, scope: Scope, frames: list[_Frame], index: int | None
    ) -> Flow:
        model = self.model
        if index is None and _returns_lm_loss(model, call, scope):
            source = LossSource(call, source_text(call), Reduction.MEAN)
            return Flow(Reduction.MEAN, (), (source,))
        external = model.returned_summary(call, scope, index)
        if external is not None and external.reduction != Reduction.UNKNOWN.value:
            # ``logits, loss = model(X, Y)``: another module's forward returns the loss
            reduction = Reduction(external.reduction)
            label = external.loss or source_text(call.func)
            source = LossSource(call, label, reduction, external.token_level)
            return Flow(reduction, (), (source,))
        callee = model.callee(call, scope)
        if callee is None:
            value = model.value_of(call.func, scope)
            if value is not None and value.role is Role.MODEL and value.kind in model.classes:
                callee = model.method(model.classes[value.kind], "forward")
        if callee is None:
            return UNKNOWN_FLOW
        flows = []
        orders = getattr(callee, "return_orders", None) or []
        for position, returned in enumerate(callee.returns):
            if index is not None:
                if not isinstance(returned, cst.Tuple) or index >= len(returned.elements):
                    continue
                returned = returned.elements[index].value
            order = orders[position] if position < len(orders) else LATEST
            inner = [*frames, _Frame(call, scope, callee)]
            flows.append(self.expression(returned, callee, order, inner))
        known = [f for f in flows if f.reduction is not Reduction.UNKNOWN]
        return known[0] if known else (flows[0] if flows else UNKNOWN_FLOW)

    # ------------------------------------------------------------------ names
    def _subscript(
        self, expr: cst.Subscript, scope: Scope, before: int, frames: list[_Frame]
    ) -> Flow:
        key = expr.slice[0].slice if len(expr.slice) == 1 else None
        index = key.value if isinstance(key, cst.Index) else None
        if literal(index, None) in ("loss", 0):
            forward = self._forward_call(expr.value, scope, before)
            if forward is not None and self.model.role_of(forward.func, scope) is Role.MODEL:
                return self._model_loss(expr, forward)
        if selector(expr) is not None:  # ``losses[mask]``: still one value per element
            selected = self.expression(expr.value, scope, before, frames)
            if selected.reduction is Reduction.NONE:
                return selected
        return UNKNOWN_FLOW

    def _name(
        self,
        expr: cst.Name | cst.Attribute,
        scope: Scope,
        before: int,
        frames: list[_Frame],
    ) -> Flow:
        name = dotted(expr)
        if not name:
            return UNKNOWN_FLOW
        bindings = [
            b for b in self.model.lookup(name, scope) if b.order < before and b.value is not None
        ]
        plain = next((b for b in bindings if b.augmented is None), None)
        if plain is not None:
            flow = self._binding(plain, scope, frames)
        elif frames and frames[-1].callee is scope and name in scope.params:
            frame = frames[-1]
            argument = argument_for(frame.call, frame.callee, name)
            caller_order = self._order_of_call(frame.call)
            flow = self.expression(argument, frame.caller, caller_order, frames[:-1])
        elif isinstance(expr, cst.Attribute) and expr.attr.value == "loss":
            forward = self._forward_call(expr.value, scope, before)
            return self._model_loss(expr, forward)
        else:
            return UNKNOWN_FLOW
        start = plain.order if plain is not None else -1
        for binding in sorted(bindings, key=lambda b: b.order):
            if binding.augmented is not None and binding.order > start:
                flow = self._augment(flow, binding, scope, frames)
        for order, call, divisor in in_place_scalings(self.model, name, scope):
            if start < order < before:  # ``loss.div_(k)`` as a statement of its own
                flow = flow.with_division(Division(call, divisor))
        return flow

    def _binding(self, binding: Binding, scope: Scope, frames: list[_Frame]) -> Flow:
        value = binding.value
        if binding.from_iteration:
            return UNKNOWN_FLOW
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                if binding.unpack_index < len(value.elements):
                    element = value.elements[binding.unpack_index].value
                    return self.expression(element, scope, binding.order, frames)
                return UNKNOWN_FLOW
            if isinstance(value, cst.Call):
                return self._call(value, scope, binding.order, frames, binding.unpack_index)
            return UNKNOWN_FLOW
        return self.expression(value, scope, binding.order, frames)

    def _augment(self, flow: Flow, binding: Binding, scope: Scope, frames: list[_Frame]) -> Flow:
        operand = binding.value
        assert operand is not None
        if binding.augmented in ("DivideAssign", "FloorDivideAssign"):
            return flow.with_division(Division(binding.statement, operand))
        other = self.expression(operand, scope, binding.order, frames)
        if binding.augmented == "MultiplyAssign" and other.reciprocal is not None:
            return flow.with_division(Division(binding.statement, other.reciprocal))
        if binding.augmented in ("AddAssign", "SubtractAssign"):
            return combine([flow, other])
        return flow

    # ------------------------------------------------------------------ models
    def _forward_call(
        self, receiver: cst.BaseExpression, scope: Scope, before: int
    ) -> cst.Call | None:
        """The model call ``receiver`` holds (``outputs = model(**batch)``), if it is one."""
        if isinstance(receiver, cst.Call):
            return receiver
        name = dotted(receiver)
        for binding in self.model.lookup(name, scope) if name else ():
            if binding.order >= before or binding.augmented is not None:
                continue
            if isinstance(binding.value, cst.Call):
                return binding.value
        return None

    def _model_loss(self, node: cst.CSTNode, forward: cst.Call | None) -> Flow:
        """``outputs.loss``: a mean, as transformers models compute it by default."""
        if forward is not None and keyword(forward, "num_items_in_batch") is not None:
            # transformers sums and divides by the window's token count itself
            return Flow(Reduction.SUM, (), (LossSource(node, source_text(node), Reduction.SUM),))
        # Whether the labels hold ignored (padding) tokens is the data pipeline's business,
        # often packed to equal lengths: not a token-level source on its own.
        source = LossSource(node, source_text(node), Reduction.MEAN)
        return Flow(Reduction.MEAN, (), (source,))

    def _order_of_call(self, call: cst.Call) -> int:
        return call_order(self.model, call)


def _returns_lm_loss(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    """``model(tokens, return_type="loss")`` (TransformerLens): the language-model loss, a
    mean over tokens (per token with ``loss_per_token=True``, left unknown)."""
    if literal(keyword(call, "return_type"), None) != "loss":
        return False
    if literal(keyword(call, "loss_per_token"), False) is not False:
        return False
    value = model.value_of(call.func, scope)
    return value is not None and value.role is Role.MODEL


# ---------------------------------------------------------------------- entry points
def backward_flow(model: TrainingModel, event: Event, loop_scope: Scope) -> Flow:
    """The flow of a backward event's operand (helpers on the way in via ``event.via``)."""
    frames: list[_Frame] = []
    scope = loop_scope
    for call in event.via:
        callee = model.callee(call, scope)
        if callee is None:
            break
        frames.append(_Frame(call, scope, callee))
        scope = callee
    tracer = _Tracer(model)
    before = call_order(model, event.node) if isinstance(event.node, cst.Call) else LATEST
    return tracer.expression(event.operand, event.scope, before, frames)


def expression_flow(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, before: int | None = None
) -> Flow:
    """The flow of any expression in ``scope`` (bindings before ``before`` only)."""
    tracer = _Tracer(model)
    return tracer.expression(expr, scope, before if before is not None else LATEST, [])
