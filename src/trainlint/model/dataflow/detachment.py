"""Graph cuts: whether a backward target is still connected to the model's parameters.

A loss reaches the parameters when some path of its definition leads, uncut, to a model's
forward (``model(x)``, ``self.net(x)``, ``model.forward(x)``) or to a leaf made to require
gradients on purpose (``nn.Parameter``, ``torch.zeros(..., requires_grad=True)``, a
``requires_grad_()`` input for saliency). :meth:`GraphCuts.trace` follows the backward target
back through assignments, arithmetic, torch functions and tensor methods, criterion and
functional-loss calls, lists filled by ``append``, and the returns of same-file helpers (their
parameters read at the call), and records on the way:

* **cuts** -- a value taken out of the graph while it still held the model's graph:
  ``.item()``, ``.detach()``, ``.data``, ``.numpy()``, ``.tolist()``, ``float()``,
  ``torch.tensor(...)`` / ``torch.Tensor(...)`` / ``torch.from_numpy(...)``, ``argmax`` (and the
  indices of ``max(dim)``), comparisons, NumPy functions, a model output made under
  ``no_grad``;
* **forced** -- ``requires_grad`` switched on (``x.requires_grad = True``,
  ``x.requires_grad_()``, ``torch.tensor(v, requires_grad=True)``, ``Variable(v,
  requires_grad=True)``) on a value that was cut from the graph: the usual way of silencing
  "element 0 of tensors does not require grad", which makes backward run and reach nothing.

A target is *detached* (:attr:`GraphTrace.detached`) only when no path is live, no path runs
through something trainlint cannot read (another module's function, an attribute of ``self``
bound elsewhere), and a cut or a forced leaf was seen. Function parameters nobody in the file
passes, and batches read from a loader, are inputs: they hold data, not the model's graph. So
a stop-gradient on one operand (a DQN or BYOL target, ``fake.detach()`` for a discriminator)
leaves the other, live operand, and nothing is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import parameter_values, passed_for
from trainlint.model.dataflow.cuts import (
    APPENDS,
    COMBINING_BUILTINS,
    CUT_BUILTINS,
    CUT_METHODS,
    DEAD,
    LIVE,
    MAX_DEPTH,
    NO_VALUE_BUILTINS,
    OPAQUE,
    PARAMETER,
    PARAMETER_METHODS,
    REBUILDING_TORCH,
    TORCH_FACTORIES,
    VARIABLE,
    GraphTrace,
    combine,
    cut,
    forced,
)
from trainlint.model.dataflow.facts import NUMBER_ATTRIBUTES, TUPLE_REDUCTIONS
from trainlint.model.dataflow.provenance import forward_like
from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call, positional
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope


@dataclass(frozen=True)
class _Frame:
    """A same-file helper being read at one call: its parameters are the call's arguments."""

    callee: Scope
    values: dict[str, cst.BaseExpression]
    caller: Scope
    order: int | None
    outer: _Frame | None


@dataclass(frozen=True)
class DetachedBackward:
    """A backward whose target no longer reaches the parameters."""

    event: Event
    trace: GraphTrace


