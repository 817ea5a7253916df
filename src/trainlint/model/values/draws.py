"""Random draws: whether a value was made by a random generator (``torch.randn``, ...).

Judged by provenance only, never by a name: the value is a draw when the expression that made
it is one (``torch.randn/rand/normal/randn_like/rand_like``, NumPy's and TF's normal and uniform
draws, an in-place ``.normal_()``/``.uniform_()`` fill), followed through

* assignments (the latest binding before the use; a tuple unpacked slot by slot) and an
  in-place fill of the bound tensor before the use (``noise.resize_(n, nz).normal_(0, 1)``);
* what keeps a tensor's values: device, dtype and shape changes (``.to(device)``,
  ``.view(...)``), ``Variable(...)``, ``.detach()``, conversions of a NumPy draw to a tensor
  (``torch.from_numpy``, ``torch.FloatTensor(...)``, a name bound to a tensor type such as
  ``Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor``);
* same-file helpers (every return a draw), the parameter of a function every same-file
  caller passes a draw for, and functions of other project modules whose summary says they
  return one (the tensor lattice's producer, :mod:`.kinds`).

``z = batch[0]`` is data whatever it is called; ``codes = torch.randn(n, 128)`` is noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import dotted, method_call, positional
from trainlint.model.values.kinds import SHAPE_METHODS, TensorKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

#: Producers (as the tensor lattice names them) that draw random values.
_DRAWS = frozenset(
    {
        "torch.randn",
        "torch.rand",
        "torch.normal",
        "torch.randn_like",
        "torch.rand_like",
        "numpy.random.randn",
        "numpy.random.rand",
        "numpy.random.normal",
        "numpy.random.uniform",
        "tensorflow.random.normal",
        "tensorflow.random.uniform",
        "tensorflow.random.truncated_normal",
    }
)
#: In-place methods that fill a tensor with random values.
_FILLS = frozenset({"normal_", "uniform_", "random_", "exponential_", "cauchy_", "log_normal_"})
#: Methods whose result holds the receiver's values: the tensor lattice's shape methods, plus
#: ``resize_`` (which a fill follows), ``type``, ``requires_grad_`` and ``.data``.
_KEEPS = frozenset(SHAPE_METHODS | {"type", "requires_grad_", "resize_", "data"})
#: Calls whose result holds their first argument's values.
_WRAPPERS = frozenset(
    {
        "torch.autograd.Variable",
        "torch.autograd.variable.Variable",
        "torch.from_numpy",
        "torch.as_tensor",
        "torch.tensor",
    }
)
_MAX_DEPTH = 6


def random_draw(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope, before: int | None
) -> bool:
    """Whether ``expr`` (read in ``scope`` just before order ``before``) holds a random draw."""
    return _draw(model, expr, scope, before, 0)


def _draw(
    model: TrainingModel,
    expr: cst.BaseExpression | None,
    scope: Scope,
    before: int | None,
    depth: int,
) -> bool:
    if expr is None or depth > _MAX_DEPTH:
        return False
    if _drawn_kind(model.tensor_kind(expr, scope, before)):
        return True  # ``torch.randn(...)``, also through assignments and helpers' returns
    if isinstance(expr, cst.Call):
        return _draw_call(model, expr, scope, before, depth)
    if isinstance(expr, cst.Attribute) and expr.attr.value == "data":
        return _draw(model, expr.value, scope, before, depth + 1)
    if isinstance(expr, (cst.Name, cst.Attribute)):
        return _draw_name(model, expr, scope, before, depth)
    return False


def _drawn_kind(kind: TensorKind | None) -> bool:
    while kind is not None:
        if kind.producer in _DRAWS:
            return True
        kind = kind.source  # ``torch.clamp(torch.randn(...), -2, 2)``
    return False


def _draw_call(
    model: TrainingModel, call: cst.Call, scope: Scope, before: int | None, depth: int
) -> bool:
    method = method_call(call)
    qualified = model.imports.qualify(call.func) or ""
    if method is not None and not qualified:
        receiver, name = method
        if name in _FILLS:
            return True
        if name in _KEEPS:
            return _draw(model, receiver, scope, before, depth + 1)
    if qualified in _WRAPPERS or _tensor_type(model, call.func, scope):
        return _draw(model, positional(call, 0), scope, before, depth + 1)
    if qualified:
        return False
    callee = model.callee(call, scope, external=False)
    if callee is None or callee is scope or not callee.returns:
        return False
    return all(
        _draw(model, returned, callee, order, depth + 1)
        for returned, order in zip(callee.returns, callee.return_orders, strict=False)
    )


def _tensor_type(model: TrainingModel, func: cst.BaseExpression, scope: Scope) -> bool:
    """``torch.FloatTensor`` / ``torch.cuda.FloatTensor``, or a name bound to one of them
    (``Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor``)."""
    candidates: list[cst.BaseExpression] = [func]
    name = dotted(func)
    if name is not None and not model.imports.qualify(func):
        bindings = model.lookup(name, scope)
        if len(bindings) != 1 or bindings[0].value is None:
            return False
        value = bindings[0].value
        candidates = [value.body, value.orelse] if isinstance(value, cst.IfExp) else [value]
    for candidate in candidates:
        qualified = model.imports.qualify(candidate) or ""
        head, _, last = qualified.rpartition(".")
        if head not in ("torch", "torch.cuda") or not last.endswith("Tensor"):
            return False
    return True


def _draw_name(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, before: int | None, depth: int
) -> bool:
    name = dotted(expr)
    if name is None or model.imports.qualify_dotted(name):
        return False
    bindings = model.lookup(name, scope, before)
    if not bindings:
        if _filled_in_place(model, name, scope, before):
            return True  # ``self.noise.normal_()`` / a parameter filled here
        if isinstance(expr, cst.Name) and name in scope.params:
            from trainlint.model.dataflow.calls import passed_for

            passed = passed_for(model.dataflow, name, scope)
            return bool(passed) and all(
                _draw(model, argument, caller, order, depth + 1)
                for argument, caller, order in passed
            )
        return False
    latest = bindings[0]
    value = latest.value
    if latest.augmented or latest.from_iteration or value is None:
        return False
    if latest.unpack_index is not None:
        if not isinstance(value, (cst.Tuple, cst.List)):
            return False
        elements = value.elements
        if latest.unpack_index >= len(elements):
            return False
        value = elements[latest.unpack_index].value
    owner = latest.scope or scope
    # filled after it was bound and before the use (``noise = torch.FloatTensor(n, nz)``
    # then ``noise.normal_(0, 1)``)
    until = before if owner is scope else None
    return _filled_in_place(model, name, owner, until, latest.order) or _draw(
        model, value, owner, latest.order, depth + 1
    )


def _filled_in_place(
    model: TrainingModel,
    name: str,
    scope: Scope,
    before: int | None,
    after: int | None = None,
) -> bool:
    """A statement of ``scope`` between ``after`` and ``before`` fills ``name`` with random
    values in place (``noise.normal_(0, 1)``, ``z.data.resize_(n, nz).uniform_()``)."""
    for site in model.calls_in(scope):
        if before is not None and site.order >= before:
            continue
        if after is not None and site.order <= after:
            continue
        method = method_call(site.node)
        if method is None or method[1] not in _FILLS:
            continue
        receiver = method[0]
        while True:
            inner = method_call(receiver) if isinstance(receiver, cst.Call) else None
            if inner is not None and inner[1] in _KEEPS:
                receiver = inner[0]
            elif isinstance(receiver, cst.Attribute) and receiver.attr.value == "data":
                receiver = receiver.value
            else:
                break
        if dotted(receiver) == name:
            return True
    return False
