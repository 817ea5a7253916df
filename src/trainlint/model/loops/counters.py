"""Running micro-step counters: names that count 1, 2, 3, ... while a window fills.

A loss divided by the window length (``k``, ``len(micro_batches)``, ``args.accum_iter``) gives
every micro-batch the weight ``1 / k``; divided by a running counter (``loss / (i + 1)``,
``loss / step`` with ``step += 1``) the first micro-batch weighs ``1``, the second ``1 / 2``
and so on. :func:`running_counters` finds the names that count micro-steps in a train step's
loop; :func:`counts_micro_steps` tells whether a divisor is one of them (give or take a
constant: ``i + 1``, ``float(step)``, ``max(step, 1)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.events import Event, EventKind
from trainlint.model.syntax.nodes import descendants, dotted, literal

if TYPE_CHECKING:
    from trainlint.model.syntax.scopes import LoopInfo

#: Wrappers that keep a counter a counter: ``float(step)``, ``max(1, step)``.
_KEEPS_COUNTER = ("float", "int", "max", "min", "torch.tensor")


def _index_names(loop: LoopInfo) -> set[str]:
    """The counting target of a ``for``: ``i`` in ``enumerate(...)``, ``step`` in ``range(...)``."""
    node = loop.node
    if not isinstance(node, cst.For) or not isinstance(node.iter, cst.Call):
        return set()
    called = dotted(node.iter.func)
    target = node.target
    if called == "enumerate" and isinstance(target, (cst.Tuple, cst.List)) and target.elements:
        first = dotted(target.elements[0].value)
        return {first} if first else set()
    if called == "range":
        name = dotted(target)
        return {name} if name else set()
    return set()


def _incremented(events: list[Event]) -> set[str]:
    """Names increased by a constant in the loop (``step += 1``, ``n = n + 1``)."""
    return {
        e.subject
        for e in events
        if e.kind is EventKind.ACCUMULATE and isinstance(e.operand, cst.Integer) and e.subject
    }


def _names_in(node: cst.CSTNode) -> set[str]:
    return {
        name
        for n in (node, *descendants(node))
        if isinstance(n, (cst.Name, cst.Attribute)) and (name := dotted(n))
    }


def running_counters(loops: list[LoopInfo], events: list[Event]) -> frozenset[str]:
    """Names that count micro-steps in ``loops`` (a window loop and its micro-step loop).

    The loops' ``enumerate``/``range`` indices, names incremented by a constant in ``events``,
    and names assigned inside the loops from those (``micro_step = i % k + 1``,
    ``step = epoch * len(loader) + i``).
    """
    found: set[str] = set()
    for loop in loops:
        found |= _index_names(loop)
    found |= _incremented(events)
    for loop in loops:
        inside = {id(n) for n in descendants(loop.node)}
        for name, bindings in loop.scope.bindings.items():
            if name in found:
                continue
            for binding in bindings:
                value = binding.value
                derived = (
                    binding.augmented is None
                    and not binding.from_iteration
                    and value is not None
                    and id(binding.statement) in inside
                    and _counts_with(value, found)
                )
                if derived:
                    found.add(name)
                    break
    return frozenset(found)


def _counts_with(node: cst.BaseExpression, counters: set[str]) -> bool:
    """Plain arithmetic over names, numbers and ``len()`` that mentions a counter
    (``i % k + 1``, ``epoch * len(loader) + i``); not ``mask[i].sum()``, which is a size."""
    for part in (node, *descendants(node)):
        if isinstance(part, cst.Call) and dotted(part.func) != "len":
            return False
        if isinstance(part, (cst.Subscript, cst.Comparison, cst.BooleanOperation)):
            return False
    return bool(_names_in(node) & counters)


def counts_micro_steps(divisor: cst.BaseExpression, counters: frozenset[str]) -> bool:
    """Whether ``divisor`` is a running counter, give or take a constant or a modulo
    (``i + 1``, ``step % k + 1``, ``float(micro_step)``)."""
    node: cst.BaseExpression = divisor
    for _ in range(6):  # nesting of wrappers, bounded
        if isinstance(node, cst.BinaryOperation) and isinstance(
            node.operator, (cst.Add, cst.Subtract)
        ):
            if literal(node.right, None) is not None:
                node = node.left
            elif literal(node.left, None) is not None:
                node = node.right
            else:
                return False
            continue
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            node = node.left  # ``i % k + 1``: the position inside the window, 1 to k
            continue
        if isinstance(node, cst.Call) and dotted(node.func) in _KEEPS_COUNTER:
            variable = [a.value for a in node.args if literal(a.value, None) is None]
            if len(variable) != 1:
                return False
            node = variable[0]
            continue
        break
    name = dotted(node)
    return name is not None and name in counters
