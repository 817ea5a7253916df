"""Optimizers left holding the parameters of a model the code has since replaced.

``opt = Adam(model.parameters())`` captures the parameter tensors of the object ``model``
holds at that moment. :func:`stale_optimizers` finds a later binding of ``model`` (same
function; or, for ``self.model``, later in ``__init__`` while another method of the class
trains) to a NEW module object -- a module constructor (``torch.nn``, a same-file or project
``nn.Module`` subclass, a model factory), ``torch.load``/``torch.jit.load``,
``copy.deepcopy``, ``from_pretrained``, ``load_from_checkpoint``, a same-file factory
function returning one of these, a factory of another project module not given the old model
-- before a loop that steps ``opt`` and uses ``model`` (or a call of a function, of this or
another module, that steps and runs the ones it is given), with the optimizer not rebuilt in
between.

What keeps the same parameters is not a new object for this purpose: ``.to()``, ``.cuda()``,
``.half()`` (in place), DDP/FSDP/DataParallel, ``torch.compile``, ``accelerator.prepare``,
``amp.initialize``, ``convert_sync_batchnorm`` (it reuses the parameters), ``model.module``,
and ``load_state_dict`` (in place, no binding at all). A rebinding in the other arm of an
``if`` than the optimizer is another path, not a later step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import EventKind
from trainlint.model.summaries.queries import class_summary
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, dotted, dotted_prefixes, method_call, names_in
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.roles import Role, classify_constructor
from trainlint.model.values.types import ClassKind
from trainlint.model.values.wrappers import RECEIVER_METHODS, wrapped_slot

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.creations import OptimizerCreation
    from trainlint.model.syntax.scopes import Binding, Scope

_LOADERS = {"torch.load", "torch.jit.load", "copy.deepcopy", "dill.load", "pickle.load"}
_LOADING_METHODS = {"from_pretrained", "load_from_checkpoint"}
_MAX_DEPTH = 3


@dataclass(frozen=True, eq=False)
class StaleOptimizer:
    creation: OptimizerCreation
    owner: str  # ``model``: whose parameters the optimizer was built from
    rebinding: Binding  # ``model = ...`` (its statement is the anchor)
    made_by: cst.Call  # what makes the new module (``torch.load(path)``)
    #: What steps the optimizer afterwards: a loop, or a call of a function that trains
    #: (``train(model, optimizer, loader)``).
    trainer: cst.CSTNode


def stale_optimizers(model: TrainingModel) -> list[StaleOptimizer]:
    found = []
    for creation in model.creations.optimizers:
        target = creation.target
        if target is None:
            continue
        # ``Adam(model.head.parameters())`` goes stale when ``model`` itself is rebound too
        owners = [p for o in creation.owners for p in dotted_prefixes(o)]
        for owner in dict.fromkeys(owners):
            stale = _stale(model, creation, target, owner)
            if stale is not None:
                found.append(stale)
                break
    return found


def _stale(
    model: TrainingModel, creation: OptimizerCreation, target: str, owner: str
) -> StaleOptimizer | None:
    scope = creation.scope
    built = model.dataflow.order(creation.call) or 0
    in_init = scope.cls is not None and scope.short_name == "__init__"
    if owner.startswith("self.") != target.startswith("self.") or (
        owner.startswith("self.") and not in_init
    ):
        return None
    for binding in sorted(scope.bindings.get(owner, []), key=lambda b: b.order):
        if binding.order <= built or binding.augmented or binding.from_iteration:
            continue
        if binding.unpack_index is not None or binding.value is None:
            continue
        if _exclusive(model, binding.statement, creation.call):
            continue
        made_by = new_module(model, binding.value, scope, owner)
        if made_by is None:
            continue
        if _rebuilt(model, scope, target, binding, in_init):
            return None
        trainer = _stepping_loop(model, creation, target, owner, binding, in_init)
        if trainer is None and not in_init:
            trainer = _stepping_call(model, scope, target, owner, binding)
        if trainer is not None:
            return StaleOptimizer(creation, owner, binding, made_by, trainer)
    return None


def new_module(
    model: TrainingModel, value: cst.BaseExpression, scope: Scope, owner: str, depth: int = 0
) -> cst.Call | None:
    """The call making a NEW module object out of ``value`` (``None``: the same object as
    ``owner`` re-wrapped, or nothing known)."""
    while True:
        method = method_call(value)
        if method is None or method[1] not in RECEIVER_METHODS or not isinstance(value, cst.Call):
            break
        value = method[0]  # ``Net().to(device)``: the constructor decides
    if not isinstance(value, cst.Call) or depth > _MAX_DEPTH:
        return None
    qualified = model.imports.qualify(value.func)
    if wrapped_slot(value, qualified, None) is not None:
        return None  # DDP, compile, prepare...: the same parameters
    if qualified in _LOADERS:
        return value
    written = dotted(value.func) or ""
    if written.rsplit(".", 1)[-1] in _LOADING_METHODS:
        return None if _not_a_model(qualified or written) else value
    if qualified:
        found = classify_constructor(qualified, value)
        if found is not None:
            torch_like = not is_under(qualified, "tensorflow", "keras")
            return value if found.role is Role.MODEL and torch_like else None
    name = dotted(value.func)
    info = model.classes.get(name) if name else None
    if info is not None:
        kind = model.class_kind(info)
        if kind.is_torch_module:
            return value
        if kind is not ClassKind.UNKNOWN or model.project is None:
            return None
    if model.project is not None:
        summary = class_summary(model, name, scope)
        if summary is not None:
            return value if summary.is_module else None
    callee = model.callee(value, scope, external=False)
    if callee is None:
        return _built_elsewhere(model, value, scope, owner)
    if not callee.returns or callee is scope:
        return None
    for returned in callee.returns:
        if new_module(model, returned, callee, owner, depth + 1) is None:
            return None
    return value  # a same-file factory: every return makes a new module


def _built_elsewhere(
    model: TrainingModel, call: cst.Call, scope: Scope, owner: str
) -> cst.Call | None:
    """``build_model(cfg)`` of another project module, returning a model, and not handed the
    old one (a helper given ``model`` may return it re-wrapped)."""
    returned = model.returned_summary(call, scope)
    if returned is None or returned.role != Role.MODEL.value:
        return None
    root = owner.split(".", 1)[0]
    if any(root in names_in(arg.value) for arg in call.args):
        return None
    return call


def _not_a_model(name: str) -> bool:
    """``AutoTokenizer.from_pretrained``, ``TFAutoModel.from_pretrained``: no torch module."""
    owner = name.rsplit(".", 2)[-2] if "." in name else ""
    words = ("Tokenizer", "Config", "Processor", "Extractor", "Pipeline")
    return any(word in owner for word in words) or owner.startswith(("TF", "Flax"))


def _stepping_loop(
    model: TrainingModel,
    creation: OptimizerCreation,
    target: str,
    owner: str,
    binding: Binding,
    in_init: bool,
) -> cst.CSTNode | None:
    scope = creation.scope
    for loop in model.loops:
        if loop.external:
            continue
        if in_init:
            if loop.scope.cls is not scope.cls or loop.scope is scope:
                continue
        elif loop.scope is not scope or loop.order <= binding.order:
            continue
        if model.creations.inside(binding.statement, loop):
            continue
        events = model.iteration(loop)
        if not any(e.kind is EventKind.STEP and e.subject == target for e in events):
            continue
        forwards = any(e.kind is EventKind.FORWARD and e.subject == owner for e in events)
        if forwards or _mentions(loop.node, owner):  # also a forward in a helper it calls
            return loop.node
    return None


def _stepping_call(
    model: TrainingModel, scope: Scope, target: str, owner: str, binding: Binding
) -> cst.Call | None:
    """A later call, outside any loop, of a function (this module's or another's) that
    steps the optimizer it is given and runs the model it is given."""
    for site in model.calls_in(scope):
        if site.order <= binding.order or model.creations.loops_around(site.node):
            continue
        callee = model.callee(site.node, scope)
        if callee is None or callee is scope:
            continue
        renames = model.argument_renames(site.node, callee)
        given = [p for p in callee.params if dotted(argument_for(site.node, callee, p)) == target]
        if any(callee.bindings.get(p) for p in given):
            continue  # the function builds its own optimizer under the parameter's name
        stepped = trained = False
        for event in model.function_events(callee):
            subject = renames.get(event.subject or "", event.subject)
            stepped = stepped or (event.kind is EventKind.STEP and subject == target)
            trained = trained or (event.kind is EventKind.FORWARD and subject == owner)
        if stepped and trained:
            return site.node
    return None


def _rebuilt(model: TrainingModel, scope: Scope, target: str, binding: Binding, in_init: bool):
    """The optimizer re-made (or given new parameters) after the rebinding."""
    later = [b for b in scope.bindings.get(target, []) if b.order > binding.order]
    if later:
        return True
    if in_init and scope.cls is not None:
        for method in scope.cls.methods.values():
            if method is not scope and method.bindings.get(target):
                return True
    for site in model.calls:
        method = method_call(site.node)
        if method is not None and method[1] == "add_param_group" and dotted(method[0]) == target:
            return True
    return False


def _mentions(node: cst.CSTNode, name: str) -> bool:
    return any(
        isinstance(n, (cst.Name, cst.Attribute)) and dotted(n) == name for n in descendants(node)
    )


def _exclusive(model: TrainingModel, first: cst.CSTNode, second: cst.CSTNode) -> bool:
    """Whether the two nodes sit in different arms of one ``if``."""
    arms_of_first = _arms(model, first)
    for if_node, arm in _arms(model, second).items():
        other = arms_of_first.get(if_node)
        if other is not None and other != arm:
            return True
    return False


def _arms(model: TrainingModel, node: cst.CSTNode) -> dict[int, int]:
    """id(if statement) -> which arm ``node`` is in (0: the body, 1: else / elif)."""
    found: dict[int, int] = {}
    child, current = node, model.dataflow.parent(node)
    while current is not None and not isinstance(current, (cst.FunctionDef, cst.Module)):
        if isinstance(current, cst.If):
            found[id(current)] = 0 if child is current.body else 1
        child, current = current, model.dataflow.parent(current)
    return found
