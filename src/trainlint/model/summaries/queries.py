"""Reading other modules' summaries from one file's model: which summary a call or an object
stands for.

The same questions the model answers for same-file code (``callee``, ``instance_class``), when
the answer lives in another module of the project: ``train_one_epoch(...)`` imported from
``engine``, ``meter.update(loss)`` on ``meter = AverageMeter()`` imported from ``utils``,
``model(X, Y)`` on ``model = GPT(config)`` imported from ``model``. Same-file definitions always
win (a local ``def`` shadows an import); without a project index every answer is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import libcst as cst

from trainlint.model.dataflow.objects import constructions
from trainlint.model.summaries.types import ClassSummary, Definition, FunctionSummary, Returned
from trainlint.model.syntax.nodes import dotted

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, Scope


class SummarySource(Protocol):
    """What the model needs of the project index (:class:`trainlint.project.ProjectView`)."""

    def lookup(
        self, target: str, classes_only: bool = False
    ) -> tuple[Definition, list[str]] | None: ...


@dataclass(frozen=True)
class External:
    """A call into another module of the project: the function it runs, and for a method or a
    constructor, the class."""

    function: FunctionSummary | None
    owner: ClassSummary | None = None
    target: str = ""  # ``utils.AverageMeter.update`` / ``.engine.train_one_epoch``

    @property
    def constructs(self) -> bool:
        """``AverageMeter(...)``: the call makes an instance of ``owner``."""
        return self.function is None and self.owner is not None


def target_of(model: TrainingModel, name: str | None) -> str | None:
    """The import path a dotted name stands for, when an import binds its root."""
    if not name:
        return None
    return model.imports.project_target(name) or model.imports.qualify_dotted(name)


def _is_local(model: TrainingModel, name: str, scope: Scope) -> bool:
    """Whether the root of ``name`` is defined or bound in this file (it shadows imports)."""
    root = name.split(".", 1)[0]
    if root in model.classes:
        return True
    current: Scope | None = scope
    while current is not None:
        if root in current.functions or root in current.bindings or root in current.params:
            return True
        current = current.parent
    return False


def lookup(
    model: TrainingModel, name: str | None, scope: Scope, classes_only: bool = False
) -> Definition | None:
    """The summary a dotted name of ``scope`` refers to in another module (None: not one).
    ``classes_only``: a function is not summarized (the index tells them apart unparsed)."""
    project = model.project
    if project is None or not name:
        return None
    # The answer depends on the name and the scope only; rules and the model ask again and
    # again for the same (every value of a name, every call on it).
    memo = model.stubs.lookups
    key = (name, id(scope), classes_only)
    if key not in memo:  # the scope is kept with the answer: its id stays its own
        memo[key] = (scope, _lookup(model, project, name, scope, classes_only))
    return memo[key][1]  # type: ignore[return-value]


def _lookup(
    model: TrainingModel, project: SummarySource, name: str, scope: Scope, classes_only: bool
) -> Definition | None:
    target = target_of(model, name)
    if target is None or _is_local(model, name, scope):
        return None
    found = project.lookup(target, classes_only)
    if found is None:
        return None
    definition, rest = found
    if not rest:
        return definition
    if isinstance(definition, ClassSummary) and len(rest) == 1:
        return definition.method(rest[0])  # ``Trainer.fit`` as written
    return None


def class_summary(model: TrainingModel, name: str | None, scope: Scope) -> ClassSummary | None:
    found = lookup(model, name, scope, classes_only=True)
    return found if isinstance(found, ClassSummary) else None


def base_summary(model: TrainingModel, base: str) -> ClassSummary | None:
    """The project class (of another module) a same-file class's base names: as written
    (``BaseNet`` from a relative import) or already qualified (``trainers.BaseTrainer``)."""
    found = class_summary(model, base, model.module_scope)
    if (
        found is None
        and model.project is not None
        and "." in base
        and target_of(model, base) is None
    ):
        looked_up = model.project.lookup(base, classes_only=True)
        definition = looked_up[0] if looked_up is not None and not looked_up[1] else None
        found = definition if isinstance(definition, ClassSummary) else None
    return found


def instance_summary(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope
) -> ClassSummary | None:
    """The project class (of another module) ``expr`` is an instance of: from its binding
    (``meter = AverageMeter()``, ``self.meter = utils.AverageMeter("loss")``) or annotation."""
    if model.project is None:
        return None
    name = dotted(expr)
    if not name or name == "self":
        return None
    memo = model.stubs.instances  # like ``lookup``: a function of the name and the scope
    key = (name, id(scope))
    if key not in memo:
        memo[key] = (scope, _instance_summary(model, name, scope))
    return memo[key][1]  # type: ignore[return-value]


def _instance_summary(model: TrainingModel, name: str, scope: Scope) -> ClassSummary | None:
    for constructor, where in constructions(model, name, scope):
        found = class_summary(model, constructor, where) or _alternate_constructor(
            model, constructor, where
        )
        if found is not None:
            return found
    annotation = scope.annotations.get(name)
    if annotation:
        return class_summary(model, annotation, scope)
    return None


def _alternate_constructor(
    model: TrainingModel, constructor: str | None, scope: Scope
) -> ClassSummary | None:
    """``HookedTransformer.from_pretrained(...)``: a ``from_*`` method the class itself
    defines is an alternate constructor, its result an instance of the class."""
    owner, dot, method = (constructor or "").rpartition(".")
    if not dot or not method.startswith("from_"):
        return None
    found = class_summary(model, owner, scope)
    return found if found is not None and found.method(method) is not None else None


def external_call(model: TrainingModel, call: cst.Call, scope: Scope) -> External | None:
    """What ``call`` runs when that is defined in another module of the project: a function
    (``train_one_epoch(...)``, ``utils.compute_loss(...)``), a method of an instance
    (``meter.update(...)``), a forward (``model(X, Y)``), or a constructor (``GPT(config)``)."""
    if model.project is None:
        return None
    memo = model.stubs.calls
    if id(call) not in memo:
        memo[id(call)] = _external_call(model, call, scope)
        model.stubs.keep(call)
    return memo[id(call)]


def _external_call(model: TrainingModel, call: cst.Call, scope: Scope) -> External | None:
    func = call.func
    name = dotted(func)
    found = lookup(model, name, scope)
    if isinstance(found, FunctionSummary):
        return External(found, None, name or "")
    if isinstance(found, ClassSummary):
        return External(None, found, name or "")
    if isinstance(func, cst.Attribute):
        owner = instance_summary(model, func.value, scope)
        if owner is not None:
            method = owner.method(func.attr.value)
            return External(method, owner, name or "") if method is not None else None
    owner = instance_summary(model, func, scope)
    if owner is not None and owner.forward is not None:
        return External(owner.forward, owner, name or "")
    return None


def external_callee(model: TrainingModel, call: cst.Call, scope: Scope) -> Scope | None:
    """The stub of a function of another module ``call`` runs (``engine.train(...)``)."""
    if model.project is None:
        return None
    found = external_call(model, call, scope)
    if found is None or found.function is None or found.owner is not None:
        return None  # constructors and forwards are not helpers; methods: instance_class
    return model.stubs.function(found.function)


def inherited_method(model: TrainingModel, info: ClassInfo, name: str) -> Scope | None:
    """``self.train_step(...)`` that a base class of another project module defines: the
    method of that class's stub (a stub's own bases are another module's names: not followed)."""
    if model.project is None or model.stubs.class_summary(info) is not None:
        return None
    for base in info.bases:
        summary = base_summary(model, base)
        if summary is None or not summary.may_define(name):
            continue  # no stub made for it: a stub needs every method summarized
        stub = model.stubs.class_info(summary)
        if stub is not None and name in stub.methods:
            return stub.methods[name]
    return None


def returned_of(
    model: TrainingModel, call: cst.Call, scope: Scope, index: int | None = None
) -> Returned | None:
    """What ``call`` returns (slot ``index`` of a tuple) when another module's code makes it:
    a function's or method's return (its stub is the callee), or the forward of an instance
    of another module's ``nn.Module`` (``logits, loss = model(X, Y)``)."""
    if model.project is None:
        return None
    summary = model.stubs.function_summary(model.callee(call, scope))
    if summary is None:
        found = external_call(model, call, scope)
        if found is None or found.owner is None or not found.owner.is_module:
            return None
        if found.function is None or found.function is not found.owner.forward:
            return None
        summary = found.function
    return summary.returned(index)
