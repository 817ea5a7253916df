"""Where a name's value goes: the names derived from it and whether they reach a backward.

Name-level flow edges of each scope -- ``t = f(a, b)`` makes ``t`` derive from ``a`` and
``b``; ``for x in xs``, ``xs.append(v)``, ``d[k] = v`` likewise -- plus the names that end
in a backward (``x.backward()``, ``scaler.scale(x).backward()``, ``accelerator.backward(x)``,
``torch.autograd.grad(x, ...)``, ``tape.gradient(x, ...)``), in a model or criterion call,
or in a ``return``. Attributes (``self.total``) are followed across every function of the
file, since methods share them. Rules ask this about accumulators: a total that is later
back-propagated is a loss built on purpose, not a report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    keyword,
    method_call,
    names_in,
    positional,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import Scope


@dataclass(frozen=True)
class Uses:
    """Where the names derived from an accumulator end up, within its scope."""

    backward: bool = False  # reaches a backward / autograd.grad / tape.gradient
    model_input: bool = False  # passed to a model or criterion call
    returned: bool = False


class NameFlows:
    """Per-scope flow facts, collected lazily and cached."""

    def __init__(self, flow: Dataflow) -> None:
        self.flow = flow
        self._facts: dict[int, _ScopeFacts] = {}

    def facts_of(self, scope: Scope) -> _ScopeFacts:
        key = id(scope.node)
        if key not in self._facts:
            self._facts[key] = _ScopeFacts.collect(self.flow, scope)
        return self._facts[key]

    def derived_names(self, name: str, scope: Scope) -> set[str]:
        """``name`` and every name assigned (or appended) from it, transitively, in ``scope``;
        for attributes (``self.total``) in every function of the file."""
        scopes = self.flow.model.scopes if "." in name else [scope]
        edges = [edge for s in scopes for edge in self.facts_of(s).edges]
        return _derive(edges, {name})

    def uses(self, name: str, scope: Scope) -> Uses:
        """Where ``name`` ends up; once it reaches an attribute (``self.loss = total``), that
        attribute is followed into every function of the file. A local name derived from the
        attribute counts only in the function that derives it (``total`` in ``summary()`` is
        not the ``total`` another function back-propagates)."""
        own = self.facts_of(scope)
        derived = {id(scope): _derive(own.edges, {name})}
        attributes = {n for n in derived[id(scope)] if "." in n}
        if attributes:
            changed = True
            while changed:
                changed = False
                for other in self.flow.model.scopes:
                    start = attributes | derived.get(id(other), set())
                    found = _derive(self.facts_of(other).edges, start)
                    derived[id(other)] = found
                    more = {n for n in found if "." in n} - attributes
                    if more:
                        attributes |= more
                        changed = True
        facts = {id(s): self.facts_of(s) for s in self.flow.model.scopes if id(s) in derived}
        facts[id(scope)] = own
        return Uses(
            backward=any(not f.sinks.isdisjoint(derived[k]) for k, f in facts.items()),
            model_input=any(not f.model_inputs.isdisjoint(derived[k]) for k, f in facts.items()),
            returned=not own.returns.isdisjoint(derived[id(scope)])
            or any(not f.returns.isdisjoint(attributes) for f in facts.values()),
        )

    def runs_backward(self, scope: Scope) -> bool:
        return bool(self.facts_of(scope).sinks)


def _derive(edges: list[tuple[str, frozenset[str]]], start: set[str]) -> set[str]:
    derived = set(start)
    changed = True
    while changed:
        changed = False
        for target, sources in edges:
            if target not in derived and not sources.isdisjoint(derived):
                derived.add(target)
                changed = True
    return derived


_BACKWARD_METHODS = {"backward", "manual_backward"}
_ASSIGNS = frozenset({cst.Assign, cst.AugAssign, cst.AnnAssign})
_ITERATIONS = frozenset({cst.For, cst.CompFor})
_RETURNS = frozenset({cst.Return, cst.Yield})
_APPENDS = {"append", "extend", "insert", "appendleft", "add"}


@dataclass
class _ScopeFacts:
    """Name-level flow edges and sinks of one scope (nested functions excluded)."""

    edges: list[tuple[str, frozenset[str]]]
    sinks: frozenset[str]  # names inside backward / grad targets
    model_inputs: frozenset[str]  # names passed to model or criterion calls
    returns: frozenset[str]

    @classmethod
    def collect(cls, flow: Dataflow, scope: Scope) -> _ScopeFacts:
        edges: list[tuple[str, frozenset[str]]] = []
        sinks: set[str] = set()
        inputs: set[str] = set()
        returns: set[str] = set()
        model = flow.model
        for node in own_nodes(scope.node):
            kind = type(node)  # every node of the scope: no ABC isinstance (syntax.nodes)
            if kind in _ASSIGNS:
                targets = (
                    [t.target for t in node.targets] if kind is cst.Assign
                    else [node.target]
                )  # fmt: skip
                if node.value is not None:
                    sources = frozenset(names_in(node.value))
                    for target in targets:
                        for name in _bound_names(target):
                            edges.append((name, sources))
            elif kind in _ITERATIONS:
                sources = frozenset(names_in(node.iter))
                for name in _bound_names(node.target):
                    edges.append((name, sources))
            elif kind in _RETURNS and node.value is not None:
                returns |= names_in(node.value)
            elif kind is cst.Call:
                _collect_call(flow, model, scope, node, edges, sinks, inputs)
        return cls(edges, frozenset(sinks), frozenset(inputs), frozenset(returns))


def _collect_call(flow, model, scope, call, edges, sinks, inputs) -> None:
    qualified = model.imports.qualify(call.func) or ""
    method = method_call(call)
    arguments = [a.value for a in call.args]
    if method is not None:
        receiver, name = method
        if name in _BACKWARD_METHODS:
            inner = method_call(receiver)
            if inner is not None and inner[1] == "scale" and isinstance(receiver, cst.Call):
                receiver = positional(receiver, 0) or receiver
            for target in [receiver, *arguments]:
                sinks.update(names_in(target))
            return
        if name in ("gradient", "minimize") and arguments:
            sinks.update(names_in(arguments[0]))
            return
        if name in _APPENDS:
            base = dotted(receiver)
            if base:
                sources = frozenset(n for a in arguments for n in names_in(a))
                edges.append((base, sources))
            return
    if qualified in ("torch.autograd.grad", "torch.autograd.backward") and call.args:
        outputs = keyword(call, "outputs") or keyword(call, "tensors") or arguments[0]
        sinks.update(names_in(outputs))
        return
    value = model.value_of(call.func, scope)
    if value is not None and value.role in (Role.MODEL, Role.CRITERION, Role.ENGINE):
        for argument in arguments:
            inputs.update(names_in(argument))


def _bound_names(target: cst.BaseExpression) -> Iterator[str]:
    if isinstance(target, (cst.Tuple, cst.List)):
        for element in target.elements:
            yield from _bound_names(element.value)
    elif isinstance(target, cst.Subscript):
        base = dotted(target.value)
        if base:
            yield base
    elif isinstance(target, cst.StarredElement):
        yield from _bound_names(target.value)
    else:
        name = dotted(target)
        if name:
            yield name


def own_nodes(root: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Nodes of a function (or module) body, not entering nested functions or classes."""
    return descendants(root, stop=(cst.FunctionDef, cst.ClassDef))
