"""Objects of same-file classes: which class an instance is, and what its methods accumulate.

``meter = AverageMeter()`` makes ``meter.update(loss, n)`` a call of ``AverageMeter.update``:
the model follows it like a function call (its events are inlined into the caller's loop,
``self`` renamed to ``meter``). This module answers the two questions that needs:

* :func:`instance_class` -- the same-file class an expression is an instance of, from its
  binding (``meter = AverageMeter()``, ``self.meter = AverageMeter("loss")``) or annotation
  (``meter: AverageMeter``); for a class of another project module, its stub (see
  :mod:`..summaries.stubs`). Deliberately small: binding-based (a general ``instance_class``
  query of the value model will replace it);
* :func:`meter_summary` -- what a meter-like class does with ``update(val, n=1)``: which
  attribute sums ``val`` (weighted by ``n`` or not), which counts, and which attribute
  (``avg``) or method (``average()``) divides the two. TL202 reads it to tell a sample-weighted
  mean (``meter.update(loss.item(), x.size(0))``: fine) from a mean of batch means.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import descendants, dotted, literal, names_in

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.summaries.types import ClassSummary
    from trainlint.model.syntax.scopes import CallSite, ClassInfo, LoopInfo, Scope


def constructions(
    model: TrainingModel, name: str, scope: Scope
) -> Iterator[tuple[str | None, Scope]]:
    """What the latest plain bindings of ``name`` call (``meter = AverageMeter()``,
    ``self.meter = utils.AverageMeter("loss")``), with the scope each is written in."""
    for binding in model.lookup(name, scope)[:3]:
        if binding.augmented or binding.from_iteration or binding.unpack_index is not None:
            continue
        if isinstance(binding.value, cst.Call):
            yield dotted(binding.value.func), binding.scope or scope


def instance_class(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope, external: bool = True
) -> ClassInfo | None:
    """The same-file class ``expr`` is an instance of, when a binding or annotation says so."""
    name = dotted(expr)
    if not name or name == "self":
        return None
    for constructor, _ in constructions(model, name, scope):
        found = model.classes.get(constructor or "")
        if found is not None:
            return found
    annotation = scope.annotations.get(name)
    if annotation and annotation.rsplit(".", 1)[-1] in model.classes:
        return model.classes.get(annotation.rsplit(".", 1)[-1])
    if not external:
        return None
    found = model.instance_summary(expr, scope)  # a class of another project module
    return model.stubs.class_info(found) if found is not None else None


def method_of_instance(
    model: TrainingModel, call: cst.Call, scope: Scope, external: bool = True
) -> Scope | None:
    """The method ``call`` runs when it is ``obj.method(...)`` on an instance of a same-file
    class (or, ``external``, of another project module's class)."""
    func = call.func
    if isinstance(func, cst.Name):  # ``scorer(batch)``: a plain class's ``__call__``
        cls = instance_class(model, func, scope, external=False)
        if cls is None or model.is_module_class(cls):
            return None  # a module's call is its forward, not a helper
        return cls.methods.get("__call__")
    if not isinstance(func, cst.Attribute):
        return None
    cls = instance_class(model, func.value, scope, external=False)
    if cls is None and external:  # a class of another project module: its stub's method
        return _stub_method(model, model.instance_summary(func.value, scope), func.attr.value)
    if cls is None:
        return None
    return model.method(cls, func.attr.value)


def _stub_method(model: TrainingModel, summary: ClassSummary | None, name: str) -> Scope | None:
    """Method ``name`` of the stub of ``summary`` (an instance's class in another module), as
    :meth:`TrainingModel.method` finds it; the stub is made only when it may be found (a stub
    needs every method summarized; ``model.state_dict()`` on a module is none of them)."""
    if summary is None:
        return None
    if not summary.may_define(name) and not any(
        name in local.methods
        for local in (model.classes.get(base.rsplit(".", 1)[-1]) for base in summary.bases)
        if local is not None
    ):
        return None
    stub = model.stubs.class_info(summary)
    return model.method(stub, name) if stub is not None else None


@dataclass(frozen=True)
class MeterSummary:
    """How ``update(val, n)`` of a meter class accumulates, and how it averages."""

    total: str  # the attribute summing the values: ``sum``
    count: str  # the attribute counting them: ``count``
    value_param: str  # ``val``
    weight_param: str | None  # ``n`` when ``sum += val * n`` and ``count += n``
    weight_default: object  # the default of ``n`` (1 in the usual AverageMeter)
    averages: frozenset[str]  # attributes / methods that return ``total / count``

    def sample_weighted(self, call: cst.Call, update: Scope) -> bool:
        """Whether this ``update`` call weighs its value by a batch size (``n=x.size(0)``)."""
        if self.weight_param is None:
            return False
        params = [p for p in update.params if p not in ("self", "cls")]
        position = params.index(self.weight_param) if self.weight_param in params else -1
        for index, arg in enumerate(a for a in call.args if not a.star):
            if arg.keyword is not None:
                if arg.keyword.value == self.weight_param:
                    return literal(arg.value, None) != 1
            elif index == position:
                return literal(arg.value, None) != 1
        return self.weight_default not in (None, 1)


@dataclass(frozen=True)
class MeterUpdate:
    """One ``meter.update(value, n)`` call on a same-file meter class inside a loop."""

    call: cst.Call
    receiver: str  # ``losses``
    summary: MeterSummary
    value: cst.BaseExpression  # what is passed for ``val``
    weighted: bool  # weighted by a batch size (a mean over samples)


def meter_updates(model: TrainingModel, loop: LoopInfo) -> list[MeterUpdate]:
    """The ``update`` calls on instances of same-file meter classes in ``loop``'s body (not in
    nested loops)."""
    found = []
    for site in _calls_directly_in(model).get(id(loop.node), ()):
        if site.scope is not loop.scope:
            continue
        func = site.node.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "update":
            continue
        cls = instance_class(model, func.value, site.scope)
        if cls is None:
            continue
        summary = meter_summary(model, cls)
        update = model.method(cls, "update")
        if summary is None or update is None or not site.node.args:
            continue
        value = site.node.args[0].value
        weighted = summary.sample_weighted(site.node, update)
        found.append(MeterUpdate(site.node, dotted(func.value) or "", summary, value, weighted))
    return found


#: model -> id(loop node) -> the call sites directly in that loop (in no loop nested in it).
#: Built once per model: per loop, scanning every call would be quadratic in the loops.
_BY_LOOP: weakref.WeakKeyDictionary[TrainingModel, dict[int, list[CallSite]]] = (
    weakref.WeakKeyDictionary()
)


def _calls_directly_in(model: TrainingModel) -> dict[int, list[CallSite]]:
    found = _BY_LOOP.get(model)
    if found is None:
        found = {}
        for site in model.calls:
            loop = _enclosing_loop(model, site.node)
            if loop is not None:
                found.setdefault(id(loop), []).append(site)
        _BY_LOOP[model] = found
    return found


def _enclosing_loop(model: TrainingModel, node: cst.CSTNode) -> cst.CSTNode | None:
    """The innermost loop around ``node`` in its own function (None: not in a loop)."""
    placement = model.dataflow.placement
    current = placement.parent(node)
    while current is not None:
        kind = type(current)  # climbs every call's ancestors: no ABC isinstance (syntax.nodes)
        if kind is cst.For or kind is cst.While:
            return current
        if kind is cst.FunctionDef or kind is cst.ClassDef:
            return None
        current = placement.parent(current)
    return None


def meter_summary(model: TrainingModel, cls: ClassInfo) -> MeterSummary | None:
    """The :class:`MeterSummary` of a same-file class with an ``update`` method that sums its
    first argument into an attribute and counts the calls (or the weights)."""
    external = model.stubs.class_summary(cls)
    if external is not None:  # another module's class: its summary read the real code
        info = external.meter
        if info is None:
            return None
        return MeterSummary(
            info.total,
            info.count,
            info.value_param,
            info.weight_param,
            info.weight_default,
            frozenset(info.averages),
        )
    update = model.method(cls, "update")
    if update is None or not isinstance(update.node, cst.FunctionDef):
        return None
    params = [p for p in update.params if p not in ("self", "cls")]
    if not params:
        return None
    value_param = params[0]
    total = count = weight = None
    for node in descendants(update.node.body):
        if not isinstance(node, cst.AugAssign) or not isinstance(node.operator, cst.AddAssign):
            continue
        target = dotted(node.target) or ""
        if not target.startswith("self."):
            continue
        used = names_in(node.value)
        if value_param in used and total is None:
            total = target[len("self.") :]
            others = [p for p in params[1:] if p in used]
            weight = others[0] if others else None
        elif value_param not in used and count is None:
            count = target[len("self.") :]
            if weight is None and len(params) > 1 and params[1] in used:
                weight = params[1]
    if total is None or count is None:
        return None
    averages = _averages(model, cls, total, count)
    default = _default_of(update, weight) if weight else None
    return MeterSummary(total, count, value_param, weight, default, frozenset(averages))


def _averages(model: TrainingModel, cls: ClassInfo, total: str, count: str) -> set[str]:
    """Attributes (``self.avg = self.sum / self.count``) and methods returning the ratio."""
    found: set[str] = set()
    for method, scope in cls.methods.items():
        for node in descendants(scope.node):
            if not isinstance(node, cst.BinaryOperation) or not isinstance(
                node.operator, cst.Divide
            ):
                continue
            left, right = dotted(node.left), node.right
            if left != f"self.{total}" or f"self.{count}" not in names_in(right):
                continue
            found.add(method)
    for attribute, bindings in cls.attributes.items():
        for binding in bindings:
            value = binding.value
            if (
                isinstance(value, cst.BinaryOperation)
                and isinstance(value.operator, cst.Divide)
                and dotted(value.left) == f"self.{total}"
            ):
                found.add(attribute)
    return found


def _default_of(scope: Scope, param: str) -> object:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return None
    for candidate in (*node.params.params, *node.params.kwonly_params):
        if candidate.name.value == param and candidate.default is not None:
            return literal(candidate.default, None)
    return None
