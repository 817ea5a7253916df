"""Calls of a function chosen from a collection of same-file functions.

``for name, make in zip(NAMES, LOADERS): loader = make(tokenizer)`` with ``LOADERS =
[make_wiki_loader, make_code_loader]`` runs one of those factories per iteration; so does
``FACTORIES[name](...)`` with ``FACTORIES = {"wiki": make_wiki_loader, ...}``. The model
follows every function of the collection: what the call returns is what they all return
(``value_of``), and a loader built that way is visible to the batching analysis (its
``drop_last``). A collection is a list, tuple or dict display bound once, whose elements are
all same-file functions; iteration through ``zip``/``enumerate``/``.items()``/``.values()``
picks the slot the function is unpacked from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

_MAX_FUNCTIONS = 16


def chosen_functions(model: TrainingModel, call: cst.Call, scope: Scope) -> list[Scope]:
    """The same-file functions ``call`` may run when its function is taken from a collection
    (empty when it is not, or when any element is not a same-file function)."""
    func = call.func
    if isinstance(func, cst.Subscript):
        return _functions(model, _collection(model, func.value, scope), scope, dict_values=True)
    if not isinstance(func, cst.Name):
        return []
    bindings = model.lookup(func.value, scope)
    if len(bindings) != 1 or not bindings[0].from_iteration:
        return []
    binding = bindings[0]
    iterated, index = binding.value, binding.unpack_index
    where = binding.scope or scope
    # ``zip(NAMES, LOADERS)`` / ``enumerate(LOADERS)`` / ``D.items()``: the unpacked slot
    if isinstance(iterated, cst.Call):
        name = dotted(iterated.func) or ""
        if name == "zip" and index is not None:
            iterated, index = positional(iterated, index), None
        elif name == "enumerate" and index == 1:
            iterated, index = positional(iterated, 0), None
        elif isinstance(iterated.func, cst.Attribute) and not iterated.args:
            method = iterated.func.attr.value
            if (method == "values" and index is None) or (method == "items" and index == 1):
                collection = _collection(model, iterated.func.value, where)
                return _functions(model, collection, where, dict_values=True)
            return []
        else:
            return []
    if index is not None or iterated is None:
        return []
    return _functions(model, _collection(model, iterated, where), where, dict_values=False)


def _collection(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope
) -> cst.BaseExpression | None:
    if isinstance(expr, (cst.List, cst.Tuple, cst.Dict)):
        return expr
    name = dotted(expr) if expr is not None else None
    if name is None:
        return None
    bindings = model.lookup(name, scope)
    if len(bindings) != 1:
        return None
    only = bindings[0]
    if only.augmented or only.from_iteration or only.unpack_index is not None:
        return None
    return only.value if isinstance(only.value, (cst.List, cst.Tuple, cst.Dict)) else None


def _functions(
    model: TrainingModel, collection: cst.BaseExpression | None, scope: Scope, dict_values: bool
) -> list[Scope]:
    if collection is None:
        return []
    if isinstance(collection, cst.Dict):
        if not dict_values:
            return []  # iterating a dict gives its keys
        elements = [e.value for e in collection.elements if isinstance(e, cst.DictElement)]
        complete = len(elements) == len(collection.elements)
    else:
        elements = [e.value for e in collection.elements if isinstance(e, cst.Element)]
        complete = len(elements) == len(collection.elements)
    if not complete or not elements or len(elements) > _MAX_FUNCTIONS:
        return []
    found = []
    for element in elements:
        function = _function_named(model, element, scope)
        if function is None:
            return []
        found.append(function)
    return found


def _function_named(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> Scope | None:
    if not isinstance(expr, cst.Name):
        return None
    return scope.visible_function(expr.value)
