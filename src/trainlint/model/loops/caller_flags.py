"""Conditions a function's caller decides: tests on the function's own parameters.

``def train_epoch(model, loader, optimizer, do_zero_grad=True)`` with ``if do_zero_grad:
optimizer.zero_grad()`` in its loop clears on every iteration unless a caller asks it not to
(accumulating across calls, say). Whether that is right is the caller's decision, not a bug of
the loop: rules that require an event on every iteration ask :func:`runs_whenever_caller_allows`
instead of :func:`~trainlint.model.loops.gradients.runs_whenever`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.gradients import runs_whenever

if TYPE_CHECKING:
    from trainlint.model.loops.event_types import Condition, Event
    from trainlint.model.syntax.scopes import Scope


def parameter_flag(condition: Condition, scope: Scope) -> bool:
    """``if flag:`` / ``if not flag:`` / ``if cfg.zero_grad:`` where ``flag`` (``cfg``) is a
    parameter of ``scope`` that the function never rebinds."""
    test = condition.test
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test = test.expression
    while isinstance(test, cst.Attribute):
        test = test.value
    if not isinstance(test, cst.Name) or test.value in ("self", "cls"):
        return False
    name = test.value
    return name in scope.params and not scope.bindings.get(name)


def runs_whenever_caller_allows(event: Event, other: Event) -> bool:
    """``event`` runs on every path where ``other`` runs, unless a caller of their function
    turns it off by a parameter: its conditions that ``other`` lacks all test parameter flags
    of the function it is written in (not of a helper inlined into it: the call site, visible
    here, decides those)."""
    if event.via:
        return runs_whenever(event, other)
    own = tuple(c for c in event.conditions if not parameter_flag(c, event.scope))
    return runs_whenever(replace(event, conditions=own), other)
