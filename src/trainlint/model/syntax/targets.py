"""The names an assignment target binds: plain, unpacked (with their tuple index), nested
(with their index path) and starred."""

from __future__ import annotations

import libcst as cst

from trainlint.model.syntax.nodes import dotted


def nested_names(target: cst.BaseExpression) -> list[tuple[str, tuple[int, ...]]]:
    """Names bound inside nested tuple targets, with their index path: ``(a, b), c`` ->
    ``a`` at (0, 0), ``b`` at (0, 1)."""
    found: list[tuple[str, tuple[int, ...]]] = []

    def walk(node: cst.BaseExpression, path: tuple[int, ...]) -> None:
        for index, element in enumerate(node.elements):  # type: ignore[attr-defined]
            value = element.value
            if isinstance(value, (cst.Tuple, cst.List)):
                walk(value, (*path, index))
            elif len(path) > 0:
                name = dotted(value)
                if name:
                    found.append((name, (*path, index)))

    if isinstance(target, (cst.Tuple, cst.List)):
        walk(target, ())
    return found


def star_positions(target: cst.BaseExpression) -> tuple[int, int] | None:
    """(index of the starred element, number of elements) of a starred unpacking target."""
    if not isinstance(target, (cst.Tuple, cst.List)):
        return None
    for index, element in enumerate(target.elements):
        if isinstance(element, cst.StarredElement):
            return index, len(target.elements)
    return None


def target_names(target: cst.BaseExpression) -> list[tuple[str, int | None]]:
    """Names bound by an assignment target, with their tuple index when unpacked."""
    if isinstance(target, (cst.Tuple, cst.List)):
        found: list[tuple[str, int | None]] = []
        for index, element in enumerate(target.elements):
            name = dotted(element.value)
            if name:
                found.append((name, index))
        return found
    name = dotted(target)
    return [(name, None)] if name else []
