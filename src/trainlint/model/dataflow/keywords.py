"""What a call passes as one keyword argument, also through ``**kwargs``.

``DataLoader(ds, **loader_kwargs)`` where the file builds ``loader_kwargs`` (a dict literal,
``dict(...)``, a same-file helper returning one, entries written after it was built): the
loader and batching queries read ``drop_last``/``batch_size``/``shuffle`` through these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import descendants, dotted, keyword, literal

if TYPE_CHECKING:
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import Scope


def passes_kwargs(call: cst.Call) -> bool:
    return any(arg.star == "**" for arg in call.args)


def keyword_through_kwargs(
    flow: Dataflow, call: cst.Call, name: str, scope: Scope, depth: int = 0
) -> tuple[cst.BaseExpression | None, bool]:
    """The argument ``call`` passes as ``name``, also through ``**kwargs`` built in the file
    (a dict literal, ``dict(...)``, a same-file helper returning one:
    ``DataLoader(ds, **get_dataloader_kwargs())``); and whether every ``**`` was resolved."""
    found = keyword(call, name)
    if found is not None:
        return found, True
    visible = True
    for arg in call.args:
        if arg.star != "**":
            continue
        value, seen = _dict_entry(flow, arg.value, name, scope, depth)
        if value is not None:
            return value, True
        visible = visible and seen
    return None, visible


def _dict_entry(flow, expr, name: str, scope: Scope, depth: int):
    """``expr[name]`` when ``expr`` is a dict the file builds; (entry, whether it was seen)."""
    if depth > 3 or expr is None:
        return None, False
    if isinstance(expr, cst.Dict):
        seen_all = True
        for element in reversed(expr.elements):  # a later key overrides an earlier one
            if isinstance(element, cst.DictElement) and literal(element.key, None) == name:
                return element.value, True
            if isinstance(element, cst.StarredDictElement):
                value, seen = _dict_entry(flow, element.value, name, scope, depth + 1)
                if value is not None:
                    return value, True
                seen_all = seen_all and seen
        return None, seen_all
    if isinstance(expr, cst.Call):
        if dotted(expr.func) == "dict":
            return keyword_through_kwargs(flow, expr, name, scope, depth + 1)
        callee = flow.model.callee(expr, scope)
        if callee is None or not callee.returns:
            return None, False
        seen_all = True
        for returned in callee.returns:
            value, seen = _dict_entry(flow, returned, name, callee, depth + 1)
            if value is not None:
                return value, True
            seen_all = seen_all and seen
        return None, seen_all
    if isinstance(expr, (cst.Name, cst.Attribute)):
        bindings = [b for b in flow.model.lookup(dotted(expr) or "", scope) if not b.augmented]
        if len(bindings) == 1 and bindings[0].value is not None:
            written, complete = _dict_writes(bindings[0].scope or scope, dotted(expr) or "", name)
            if written is not None:
                return written, True
            value, seen = _dict_entry(flow, bindings[0].value, name, scope, depth + 1)
            return value, seen and complete
        return None, False
    return None, False


_DICT_WRITERS = {"update", "setdefault", "__setitem__"}


def _dict_writes(scope: Scope, dict_name: str, key: str) -> tuple[cst.BaseExpression | None, bool]:
    """``kwargs["key"] = value`` written after the dict was built (the last one), and whether
    every write to it was read (not an ``update(...)``, not a computed key)."""
    found, complete = None, True
    for node in descendants(scope.node, stop=(cst.FunctionDef, cst.ClassDef, cst.Lambda)):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                subscript = target.target
                if isinstance(subscript, cst.Subscript) and dotted(subscript.value) == dict_name:
                    index = subscript.slice[0].slice if len(subscript.slice) == 1 else None
                    written = literal(getattr(index, "value", None), None)
                    if written == key:
                        found = node.value
                    elif not isinstance(written, str):
                        complete = False
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and dotted(node.func.value) == dict_name
            and node.func.attr.value in _DICT_WRITERS
        ):
            complete = False
    return found, complete
