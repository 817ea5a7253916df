"""What a tensor holds: the lattice of :mod:`.kinds`, evaluated over expressions of one file.

Evaluated on demand (memoized) through assignments (the latest binding before the use,
joined with the earlier one when it sits in an ``if`` branch the use is not in, so a softmax
applied only ``if not self.training`` is not taken for the output), conditional expressions,
same-file functions' returns (every return must agree; tuple returns element by element, for
``logits, probs = model(x)`` and ``out[1]``), ``forward``/``call`` methods of same-file models,
layer objects (:mod:`.layers`: constructors, ``nn.Sequential`` stacks, layers bound to
``self`` attributes) and library calls (activations keep the kind of what they were applied
to as ``source``). When a producer cannot be resolved the answer is ``UNKNOWN``: rules never
guess.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_layers import (
    functional_dense_output,
    is_activation_layer,
)
from trainlint.model.syntax.branches import BranchMap
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call, positional
from trainlint.model.values import kinds as k
from trainlint.model.values.callers import Callers
from trainlint.model.values.kinds import UNKNOWN, Activation, TensorKind, join, log_argument
from trainlint.model.values.layers import LayerAnalysis, axis_of

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.summaries.types import FunctionSummary
    from trainlint.model.syntax.branches import Branch
    from trainlint.model.syntax.scopes import Binding, ClassInfo, Scope

__all__ = ["Activation", "TensorKind", "TensorAnalysis"]

#: Library activations: qualified names, the tensor method spelling, and what they make.
_ACTIVATIONS = (
    (k.SIGMOID, ("sigmoid",), Activation.PROBABILITIES, "sigmoid"),
    (k.SOFTMAX, ("softmax",), Activation.PROBABILITIES, "softmax"),
    (k.LOG_SOFTMAX, ("log_softmax",), Activation.LOG_PROBABILITIES, "log_softmax"),
    (k.NON_NEGATIVE, ("relu", "abs"), Activation.NON_NEGATIVE, ""),
)


class TensorAnalysis:
    """Evaluates :class:`TensorKind` for expressions of one file (memoized)."""

    max_depth = 12

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self.layers = LayerAnalysis(self)
        self.callers = Callers(model)
        # Keyed by id(): each entry keeps its node alive, so a freed temporary (a node made by
        # ``cst.parse_expression``) cannot hand its id, and its cached kind, to another node.
        self._memo: dict[tuple[int, int, int | None], tuple[cst.CSTNode, TensorKind]] = {}
        self._active: set[tuple[int, int, int | None]] = set()
        self._branches: dict[int, BranchMap] = {}

    def kind_of(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> TensorKind:
        if expr is None:
            return UNKNOWN
        key = (id(expr), id(scope), before)
        if key in self._memo:
            return self._memo[key][1]
        if key in self._active or len(self._active) > self.max_depth:
            return UNKNOWN
        self._active.add(key)
        try:
            found = self._evaluate(expr, scope, before)
        finally:
            self._active.discard(key)
        self._memo[key] = (expr, found)
        return found

    # ------------------------------------------------------------------ dispatch
    def _evaluate(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> TensorKind:
        if isinstance(expr, cst.Call):
            return self._call(expr, scope, before)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._name(expr, scope, before)
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, scope, before)
        if isinstance(expr, cst.BinaryOperation):
            return self._binary(expr, scope, before)
        if isinstance(expr, cst.IfExp):
            both = (
                self.kind_of(expr.body, scope, before),
                self.kind_of(expr.orelse, scope, before),
            )
            return join(both)
        return UNKNOWN

    def _subscript(self, expr: cst.Subscript, scope: Scope, before: int | None) -> TensorKind:
        index = _literal_index(expr)
        if index is not None:
            element = self.element(expr.value, index, scope, before)
            if element is not None:
                return element
        return self.kind_of(expr.value, scope, before)  # indexing a tensor keeps its values

    def element(
        self, expr: cst.BaseExpression, index: int, scope: Scope, before: int | None
    ) -> TensorKind | None:
        """Element ``index`` of a tuple ``expr`` holds; None when ``expr`` is not a tuple."""
        if isinstance(expr, cst.Call):
            return self._call(expr, scope, before, index)
        name = dotted(expr)
        if name is None:
            return None
        for binding in self.model.lookup(name, scope, before):
            value = binding.value
            if binding.augmented or binding.from_iteration or binding.unpack_index is not None:
                return None
            if isinstance(value, cst.Tuple):
                if index < len(value.elements):
                    return self.kind_of(value.elements[index].value, scope, binding.order)
                return None
            if isinstance(value, cst.Call):
                return self._call(value, binding.scope or scope, binding.order, index)
            return None
        return None

    def _binary(self, expr: cst.BinaryOperation, scope: Scope, before: int | None) -> TensorKind:
        if isinstance(expr.operator, cst.MatrixMultiply):
            return TensorKind(Activation.LOGITS, "a matrix product", node=expr)
        if not isinstance(expr.operator, (cst.Add, cst.Subtract, cst.Divide, cst.Multiply)):
            return UNKNOWN
        left = self.kind_of(expr.left, scope, before)
        right = self.kind_of(expr.right, scope, before)
        for (this, other), written in zip(
            ((left, right), (right, left)), (expr.right, expr.left), strict=True
        ):
            # logits shifted or scaled by a bias/temperature are still logits; a tensor operand
            # may broadcast them wider (``Linear(h, 1)(x) + bias`` with a bias of ``classes``)
            if this.activation is Activation.LOGITS and other.activation is Activation.UNKNOWN:
                return this if literal(written, None) is not None else replace(this, width=None)
        if isinstance(expr.operator, cst.Add):
            for this, other in ((left, expr.right), (right, expr.left)):
                if this.is_squashed and literal(other, None) is not None:
                    # ``p + 1e-8``: kept off zero, like a clamp
                    return TensorKind(Activation.BOUNDED, "an epsilon", node=expr, source=this)
        return UNKNOWN

    def _name(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> TensorKind:
        name = dotted(expr)
        if name is None:
            return UNKNOWN
        bindings = self.model.lookup(name, scope, before)
        if not bindings:
            return self._parameter(expr, scope)
        latest = bindings[0]
        if latest.augmented or latest.from_iteration or latest.value is None:
            return UNKNOWN
        found = self._binding(latest, latest.scope or scope)
        branch = self._branch_of(latest, scope, before)
        if branch is None or found.activation is Activation.UNKNOWN:
            return found
        # Bound in an ``if`` the use is not in: what was bound before the ``if``, and in its
        # other arms, reaches the use too (``if not self.training: x = F.softmax(x, 1)``).
        others = [
            self._binding(b, b.scope or scope)
            for b in bindings[1:]
            if branch.start < b.order <= branch.end
        ]
        if any(b.order < branch.start for b in bindings):
            others.append(self._name(expr, scope, branch.start))
        return join([found, *others])

    def _parameter(self, expr: cst.BaseExpression, scope: Scope) -> TensorKind:
        """A parameter: what every same-file call passes for it (all must agree)."""
        found = self.callers.parameter_of(expr, scope)
        if found is None:
            return UNKNOWN
        passed = self.callers.arguments(*found)
        return join(self.kind_of(a, caller, order) for a, caller, order in passed)

    def _branch_of(self, binding: Binding, scope: Scope, before: int | None) -> Branch | None:
        """The ``if`` around ``binding`` that does not hold the use (None when unconditional)."""
        owner = binding.scope or scope
        key = id(owner.node)
        if key not in self._branches:
            body = owner.node.body if isinstance(owner.node, cst.FunctionDef) else owner.node
            self._branches[key] = BranchMap(body, self.model.order_of)
        use = before if owner is scope else None
        return self._branches[key].outermost_not_containing(binding.statement, use)

    def _binding(self, binding: Binding, scope: Scope) -> TensorKind:
        value = binding.value
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index < len(elements):
                    return self.kind_of(elements[binding.unpack_index].value, scope, binding.order)
                return UNKNOWN
            if isinstance(value, cst.Call):
                return self._call(value, scope, binding.order, binding.unpack_index) or UNKNOWN
            return UNKNOWN
        return self.kind_of(value, scope, binding.order)

    # ------------------------------------------------------------------ calls
    def _call(
        self, call: cst.Call, scope: Scope, before: int | None, index: int | None = None
    ) -> TensorKind | None:
        """What ``call`` returns; with ``index``, element ``index`` of the tuple it returns, or
        None when it returns no tuple. Without an index the answer is never None."""
        if index is not None:
            return self._tuple_call(call, scope, index)
        model = self.model
        if isinstance(call.func, cst.Call):
            # ``layers.Dense(1)(x)`` / ``nn.Softmax(dim=1)(x)``: the layer built inline
            return self._applied(call.func, call, scope, before)
        qualified = model.imports.qualify(call.func) or ""
        if not qualified:
            value = model.value_of(call.func, scope)
            if value is not None and value.call is not None:
                # ``self.softmax(out)``, ``head(x)``, ``net(x)``: a layer or model object
                found = self._applied(value.call, call, scope, before)
                if found is UNKNOWN and model.project is not None:
                    # an instance of another module's class: its forward's summary
                    found = self._external(call, scope, None) or found
                return found
            callee = model.callee(call, scope)
            if callee is not None:
                return self.returned(callee, None) or UNKNOWN
            passed = self._passed_objects(call, scope, before)
            if passed:
                return join(passed)
        found = self._library_call(call, qualified, scope, before)
        if found is None or (found is UNKNOWN and model.project is not None):
            found = self._external(call, scope, None)
        return found if found is not None else UNKNOWN

    def _tuple_call(self, call: cst.Call, scope: Scope, index: int) -> TensorKind | None:
        model = self.model
        if isinstance(call.func, cst.Call):
            return None
        if model.imports.qualify(call.func):
            return self._external(call, scope, index)
        callee = model.callee(call, scope)
        if callee is None or (callee.short_name == "forward" and callee.cls):
            value = model.value_of(call.func, scope)
            info = model.classes.get(value.kind) if value is not None else None
            callee = self._forward_of(info) if info is not None else None
        if callee is None:
            return self._external(call, scope, index)
        return self.returned(callee, index)

    def _external(self, call: cst.Call, scope: Scope, index: int | None) -> TensorKind | None:
        """What a function or forward of another project module returns (its summary)."""
        external = self.model.external_call(call, scope)
        if external is None or external.function is None:
            return None
        return remote_returned(external.function, index)

    def _forward_of(self, info: ClassInfo) -> Scope | None:
        for method in ("forward", "call", "__call__"):
            found = self.model.method(info, method)
            if found is not None:
                return found
        return None

    def _passed_objects(self, call: cst.Call, scope: Scope, before: int | None) -> list[TensorKind]:
        """What calling the object a parameter holds returns, for each object same-file callers
        pass (``model`` in ``def train(model, ...)``, ``self.model = model`` in ``__init__``):
        built in this file, or an instance of another module's class. Empty unless every
        call passes a known object."""
        found = self.callers.parameter_of(call.func, scope)
        if found is None:
            return []
        kinds = []
        for argument, caller, _ in self.callers.arguments(*found):
            value = self.model.value_of(argument, caller)
            if value is not None and value.call is not None:
                applied = self._applied(value.call, call, scope, before, caller)
                if applied is not UNKNOWN or self.model.project is None:
                    kinds.append(applied)
                    continue
            summary = self.model.instance_summary(argument, caller)
            forward = summary.forward if summary is not None else None
            if forward is None:
                return []
            kinds.append(remote_returned(forward, None) or UNKNOWN)
        return kinds

    def _applied(
        self,
        constructor: cst.Call,
        call: cst.Call,
        scope: Scope,
        before: int | None,
        owner: Scope | None = None,
    ) -> TensorKind:
        """``layer(x)`` where ``constructor`` (written in ``owner``) built the layer or model.

        Keras layers and models are read by the keras structure (:mod:`..frameworks`); a
        pass-through keras layer (``Dropout``, ``Flatten``) returns what its input holds."""
        operand = positional(call, 0)
        qualified = self.model.imports.qualify(constructor.func)
        if is_under(qualified, "tensorflow.keras", "keras"):
            keras = self.model.keras.output_kind(constructor, owner or scope)
            if keras is None:
                return self.kind_of(operand or keyword(call, "inputs"), scope, before)
            if is_activation_layer(self.model.imports, constructor) and keras.source is None:
                # ``layers.Softmax()(h)``: an activation of what ``h`` holds, applied here
                given = self.kind_of(operand or keyword(call, "inputs"), scope, before)
                return replace(keras.with_source(given), applied=call, operand=operand)
            return keras
        given = self.kind_of(operand, scope, before)
        found = self.layers.output(constructor, owner or scope, given)
        if found.node is constructor and found.activation is not Activation.LOGITS:
            return replace(found, applied=call, operand=operand)
        return found

    def _library_call(
        self, call: cst.Call, qualified: str, scope: Scope, before: int | None
    ) -> TensorKind | None:
        method = method_call(call)
        name = method[1] if method is not None and not qualified else ""
        receiver = method[0] if method is not None and not qualified else None
        for names, methods, activation, producer in _ACTIVATIONS:
            if qualified in names or name in methods:
                label = producer or name or qualified.rsplit(".", 1)[-1]
                axis = axis_of(call, 1 if qualified else 0) if "softmax" in label else None
                if axis is None and "softmax" in label and is_under(qualified, "tensorflow"):
                    axis = -1  # TF and keras softmaxes default to the last axis
                operand = receiver if name else _activation_operand(call)
                source = self.kind_of(operand, scope, before)
                kind = TensorKind(activation, label, axis, call, applied=call, operand=operand)
                return kind.with_source(source)
        if qualified in k.UNBOUNDED_FACTORIES:
            return TensorKind(Activation.UNBOUNDED, qualified, node=call)
        if qualified in k.BOUNDED or name in ("clamp", "clip", "clamp_"):
            kind = TensorKind(Activation.BOUNDED, qualified or name, node=call)
            if qualified in k.CLAMPS or name:
                clamped = receiver if name else positional(call, 0)
                kind = kind.with_source(self.kind_of(clamped, scope, before))
            return kind
        logged = log_argument(self.model.imports, call)
        if logged is not None:
            inner = self.kind_of(logged, scope, before)
            if inner.is_squashed:
                return TensorKind(Activation.LOG_PROBABILITIES, "log", node=call, source=inner)
            return UNKNOWN
        if qualified == "torch.nn.functional.linear":
            return TensorKind(Activation.LOGITS, "F.linear", node=call)
        if qualified in k.MATRIX_PRODUCTS:
            return TensorKind(Activation.LOGITS, "a matrix product", node=call)
        if qualified in k.BIAS_ADDS:  # ``tf.add(tf.matmul(x, W), b)``: shifted logits
            operands = (positional(call, 0), positional(call, 1))
            found = [self.kind_of(o, scope, before) for o in operands if o is not None]
            return next((f for f in found if f.activation is Activation.LOGITS), UNKNOWN)
        dense = functional_dense_output(self.model.imports, call)
        if dense is not None:
            return replace(dense, applied=call) if dense.source is not None else dense
        if qualified in k.SHAPE_FUNCTIONS:
            return _reshaped(self.kind_of(positional(call, 0), scope, before), qualified)
        if name in k.SHAPE_METHODS:
            return _reshaped(self.kind_of(receiver, scope, before), name)
        return UNKNOWN if qualified else None

    def returned(self, function: Scope, index: int | None) -> TensorKind | None:
        """What a same-file function returns; its returns must all agree. With ``index``,
        element ``index`` of the tuples it returns, or None when it returns no tuple."""
        returns = list(zip(function.returns, function.return_orders, strict=False))
        tuples = [isinstance(r, cst.Tuple) for r, _ in returns]
        if index is not None and not any(tuples):
            return None
        if any(tuples) and (index is None or not all(tuples)):
            return UNKNOWN
        found = []
        for returned, order in returns:
            if index is not None:
                elements = returned.elements  # type: ignore[attr-defined]
                if index >= len(elements):
                    return UNKNOWN
                returned = elements[index].value
            found.append(self.kind_of(returned, function, order))
        return join(found) if found else UNKNOWN


def _literal_index(expr: cst.Subscript) -> int | None:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    value = literal(expr.slice[0].slice.value, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _activation_operand(call: cst.Call) -> cst.BaseExpression | None:
    """What a library activation is applied to: torch's ``input=``, TF's ``logits=``
    (``tf.nn.softmax(logits=z)``) or ``x=``, else the first argument."""
    for name in ("input", "logits", "x", "features"):
        found = keyword(call, name)
        if found is not None:
            return found
    return positional(call, 0)


def remote_returned(function: FunctionSummary, index: int | None) -> TensorKind | None:
    """A summary's return (slot ``index``) as a kind; with an index, None when the function
    returns no tuple."""
    returned = function.returned(index)
    if returned is None:
        tuples = any(r.slot is not None for r in function.returns)
        return UNKNOWN if index is None or tuples else None
    fact = returned.tensor
    if fact is None:
        fact = {"activation": returned.activation, "producer": returned.producer}
    line = fact.get("line")
    origin = f"{function.name}, line {line}" if line else function.name
    return TensorKind.from_fact(fact, origin=origin)


def _reshaped(kind: TensorKind | None, how: str | None) -> TensorKind | None:
    """What a shape change keeps: the values, but a linear layer's width only when the last
    axis stays (``h.squeeze(-1).softmax(-1)`` is attention pooling over the sequence)."""
    if kind is None or kind.width is None or how in k.KEEPS_LAST_AXIS:
        return kind
    return replace(kind, width=None)