class GraphCuts:
    """Answers "does this backward target still reach the model?" for one file."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._active: set[tuple[int, int, int | None]] = set()

    # ------------------------------------------------------------------ queries
    def detached_backwards(self) -> list[DetachedBackward]:
        """Backwards of train steps (loops, or functions that backward and step) whose
        target is cut from the model on every path."""
        found: list[DetachedBackward] = []
        seen: set[int] = set()
        for event in self._train_backwards():
            if event.operand is None or id(event.node) in seen:
                continue
            seen.add(id(event.node))
            trace = self.trace_event(event)
            if trace.detached:
                found.append(DetachedBackward(event, trace))
        return found

    def trace_event(self, event: Event) -> GraphTrace:
        """:meth:`trace` of a backward's target, read through the calls that inlined it."""
        frame = self._frames(event.via, event.scope)
        before = self.model.dataflow.order(event.node)
        return self.trace(event.operand, event.scope, before, frame)

    def trace(
        self,
        expr: cst.BaseExpression | None,
        scope: Scope,
        before: int | None = None,
        frame: _Frame | None = None,
        depth: int = 0,
    ) -> GraphTrace:
        if expr is None or depth > MAX_DEPTH * 8:
            return OPAQUE
        key = (id(expr), id(scope), before)
        if key in self._active:
            return DEAD  # a cycle adds no new path
        self._active.add(key)
        try:
            return self._trace(expr, scope, before, frame, depth + 1)
        finally:
            self._active.discard(key)

    # ------------------------------------------------------------------ expressions
    def _trace(self, expr, scope: Scope, before, frame, depth: int) -> GraphTrace:
        def again(node: cst.BaseExpression | None) -> GraphTrace:
            return self.trace(node, scope, before, frame, depth)

        if isinstance(expr, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString)):
            return DEAD
        if isinstance(expr, (cst.FormattedString, cst.ConcatenatedString)):
            return DEAD
        if isinstance(expr, cst.Name) and expr.value in ("None", "True", "False"):
            return DEAD
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._name(expr, scope, before, frame, depth)
        if isinstance(expr, cst.Call):
            return self._call(expr, scope, before, frame, depth)
        if isinstance(expr, cst.BinaryOperation):
            return combine(again(expr.left), again(expr.right))
        if isinstance(expr, cst.UnaryOperation):
            return DEAD if isinstance(expr.operator, cst.Not) else again(expr.expression)
        if isinstance(expr, cst.Comparison):
            parts = [again(expr.left)] + [again(c.comparator) for c in expr.comparisons]
            return cut(combine(*parts), expr)
        if isinstance(expr, cst.IfExp):
            return combine(again(expr.body), again(expr.orelse))
        if isinstance(expr, cst.Subscript):
            return self._subscript(expr, again)
        if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
            return combine(*(again(e.value) for e in expr.elements))
        if isinstance(expr, cst.Dict):
            return combine(
                *(again(e.value) for e in expr.elements if isinstance(e, cst.DictElement))
            )
        return OPAQUE  # comprehensions, lambdas, ...

    def _subscript(self, expr: cst.Subscript, again) -> GraphTrace:
        value = expr.value
        index = literal(_only_index(expr), None)
        called = method_call(value)
        reduction = called is not None and called[1] in TUPLE_REDUCTIONS
        if index == 1 and reduction and isinstance(value, cst.Call) and value.args:
            return cut(again(called[0]), expr)  # type: ignore[index]  # ``out.max(1)[1]``
        return again(value)

    # ------------------------------------------------------------------ names
    def _name(self, expr, scope: Scope, before, frame, depth: int) -> GraphTrace:
        model = self.model
        name = dotted(expr)
        if isinstance(expr, cst.Attribute) and expr.attr.value in NUMBER_ATTRIBUTES:
            return DEAD
        if name is not None:
            role = model.role_of(expr, scope)
            if role in (Role.MODEL, Role.ENGINE):
                return LIVE  # the module itself (``model.weight``, ``sum(model.parameters())``)
            binding = model.dataflow.binding_before(name, scope, before)
            if binding is not None and (binding.scope is scope or "." not in name):
                outer = binding.scope is not None and binding.scope is not scope
                if outer or before is None or binding.order < before:  # a global: any time
                    found = self._binding(name, binding, scope, frame, depth)
                    return self._requires_grad_forced(name, binding, scope, before, found)
            if frame is not None and frame.callee is scope and name in frame.values:
                return self.trace(frame.values[name], frame.caller, frame.order, frame.outer, depth)
            if name in ("self", "cls"):
                return OPAQUE  # an object's state, not an input
            if name in scope.params:
                return self._parameter(name, scope, depth)
        if isinstance(expr, cst.Attribute):
            if expr.attr.value == "data":  # a tensor's ``.data``; ``self.data`` may be a list
                if dotted(expr.value) in ("self", "cls"):
                    return OPAQUE
                base = self.trace(expr.value, scope, before, frame, depth)
                return OPAQUE if base.opaque and not base.live else cut(base, expr)
            if expr.attr.value == "grad":
                return DEAD
            if expr.attr.value in PARAMETER_METHODS:
                return self.trace(expr.value, scope, before, frame, depth)
            base = self.trace(expr.value, scope, before, frame, depth)
            if dotted(expr.value) == "self" or (base.opaque and not base.live):
                return OPAQUE
            return base  # ``outputs.loss``, ``out.logits``
        return OPAQUE  # a global of another module, a name bound nowhere

    def _parameter(self, name: str, scope: Scope, depth: int) -> GraphTrace:
        """What same-file callers pass; a parameter nobody in the file passes is an input."""
        passed = passed_for(self.model.dataflow, name, scope)
        if not passed:
            return DEAD
        return combine(
            *(self.trace(arg, caller, order, None, depth) for arg, caller, order in passed)
        )

    def _binding(self, name: str, binding: Binding, scope: Scope, frame, depth: int) -> GraphTrace:
        value, order = binding.value, binding.order
        model = self.model
        if value is None or isinstance(binding.statement, cst.WithItem):
            return OPAQUE
        owner = binding.scope or scope
        if binding.from_iteration:
            if model.role_of(value, owner) is Role.LOADER or _over_loader(model, value, owner):
                return DEAD  # a batch of data
            return self.trace(value, owner, order, frame, depth)
        if binding.augmented:
            previous = model.dataflow.binding_before(name, owner, order)
            earlier = (
                self._binding(name, previous, owner, frame, depth)
                if previous is not None and previous.order < order
                else DEAD
            )
            return combine(self.trace(value, owner, order, frame, depth), earlier)
        index = binding.unpack_index
        if (
            index is not None
            and isinstance(value, (cst.Tuple, cst.List))
            and index < len(value.elements)
        ):
            value = value.elements[index].value
        found = self.trace(value, owner, order, frame, depth)
        if isinstance(value, cst.List) and not value.elements:
            found = combine(found, self._appended(name, owner, frame, depth))
        if model.dataflow.grad_disabled(binding.statement):
            return cut(found, binding.statement)  # made under ``no_grad``
        return found

    def _appended(self, name: str, scope: Scope, frame, depth: int) -> GraphTrace:
        """What ``name.append(v)`` / ``name.extend(vs)`` put into a list that began empty."""
        traces = []
        for site in self.model.calls_in(scope):
            called = method_call(site.node)
            if called is None or called[1] not in APPENDS or dotted(called[0]) != name:
                continue
            for arg in site.node.args:
                traces.append(self.trace(arg.value, scope, site.order, frame, depth))
        return combine(*traces) if traces else DEAD

    def _requires_grad_forced(
        self, name: str, binding: Binding, scope: Scope, before, found: GraphTrace
    ) -> GraphTrace:
        """``name.requires_grad = True`` / ``name.requires_grad_()`` between the binding and
        the point read: the value becomes a leaf that requires grad."""
        upper = before if before is not None else 1 << 60
        owner = binding.scope or scope
        for flag in owner.bindings.get(f"{name}.requires_grad", []):
            if binding.order < flag.order < upper and literal(flag.value, None) is True:
                return forced(found, flag.statement)
        for site in self.model.calls_in(owner):
            called = method_call(site.node)
            if called is None or called[1] != "requires_grad_" or dotted(called[0]) != name:
                continue
            if binding.order < site.order < upper and literal(positional(site.node, 0), True):
                return forced(found, site.node)
        return found

    # ------------------------------------------------------------------ calls
    def _call(self, call: cst.Call, scope: Scope, before, frame, depth: int) -> GraphTrace:
        model = self.model

        def again(node: cst.BaseExpression | None) -> GraphTrace:
            return self.trace(node, scope, before, frame, depth)

        def arguments() -> GraphTrace:
            return combine(*(again(a.value) for a in call.args))

        qualified = model.imports.qualify(call.func) or ""
        wants_grad = literal(keyword(call, "requires_grad"), None) is True
        if qualified in REBUILDING_TORCH:
            rebuilt = cut(again(positional(call, 0)), call)
            return forced(rebuilt, call) if wants_grad else rebuilt
        if qualified in VARIABLE or (not qualified and dotted(call.func) == "Variable"):
            inner = again(positional(call, 0))
            return forced(inner, call) if wants_grad else inner
        if qualified in PARAMETER:
            return LIVE
        root = qualified.partition(".")[0]
        if root == "torch":
            if qualified.rsplit(".", 1)[-1] in TORCH_FACTORIES:
                return LIVE if wants_grad else DEAD
            return arguments()  # ``torch.cat``, ``F.mse_loss``, distributions, ...
        if root in ("numpy", "math", "statistics"):
            return cut(arguments(), call)
        value = model.value_of(call.func, scope)
        role = value.role if value is not None else None
        if role in (Role.MODEL, Role.ENGINE) or model.is_known_module(call.func, scope):
            return LIVE
        if dotted(call.func) == "self" and scope.cls is not None:
            return LIVE if model.is_module_class(scope.cls) else OPAQUE
        if role is Role.CRITERION:
            return arguments()
        called = method_call(call)
        if called is not None:
            return self._method(call, called[0], called[1], scope, before, frame, depth)
        if isinstance(call.func, cst.Name):
            builtin = call.func.value
            if builtin in CUT_BUILTINS and not model.imports.qualify(call.func):
                return cut(arguments(), call)
            if builtin in COMBINING_BUILTINS:
                return arguments()
            if builtin in NO_VALUE_BUILTINS:
                return DEAD
        callee = model.callee(call, scope, external=False)
        if callee is not None and depth < MAX_DEPTH * 8:
            return self._returns(call, callee, scope, before, frame, depth)
        return OPAQUE

    def _method(self, call, receiver, method: str, scope, before, frame, depth) -> GraphTrace:
        model = self.model

        def again(node: cst.BaseExpression | None) -> GraphTrace:
            return self.trace(node, scope, before, frame, depth)

        callee = model.callee(call, scope, external=False)
        owner = callee.cls if callee is not None else None
        module_method = owner is not None and model.is_module_class(owner)
        if model.role_of(receiver, scope) in (Role.MODEL, Role.ENGINE) or (
            module_method and dotted(receiver) == "self"
        ):
            if forward_like(method) or method in PARAMETER_METHODS:
                return LIVE
            if module_method and callee is not None:  # ``model.pi(s)``: what it returns
                return self._returns(call, callee, scope, before, frame, depth)
            return OPAQUE
        if method in CUT_METHODS:
            return cut(again(receiver), call)
        if method == "requires_grad_":
            inner = again(receiver)
            return forced(inner, call) if literal(positional(call, 0), True) else inner
        if callee is not None:
            return OPAQUE  # a method of a same-file object: its state is not followed
        base = again(receiver)
        if base.opaque and not base.live:
            return OPAQUE
        # tensor methods: ``.mean()``, ``.gather(1, a)``
        return combine(base, *(again(a.value) for a in call.args))

    def _returns(self, call, callee: Scope, scope: Scope, before, frame, depth) -> GraphTrace:
        values = parameter_values(self.model.dataflow, call, callee)
        inner = _Frame(callee, values, scope, before, frame)
        if not callee.returns:
            return OPAQUE
        traces = []
        for returned, order in zip(callee.returns, callee.return_orders, strict=False):
            traced = self.trace(returned, callee, order, inner, depth)
            if self.model.dataflow.grad_disabled(returned):
                traced = cut(traced, call)
            traces.append(traced)
        return combine(*traces)

    def _frames(self, via: tuple[cst.Call, ...], scope: Scope) -> _Frame | None:
        """The frames of a helper's backward reached through the calls ``via`` (outermost
        first): ``scope`` is what ``via[-1]`` runs."""
        if not via:
            return None
        call = via[-1]
        site = self.model.dataflow.call_sites().get(id(call))
        if site is None:
            return None
        caller, order = site
        values = parameter_values(self.model.dataflow, call, scope)
        return _Frame(scope, values, caller, order, self._frames(via[:-1], caller))

    def _train_backwards(self) -> list[Event]:
        model = self.model
        found: list[Event] = []
        for step in model.train_steps:
            found += step.backwards
        for scope in model.scopes:
            if scope.is_module or model.is_framework_managed(scope):
                continue
            if not model.may_hold_events(scope, EventKind.BACKWARD, EventKind.STEP):
                continue  # the names of its calls say: not flattened (most functions)
            events = model.function_events(scope)
            kinds = {e.kind for e in events}
            if EventKind.BACKWARD in kinds and EventKind.STEP in kinds:
                found += [e for e in events if e.kind is EventKind.BACKWARD]
        return found


def _only_index(expr: cst.Subscript) -> cst.BaseExpression | None:
    if len(expr.slice) != 1:
        return None
    element = expr.slice[0].slice
    return element.value if isinstance(element, cst.Index) else None


def _over_loader(model: TrainingModel, source: cst.BaseExpression, scope: Scope) -> bool:
    """``enumerate(loader)``, ``tqdm(loader)``, ``zip(loader_a, loader_b)``."""
    if isinstance(source, cst.Call) and dotted(source.func) in ("enumerate", "tqdm", "iter", "zip"):
        return any(model.role_of(a.value, scope) is Role.LOADER for a in source.args)
    return False
