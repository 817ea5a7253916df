"""Event plumbing the step-order rules share (TL107-TL109, the scaler queries).

Whether two events sit in opposite branches of one ``if``, a helper's names mapped back to the
loop's, loose same-object matching of receivers, and the receiver of a method-call event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.events import Event
    from trainlint.model.syntax.scopes import Scope


def exclusive(first: Event, second: Event) -> bool:
    """Whether two events sit in opposite branches of one ``if`` (never both run)."""
    return any(
        a.test is b.test and a.negated != b.negated
        for a in first.conditions
        for b in second.conditions
    )


def loop_name(model: TrainingModel, event: Event, scope: Scope, name: str | None) -> str | None:
    """``name`` as written in the event's callee, renamed to the loop's (``scope``'s) name.

    Events keep ``scaled_by`` as the helper spells it; this maps it through the ``via`` calls.
    """
    if name is None or not event.via:
        return name
    chain: list[tuple[cst.Call, Scope]] = []
    current = scope
    for call in event.via:
        callee = model.callee(call, current)
        if callee is None:
            return name
        chain.append((call, callee))
        current = callee
    for call, callee in reversed(chain):
        renames = model.argument_renames(call, callee)
        root, dot, rest = name.partition(".")
        if root in renames:
            if renames[root] is None:
                return name
            name = f"{renames[root]}{dot}{rest}"
    return name


def same_object(first: str | None, second: str | None) -> bool:
    """Loose name match: ``self.scaler`` and ``scaler`` are taken to be one object."""
    if not first or not second:
        return False
    return first == second or first.rsplit(".", 1)[-1] == second.rsplit(".", 1)[-1]


def receiver(event: Event) -> cst.BaseExpression | None:
    """The object a method-call event runs on; for ``s.scale(x).backward()``, ``s``."""
    found = method_call(event.node)
    if found is None:
        return None
    inner = method_call(found[0])
    if found[1] == "backward" and inner is not None and inner[1] == "scale":
        return inner[0]
    return found[0]
