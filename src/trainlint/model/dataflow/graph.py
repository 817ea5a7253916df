"""Dataflow of loss values: what an expression holds, how it was reduced, where it goes.

The questions the bookkeeping rules (TL201-TL205) ask, answered by :class:`Dataflow`
(``model.dataflow``):

* :meth:`Dataflow.holds` -- a tensor still attached to the autograd graph (a criterion or
  loss call, a model output, ``outputs.loss``, arithmetic on these), a tensor without a graph
  (``.detach()``, ``.data``, comparisons, ``argmax``), or a python number (``.item()``,
  ``float()``, ``.cpu().numpy()``, ``.tolist()``), followed through assignments, tuple
  unpacking and the returns of same-file functions, at a given point of the code;
* :meth:`Dataflow.reduction` -- mean over the batch, sum, or per-sample (see
  :mod:`.reductions`, which also reads a criterion's ``reduction=`` and ``ignore_index=``);
* :meth:`Dataflow.uses` -- whether an accumulator later reaches a backward, a model input or
  a ``return`` (see :mod:`.uses`);
* :meth:`Dataflow.grad_disabled` -- ``no_grad`` / ``inference_mode`` regions around a node;
* :meth:`Dataflow.arguments_for` -- what same-file callers pass for a parameter.

How loops batch their data lives in :mod:`.batches`; the divisions that finalize an average
in :mod:`.averages`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import fact_of_parameter, fact_through, passed_for
from trainlint.model.dataflow.facts import (
    DETACHING_METHODS,
    NO_GRAPH_ATTRIBUTES,
    NOT_FORWARD,
    NUMBER,
    NUMBER_ATTRIBUTES,
    TENSOR,
    TO_NUMBER_BUILTINS,
    TO_NUMBER_METHODS,
    TUPLE_REDUCTIONS,
    UNKNOWN,
    Fact,
    Holds,
    external_fact,
    join,
    without_graph,
)
from trainlint.model.dataflow.provenance import (
    STRING_METHODS,
    backward_evidence,
    binding_without_graph,
    detached_criterion_call,
    forward_like,
    frozen_forward,
    library_call_fact,
    return_without_graph,
    string_operation,
)
from trainlint.model.dataflow.reductions import (
    CriterionInfo,
    Reduction,
    criterion_of_call,
    reduction_of,
)
from trainlint.model.dataflow.uses import NameFlows, Uses, own_nodes
from trainlint.model.loops.placement import Placement
from trainlint.model.syntax.nodes import dotted, literal, method_call
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope


class Dataflow:
    """Answers dataflow questions about one file's :class:`TrainingModel` (results cached)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._facts: dict[tuple[int, int, int | None], Fact] = {}
        self._reductions: dict[tuple[int, int, int | None], Reduction] = {}
        self._active: set[tuple[str, int, int, int | None]] = set()
        self.placement = Placement(model)
        self._flows = NameFlows(self)
        self.callers: dict[int, list[tuple[cst.Call, Scope, int]]] | None = None
        self._call_orders: dict[int, int] | None = None
        self._pinned: list[cst.CSTNode] = []
        self._sites: dict[int, tuple[Scope, int]] | None = None
        self.backpropagated: dict[int, frozenset[str]] = {}  # see provenance.backpropagated

    # ------------------------------------------------------------------ bindings
    def order(self, node: cst.CSTNode) -> int | None:
        """The visiting order of a statement or call (comparable with binding orders)."""
        found = self.model.order_of(node)
        if found is None and isinstance(node, cst.Call):
            if self._call_orders is None:
                self._call_orders = {id(site.node): site.order for site in self.model.calls}
            found = self._call_orders.get(id(node))
        return found

    def call_sites(self) -> dict[int, tuple[Scope, int]]:
        """id(call) -> the scope it is written in and its order (every call of the file)."""
        if self._sites is None:
            self._sites = {id(site.node): (site.scope, site.order) for site in self.model.calls}
        return self._sites

    def pin(self, node: cst.CSTNode) -> None:
        """Keep a node made on the fly alive while its id keys a cache entry."""
        self._pinned.append(node)

    def fact_through(
        self,
        expr: cst.BaseExpression | None,
        scope: Scope,
        before: int | None,
        via: tuple[cst.Call, ...],
    ) -> Fact:
        """:meth:`fact` of a helper's expression as seen from the calls ``via`` (the helper's
        parameters read at that call, see :mod:`.calls`)."""
        return fact_through(self, expr, scope, before, via)

    def binding_before(self, name: str, scope: Scope, before: int | None) -> Binding | None:
        """The latest binding of ``name`` visible at ``before`` (any binding if none precede)."""
        bindings = self.model.lookup(name, scope, before)
        return bindings[0] if bindings else None

    # ------------------------------------------------------------------ holds
    def holds(self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None):
        """:class:`Holds` for ``expr`` as evaluated in ``scope`` just before order ``before``."""
        return self.fact(expr, scope, before).holds

    def is_graph(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> bool:
        return self.fact(expr, scope, before).holds is Holds.GRAPH

    def made_by_model(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> bool:
        """A model or loss output, with its graph or made under ``no_grad`` (its reduction
        is the same either way)."""
        fact = self.fact(expr, scope, before)
        return fact.holds is Holds.GRAPH or fact.no_grad

    def fact(self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None):
        if expr is None:
            return UNKNOWN
        key = (id(expr), id(scope), before)
        if key in self._facts:
            return self._facts[key]
        guard = ("fact", *key)
        if guard in self._active:
            return UNKNOWN
        self._active.add(guard)
        try:
            found = self._fact(expr, scope, before)
        finally:
            self._active.discard(guard)
        self._facts[key] = found
        self._pinned.append(expr)  # ids key the cache: keep the node alive
        return found

    def _fact(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> Fact:
        if isinstance(expr, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString)):
            return NUMBER
        if isinstance(expr, (cst.FormattedString, cst.ConcatenatedString)):
            return NUMBER
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._fact_of_name(expr, scope, before)
        if isinstance(expr, cst.Call):
            return self._fact_of_call(expr, scope, before, None)
        if isinstance(expr, cst.BinaryOperation):
            if string_operation(expr):
                return NUMBER  # ``"loss: " + text`` is a string
            return join(self.fact(expr.left, scope, before), self.fact(expr.right, scope, before))
        if isinstance(expr, cst.UnaryOperation):
            if isinstance(expr.operator, cst.Not):
                return NUMBER
            return self.fact(expr.expression, scope, before)
        if isinstance(expr, cst.Comparison):
            parts = [self.fact(expr.left, scope, before)] + [
                self.fact(c.comparator, scope, before) for c in expr.comparisons
            ]
            merged = join(*parts)
            return NUMBER if merged.holds is Holds.NUMBER else TENSOR
        if isinstance(expr, cst.IfExp):
            return join(self.fact(expr.body, scope, before), self.fact(expr.orelse, scope, before))
        if isinstance(expr, cst.Subscript):
            return self._fact_of_subscript(expr, scope, before)
        if isinstance(expr, cst.Dict) and expr.elements:
            values = [e.value for e in expr.elements if isinstance(e, cst.DictElement)]
            found = join(*(self.fact(v, scope, before) for v in values))
            return found if found.holds is Holds.GRAPH else UNKNOWN
        return UNKNOWN

    def _fact_of_name(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> Fact:
        name = dotted(expr)
        binding = self.binding_before(name, scope, before) if name is not None else None
        if binding is not None:
            found = self._fact_of_binding(name, binding, scope)  # type: ignore[arg-type]
            if found.holds is Holds.UNKNOWN and backward_evidence(self, name, scope):  # type: ignore[arg-type]
                return Fact(Holds.GRAPH, binding.value)  # back-propagated: a graph tensor
            return found
        if name is not None and name in scope.params:
            return fact_of_parameter(self, name, scope)
        if isinstance(expr, cst.Attribute):  # ``outputs.loss``, ``model(**batch).loss``
            attribute = expr.attr.value
            if attribute in NUMBER_ATTRIBUTES:
                return NUMBER
            base = self.fact(expr.value, scope, before)
            if base.no_grad:  # ``outputs.loss`` of outputs made under ``no_grad``
                return base
            if base.holds is Holds.GRAPH:
                return TENSOR if attribute in NO_GRAPH_ATTRIBUTES else base
            if attribute in NO_GRAPH_ATTRIBUTES and base.holds is not Holds.NUMBER:
                return TENSOR
        return UNKNOWN

    def _fact_of_binding(self, name: str, binding: Binding, scope: Scope) -> Fact:
        value, order = binding.value, binding.order
        if value is None or isinstance(binding.statement, cst.WithItem):
            return UNKNOWN
        if binding.from_iteration:
            return self._fact_of_iteration(value, binding.unpack_index, scope, order)
        if binding.augmented:
            previous = self.binding_before(name, scope, order)
            earlier = (
                self._fact_of_binding(name, previous, scope)
                if previous is not None and previous.order < order
                else UNKNOWN
            )
            return join(self.fact(value, scope, order), earlier)
        if binding_without_graph(self, binding):
            return without_graph(self._fact_of_plain_binding(binding, scope))
        return self._fact_of_plain_binding(binding, scope)

    def _fact_of_plain_binding(self, binding: Binding, scope: Scope) -> Fact:
        value, order = binding.value, binding.order
        assert value is not None
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index < len(elements):
                    return self.fact(elements[binding.unpack_index].value, scope, order)
                return UNKNOWN
            if isinstance(value, cst.Call):
                return self._fact_of_call(value, scope, order, binding.unpack_index)
            return UNKNOWN
        return self.fact(value, scope, order)

    def _fact_of_iteration(
        self, iterable: cst.BaseExpression, index: int | None, scope: Scope, before: int | None
    ) -> Fact:
        if isinstance(iterable, cst.Call) and isinstance(iterable.func, cst.Name):
            if iterable.func.value == "range":
                return NUMBER
            if iterable.func.value == "enumerate" and index == 0:
                return NUMBER
        method = method_call(iterable)
        if method is not None and not iterable.args:  # type: ignore[union-attr]
            receiver, name = method
            if (name == "items" and index == 1) or (name == "values" and index is None):
                found = self.fact(receiver, scope, before)  # the values of a dict of losses
                return found if found.holds is Holds.GRAPH else UNKNOWN
        return UNKNOWN

    def _fact_of_subscript(self, expr: cst.Subscript, scope: Scope, before: int | None) -> Fact:
        if isinstance(expr.value, cst.Call) and len(expr.slice) == 1:
            index = expr.slice[0].slice
            position = literal(index.value, None) if isinstance(index, cst.Index) else None
            if isinstance(position, int):
                return self._fact_of_call(expr.value, scope, before, position)
        base = self.fact(expr.value, scope, before)
        return base if base.holds in (Holds.GRAPH, Holds.TENSOR) else UNKNOWN

    def _fact_of_call(
        self, call: cst.Call, scope: Scope, before: int | None, index: int | None
    ) -> Fact:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        args = [a.value for a in call.args]
        value = model.value_of(call.func, scope)
        callee = model.callee(call, scope)
        producing = value is not None and value.role in (Role.MODEL, Role.CRITERION, Role.ENGINE)
        if isinstance(call.func, cst.Attribute) and value is not None and value.call is None:
            # ``engine.train_micro_batch_size_per_gpu()``: a role guessed from the attribute's
            # name says nothing about what the method returns
            producing = producing and forward_like(call.func.attr.value)
        if producing and value.role is Role.CRITERION and index:  # type: ignore[union-attr]
            # ``loss, sample_size, logs = criterion(model, sample)``: a torch loss returns one
            # tensor; the other slots of a tuple-returning criterion are sizes and logs
            return UNKNOWN
        if producing and (value.call is not None or callee is None):  # type: ignore[union-attr]
            if value.role is Role.MODEL and frozen_forward(self, call, scope, before):  # type: ignore[union-attr]
                return TENSOR  # a frozen feature extractor on data
            criterion = value.role is Role.CRITERION  # type: ignore[union-attr]
            if criterion and detached_criterion_call(self, value, call, scope, before):  # type: ignore[arg-type]
                return TENSOR  # a loss of detached values
            return Fact(Holds.GRAPH, call)
        external = model.returned_summary(call, scope, index)
        if external is not None:  # another module's function: its summary says what it returns
            return external_fact(external, call)
        cls = scope.cls
        if dotted(call.func) == "self" and cls is not None and model.is_module_class(cls):
            return Fact(Holds.GRAPH, call)  # ``self(x)`` in an ``nn.Module``: a forward
        if qualified:
            return library_call_fact(self, call, qualified, scope, before, index)
        method = method_call(call)
        if method is not None:
            receiver, name = method
            receiver_value = model.value_of(receiver, scope)
            if name in STRING_METHODS:
                return NUMBER  # ``tokenizer.decode(ids)``, ``text.strip()``: strings
            if receiver_value is not None and receiver_value.role in (Role.MODEL, Role.ENGINE):
                if name in NOT_FORWARD:
                    return TENSOR if name == "generate" else UNKNOWN
                if forward_like(name):
                    return Fact(Holds.GRAPH, call)
                # any other method of a model (``model_times()``, ``num_parameters()``)
                return self._fact_of_returns(callee, index) if callee is not None else UNKNOWN
            if receiver_value is not None and receiver_value.role is Role.CRITERION:
                return Fact(Holds.GRAPH, call)
            base = self.fact(receiver, scope, before)
            if name in TO_NUMBER_METHODS:
                return NUMBER if base.holds is not Holds.UNKNOWN or name == "item" else UNKNOWN
            if base.holds is Holds.NUMBER:
                return UNKNOWN
            if name in DETACHING_METHODS:
                return TENSOR if base.holds is not Holds.UNKNOWN or name == "detach" else base
            if name in TUPLE_REDUCTIONS and index == 1 and call.args:
                return TENSOR
            if base.holds in (Holds.GRAPH, Holds.TENSOR):
                return base
        if isinstance(call.func, cst.Name):
            builtin = call.func.value
            if builtin in TO_NUMBER_BUILTINS:
                return NUMBER
            if builtin in ("sum", "max", "min", "abs") and args:
                return join(*(self.fact(a, scope, before) for a in args))
        if callee is not None:
            return self._fact_of_returns(callee, index)
        return UNKNOWN

    def _fact_of_returns(self, callee: Scope, index: int | None) -> Fact:
        facts = []
        for returned in callee.returns:
            if index is not None:
                if not isinstance(returned, cst.Tuple) or index >= len(returned.elements):
                    continue
                returned = returned.elements[index].value
            statement = _statement_of_return(self, returned)
            found = self.fact(returned, callee, self.model.order_of(statement))
            if return_without_graph(self, callee, statement):
                found = without_graph(found)  # ``@torch.no_grad()`` helpers return no graph
            facts.append(found)
        return join(*facts) if facts else UNKNOWN

    # ------------------------------------------------------------------ reductions
    def reduction(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> Reduction:
        """How a per-batch value in ``expr`` was reduced over the batch."""
        if expr is None:
            return Reduction.UNKNOWN
        key = (id(expr), id(scope), before)
        if key in self._reductions:
            return self._reductions[key]
        guard = ("reduction", *key)
        if guard in self._active:
            return Reduction.UNKNOWN
        self._active.add(guard)
        try:
            found = self._reduction(expr, scope, before)
        finally:
            self._active.discard(guard)
        self._reductions[key] = found
        self._pinned.append(expr)
        return found

    def _reduction(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> Reduction:
        return reduction_of(self, expr, scope, before)

    def criterion_of_call(self, call: cst.Call, scope: Scope) -> CriterionInfo | None:
        """The criterion ``call`` runs (see :func:`.reductions.criterion_of_call`)."""
        return criterion_of_call(self, call, scope)

    # ------------------------------------------------------------------ callers
    def arguments_for(self, param: str, scope: Scope) -> list[tuple[cst.BaseExpression, Scope]]:
        """What each same-file call of ``scope`` passes for parameter ``param``."""
        return [(argument, caller) for argument, caller, _ in self.passed_for(param, scope)]

    def passed_for(self, param: str, scope: Scope) -> list[tuple[cst.BaseExpression, Scope, int]]:
        """``arguments_for`` with the order of each call (to read the argument there)."""
        return passed_for(self, param, scope)

    # ------------------------------------------------------------------ placement
    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.placement.parent(node)

    def grad_disabled(self, *nodes: cst.CSTNode) -> bool:
        return self.placement.grad_disabled(*nodes)

    def restarted_before(self, name: str, statement: cst.CSTNode) -> bool:
        return self.placement.restarted_before(name, statement)

    # ------------------------------------------------------------------ uses
    def uses(self, name: str, scope: Scope) -> Uses:
        """Whether ``name`` (and what is derived from it) reaches a backward, a model call or
        a ``return`` (see :mod:`.uses`)."""
        return self._flows.uses(name, scope)

    def derived_names(self, name: str, scope: Scope) -> set[str]:
        return self._flows.derived_names(name, scope)

    def runs_backward(self, scope: Scope) -> bool:
        return self._flows.runs_backward(scope)


def _statement_of_return(flow: Dataflow, node: cst.CSTNode) -> cst.CSTNode:
    current: cst.CSTNode | None = node
    while current is not None and not isinstance(current, cst.Return):
        current = flow.parent(current)
    return current if current is not None else node


__all__ = [
    "CriterionInfo",
    "Dataflow",
    "Fact",
    "Holds",
    "Reduction",
    "Uses",
    "join",
    "own_nodes",
]
