"""What same-file callers pass for a parameter (functions, methods and class constructors).

``Trainer(mlp, 1e-3)`` passes ``mlp`` for ``Trainer.__init__``'s ``model``; ``compute_loss(
model(x), y)`` passes the model's output for ``outputs``. Analyses of what a value is ask here
when a name is a parameter with no binding of its own, and join the answers of every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, keyword, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

Argument = tuple[cst.BaseExpression, "Scope", int]


class Callers:
    """Calls of each same-file function, method and class (built on first use)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._calls: dict[int, list[tuple[cst.Call, Scope, int]]] | None = None

    def _index(self) -> dict[int, list[tuple[cst.Call, Scope, int]]]:
        if self._calls is None:
            model = self.model
            self._calls = {}
            for site in model.calls:
                callee = model.callee(site.node, site.scope)
                if callee is None:
                    info = model.classes.get(dotted(site.node.func) or "")
                    if info is not None:
                        callee = model.method(info, "__init__")
                if callee is not None:
                    entry = (site.node, site.scope, site.statement_order)
                    self._calls.setdefault(id(callee), []).append(entry)
        return self._calls

    def arguments(self, param: str, scope: Scope) -> list[Argument]:
        """What each same-file call of ``scope`` passes for ``param`` (calls that pass nothing
        for it, or pass ``*args``, are left out)."""
        params = list(scope.params)
        if scope.cls is not None and params and params[0] in ("self", "cls"):
            params = params[1:]
        if param not in params:
            return []
        position = params.index(param)
        found: list[Argument] = []
        for call, caller, order in self._index().get(id(scope), []):
            argument = keyword(call, param)
            if argument is None and not any(a.star for a in call.args):
                argument = positional(call, position)
            if argument is not None:
                found.append((argument, caller, order))
        return found

    def parameter_of(self, expr: cst.BaseExpression, scope: Scope) -> tuple[str, Scope] | None:
        """The parameter ``expr`` stands for: ``model`` itself when it is an unbound parameter
        of ``scope``, or ``self.model`` whose only binding is ``self.model = model``."""
        name = dotted(expr)
        if name is None:
            return None
        if "." not in name:
            if name in scope.params and not scope.bindings.get(name):
                return name, scope
            return None
        bindings = self.model.lookup(name, scope)
        if len(bindings) != 1:
            return None
        value, owner = bindings[0].value, bindings[0].scope
        if (
            isinstance(value, cst.Name)
            and owner is not None
            and value.value in owner.params
            and not owner.bindings.get(value.value)
        ):
            return value.value, owner
        return None
