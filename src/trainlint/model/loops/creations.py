"""What a loop makes afresh on every iteration: optimizers, and the models they train.

:func:`optimizer_creations` lists optimizer constructions (a call whose value the role model
reads as an optimizer: ``torch.optim.Adam(...)``, ``timm.optim.create_optimizer_v2``, ...)
with the name they are bound to, the loops around them (innermost first, within their
function), whether they run under a condition inside the innermost loop, and the objects
whose parameters they take (``model`` in ``Adam(model.parameters())``, also through
``params = [p for p in model.parameters() if p.requires_grad]`` and param-group dicts).

:func:`made_in_loop` says whether a name is bound afresh inside a loop (assigned there, or the
loop's own target: ``for net in nets``) or re-initialized there in place
(``model.load_state_dict(init)``, ``model.apply(reset)``, ``model.reset_parameters()``):
k-fold and hyper-parameter searches that rebuild the model with its optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    dotted_prefixes,
    keyword,
    method_call,
    positional,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

_PARAMETER_METHODS = {"parameters", "named_parameters", "trainable_parameters", "get_parameters"}
_TF_VARIABLES = {"trainable_variables", "trainable_weights", "variables"}
_RESETS = {"load_state_dict", "apply", "reset_parameters", "init_weights", "initialize_weights"}


@dataclass(frozen=True, eq=False)
class OptimizerCreation:
    call: cst.Call
    scope: Scope
    target: str | None  # the name the optimizer is bound to
    loops: tuple[LoopInfo, ...]  # around the call in its function, innermost first
    conditional: bool  # under an ``if`` inside the innermost loop
    owners: tuple[str, ...]  # whose parameters it optimizes: ``model``, ``self.net``
    given: str | None  # the name passed as its parameters, when a name (``fast_weights``)


class Creations:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._members: dict[int, set[int]] = {}

    def loops_around(self, node: cst.CSTNode) -> tuple[LoopInfo, ...]:
        found = []
        current = self.model.dataflow.parent(node)
        while current is not None and not isinstance(current, (cst.FunctionDef, cst.Module)):
            loop = self.model.loop_for(current)
            if loop is not None:
                found.append(loop)
            current = self.model.dataflow.parent(current)
        return tuple(found)

    def inside(self, node: cst.CSTNode, loop: LoopInfo) -> bool:
        key = id(loop.node)
        if key not in self._members:
            self._members[key] = {id(n) for n in descendants(loop.node)}
        return id(node) in self._members[key]

    def conditional(self, node: cst.CSTNode, loop: LoopInfo) -> bool:
        current = self.model.dataflow.parent(node)
        while current is not None and current is not loop.node:
            if isinstance(current, (cst.If, cst.IfExp, cst.Try)):
                return True
            current = self.model.dataflow.parent(current)
        return False

    @cached_property
    def optimizers(self) -> list[OptimizerCreation]:
        model = self.model
        targets: dict[int, str] = {}
        for scope in model.scopes:
            for name, bindings in scope.bindings.items():
                for binding in bindings:
                    if isinstance(binding.value, cst.Call) and binding.unpack_index is None:
                        targets.setdefault(id(binding.value), name)
        found = []
        for site in model.calls:
            if not site.qualified:
                continue
            value = model.value_of(site.node, site.scope)
            if value is None or value.role is not Role.OPTIMIZER or value.call is not site.node:
                continue
            loops = self.loops_around(site.node)
            found.append(
                OptimizerCreation(
                    site.node,
                    site.scope,
                    targets.get(id(site.node)),
                    loops,
                    bool(loops) and self.conditional(site.node, loops[0]),
                    tuple(self.owners(site.node, site.scope)),
                    dotted(self._params_argument(site.node)),
                )
            )
        return found

    def owners(self, call: cst.Call, scope: Scope) -> list[str]:
        """Whose parameters an optimizer constructor is given."""
        params = self._params_argument(call)
        return self._owners_in(params, scope, 0) if params is not None else []

    @staticmethod
    def _params_argument(call: cst.Call) -> cst.BaseExpression | None:
        params = keyword(call, "params") or positional(call, 0)
        if params is None:
            params = keyword(call, "model") or keyword(call, "model_or_params")
        return params

    def _owners_in(self, expr: cst.BaseExpression, scope: Scope, depth: int) -> list[str]:
        found: list[str] = []
        nodes = [expr, *descendants(expr)]
        for node in nodes:
            method = method_call(node)
            if method is not None and method[1] in _PARAMETER_METHODS:
                name = dotted(method[0])
                if name:
                    found.append(name)
        if found or depth > 2:
            return found
        name = dotted(expr)
        if isinstance(expr, (cst.Name, cst.Attribute)) and name:
            if name in scope.params and not name.startswith("self."):
                return [name]  # the parameters themselves were passed in
            for binding in self.model.lookup(name, scope)[:2]:
                if binding.value is not None and not binding.augmented:
                    found += self._owners_in(binding.value, binding.scope or scope, depth + 1)
            return found
        # ``create_optimizer(model, ...)``-style factories and bare models
        value = self.model.value_of(expr, scope)
        if value is not None and value.role is Role.MODEL and name:
            return [name]
        return found

    def stepped_owners(self, step: cst.CSTNode) -> list[str]:
        """TF: whose variables a step applies to (``opt.apply_gradients(zip(g,
        model.trainable_variables))``)."""
        found = []
        for node in descendants(step):
            if isinstance(node, cst.Attribute) and node.attr.value in _TF_VARIABLES:
                name = dotted(node.value)
                if name:
                    found.append(name)
        return found

    def made_in_loop(self, name: str, scope: Scope, loop: LoopInfo) -> bool:
        """``name`` (or what it is an attribute of) is bound or re-initialized in ``loop``."""
        names = dotted_prefixes(name)
        for candidate in names:
            for binding in self.model.lookup(candidate, scope):
                statement = binding.statement
                if statement is loop.node or self.inside(statement, loop):
                    return True
        for site in self.model.calls:
            method = method_call(site.node)
            if method is None or method[1] not in _RESETS:
                continue
            if dotted(method[0]) in names and self.inside(site.node, loop):
                return True
        return False
