"""Callers in other modules: the train/eval and grad mode a function of this file runs in when
another module of the project calls it.

Summaries follow callees (``train.py`` sees what ``engine.validate`` does); the mode analysis
(:mod:`..loops.modes`) also needs the other direction: ``train.py`` runs ``model.eval();
validate(model, val_loader)``, so ``validate`` in ``engine.py`` evaluates in eval mode. Asked
only when a function's mode at a parameter model is still unknown after its same-file callers
(the cheap case first), through the project index (:mod:`trainlint.callers` finds the modules
that import the function and caches their records).

A record is read off the *caller's* model, built without a project index, so it is a pure
function of the caller's text (cacheable by its hash): the mode of each argument just before
the call (the caller's own switches, same-file helpers and same-file callers, as for any
call), and whether the call runs with gradients off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainlint.model.summaries.queries import target_of
from trainlint.model.syntax.nodes import dotted, keyword, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


@dataclass(frozen=True)
class CallerRecord:
    """One call of the function in another module."""

    #: Per parameter of the callee (in order): the Mode value (``eval``, ``train``,
    #: ``either``, ``unknown``) of the model the caller passes, just before the call.
    modes: tuple[str, ...]
    grad_off: bool = False  # under ``no_grad`` (or every caller of the caller is)
    line: int = 0

    def mode_of(self, params: tuple[str, ...], param: str) -> str:
        if param not in params:
            return "unknown"
        index = params.index(param)
        return self.modes[index] if index < len(self.modes) else "unknown"

    def to_json(self) -> list[Any]:
        return [list(self.modes), self.grad_off, self.line]

    @classmethod
    def from_json(cls, data: Any) -> CallerRecord | None:
        try:
            modes, grad_off, line = data
            return cls(tuple(str(m) for m in modes), bool(grad_off), int(line))
        except (TypeError, ValueError):
            return None


def records_in(
    model: TrainingModel, calls_it: Callable[[str], bool], params: tuple[str, ...]
) -> list[CallerRecord]:
    """The calls in ``model`` (a caller's module) of the function whose import paths
    ``calls_it`` accepts (``engine.validate``, ``.engine.validate``, ``utils.engine.validate``).
    A name the caller defines itself is its own function, never the import."""
    modes = model.modes
    found = []
    for site in model.calls:
        target = target_of(model, site.dotted)
        if not target or not calls_it(target):
            continue
        if model.callee(site.node, site.scope, external=False) is not None:
            continue
        states = []
        for position, param in enumerate(params):
            argument = keyword(site.node, param) or positional(site.node, position)
            name = dotted(argument)
            if name is None:
                states.append("unknown")
                continue
            states.append(modes.mode_before(site.scope, site.node, name).mode.value)
        grad_off = modes.call_grad_disabled(site.scope, site.node)
        found.append(CallerRecord(tuple(states), grad_off, model.line_of(site.node)))
    return found


def external_callers(model: TrainingModel, scope: Scope) -> list[CallerRecord] | None:
    """The calls of ``scope`` (a top-level function of this file) in the project's other
    modules; None when there is no project index or ``scope`` is not such a function."""
    project = model.project
    ask = getattr(project, "callers", None)
    if ask is None or scope.is_module or scope.cls is not None or scope.node is None:
        return None
    if scope.parent is None or not scope.parent.is_module:
        return None  # a nested function: no other module can call it
    if model.module_scope.functions.get(scope.short_name) is not scope:
        return None  # redefined later, or not bound by this name
    return ask(scope.short_name, tuple(scope.params))
