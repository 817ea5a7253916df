"""Submodules and weights a torch module holds where ``nn.Module`` cannot see them.

``nn.Module.__setattr__`` registers a module or an ``nn.Parameter`` assigned to an attribute;
it does not look inside a Python list, tuple or dict, and a plain tensor with
``requires_grad=True`` is no parameter. :func:`unregistered_attributes` lists, for every class
known to be a torch module (same-file kind, or a base of another project module whose summary
says so), the ``self.x = ...`` assignments that hide what they hold:

* a list/tuple/set/dict literal or comprehension whose elements are made by module
  constructors (``nn.Linear(...)``, a same-file or project ``nn.Module`` subclass, a factory),
  also when filled later (``self.x = []`` then ``self.x.append(nn.Linear(...))``, or a local
  list assigned afterwards); elements that are other attributes (``[self.conv1, self.conv2]``,
  registered already) or passed-in objects (``[teacher]``, hidden on purpose) do not count,
  and neither does a list of parameter-free layers only (``[nn.ReLU(), nn.Tanh()]``: nothing
  to train, move or switch to eval);
* a tensor made with ``requires_grad=True`` (``torch.zeros(3, requires_grad=True)``,
  ``Variable(t, requires_grad=True)``, ``.requires_grad_()``).

Left alone: an attribute re-bound to a torch container or ``nn.Parameter`` anywhere in the
class (``self.x = nn.ModuleList(self.x)``), a lookup table whose chosen element is registered
as another attribute (``self.backbone = self.resnets[name]``, also through a method returning
``self.resnets[name]``), a class that registers things by hand
(``add_module``, ``register_module``, ``register_parameter``, ``register_buffer``,
``setattr(self, ...)``), a tensor an optimizer of the file is given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.summaries.queries import class_summary
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, dotted, keyword, literal, method_call
from trainlint.model.values.modules import is_torch_module_value
from trainlint.model.values.roles import Role
from trainlint.model.values.types import ClassKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, ClassInfo, Scope

#: ``torch.nn`` layers with no parameters, no buffers and no train/eval behaviour.
STATELESS_LAYERS = {
    "ReLU", "ReLU6", "LeakyReLU", "GELU", "SiLU", "Mish", "ELU", "SELU", "CELU", "Sigmoid",
    "Tanh", "Softmax", "LogSoftmax", "Softplus", "Softsign", "Hardswish", "Hardsigmoid",
    "Hardtanh", "Identity", "Flatten", "Unflatten", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle",
    "PixelUnshuffle", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d",
    "ReflectionPad2d", "ReplicationPad2d", "Threshold",
}  # fmt: skip
#: Calls that register what they are given when assigned to an attribute.
REGISTERING_WRAPPERS = {
    "ModuleList", "ModuleDict", "Sequential", "Parameter", "ParameterList", "ParameterDict",
}  # fmt: skip
#: Methods that register modules, parameters or buffers by hand.
REGISTERING_METHODS = {"add_module", "register_module", "register_parameter", "register_buffer"}
_REGISTERING_ELEMENTS = {"add_module", "register_module"}
_TENSOR_FACTORIES = {
    "zeros", "ones", "empty", "full", "rand", "randn", "randint", "tensor", "eye", "arange",
    "linspace", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
    "as_tensor", "Tensor", "FloatTensor",
}  # fmt: skip
#: Methods keeping a factory's tensor what it was (device, dtype moves).
_KEEPING = {"to", "cuda", "float", "double", "half"}
_FILLING = {"append", "extend", "insert", "add", "update", "setdefault"}


@dataclass(frozen=True, eq=False)
class UnregisteredAttribute:
    owner: ClassInfo
    attribute: str  # ``blocks`` for ``self.blocks``
    binding: Binding  # the assignment (its statement is the anchor)
    container: str  # "list", "tuple", "set", "dict" or "tensor"
    example: cst.BaseExpression  # one element (for messages), or the tensor factory call
    #: The elements are ``nn.Parameter``s (``ParameterList``/``ParameterDict`` register them).
    parameters: bool = False


def unregistered_attributes(model: TrainingModel) -> list[UnregisteredAttribute]:
    found = []
    fills = _Fills(model)
    for info in model.classes.values():
        if not _torch_module_class(model, info) or _registers_by_hand(model, info):
            continue
        for attribute, bindings in info.attributes.items():
            if any(_registering(model, b) for b in bindings):
                continue
            for binding in bindings:
                hidden = _hidden(model, fills, info, attribute, binding)
                if hidden is None:
                    continue
                # registered some other way (checked last: most attributes hold no container)
                if (
                    _registered_by_name(model, info, attribute)
                    or _wrapped_elsewhere(model, info, f"self.{attribute}", None)
                    or _chosen_into_attribute(model, info, attribute)
                ):
                    break
                container, example, parameters = hidden
                found.append(
                    UnregisteredAttribute(info, attribute, binding, container, example, parameters)
                )
                break
    return found


def _torch_module_class(model: TrainingModel, info: ClassInfo) -> bool:
    kind = model.class_kind(info)
    if kind is not ClassKind.UNKNOWN:
        return kind.is_torch_module
    if model.project is None or not model.imports.imports("torch"):
        return False
    for base in info.node.bases:
        summary = class_summary(model, dotted(base.value), model.module_scope)
        if summary is not None and summary.is_module:
            return True
    return False


def _registers_by_hand(model: TrainingModel, info: ClassInfo) -> bool:
    """``add_module``/``register_module``/``setattr(self, ...)``: elements may be registered
    under names of their own."""
    for site in model.calls_in_class(info):
        method = method_call(site.node)
        if method is not None and method[1] in _REGISTERING_ELEMENTS:
            return True
        first = site.node.args[0].value if site.node.args else None
        if dotted(site.node.func) == "setattr" and dotted(first) == "self":
            return True
    return False


def _registered_by_name(model: TrainingModel, info: ClassInfo, attribute: str) -> bool:
    """``self.register_parameter("w", nn.Parameter(self.w))``, ``register_buffer(..., self.w)``."""
    for site in model.calls_in_class(info):
        method = method_call(site.node)
        if method is None or method[1] not in REGISTERING_METHODS:
            continue
        for arg in site.node.args:
            if literal(arg.value, None) == attribute:
                return True
            for node in (arg.value, *descendants(arg.value)):
                if isinstance(node, cst.Attribute) and dotted(node) == f"self.{attribute}":
                    return True
    return False


def _registering(model: TrainingModel, binding: Binding) -> bool:
    """``self.x = nn.ModuleList(...)``/``nn.Parameter(...)``: the attribute is registered."""
    value = binding.value
    if not isinstance(value, cst.Call) or binding.unpack_index is not None:
        return False
    qualified = model.imports.qualify(value.func) or ""
    return is_under(qualified, "torch.nn") and qualified.rsplit(".", 1)[-1] in REGISTERING_WRAPPERS


def _hidden(
    model: TrainingModel, fills: _Fills, info: ClassInfo, attribute: str, binding: Binding
) -> tuple[str, cst.BaseExpression, bool] | None:
    value, scope = binding.value, binding.scope
    if value is None or scope is None or binding.augmented or binding.unpack_index is not None:
        return None
    if binding.from_iteration:
        return None
    tensor = _grad_tensor(model, value)
    if tensor is not None:
        if _given_to_optimizer(model, attribute):
            return None
        return "tensor", tensor, False
    local = None
    if isinstance(value, cst.Name):
        local, value = value.value, _single_local_value(model, value.value, scope)
        if value is None or _wrapped_elsewhere(model, info, local, scope):
            return None
    container = _container_of(value)
    if container is None:
        return None
    elements = list(_elements(value))
    elements += fills.of(f"self.{attribute}", info, None)
    if local is not None:
        elements += fills.of(local, info, scope)
    made = [e for e in elements if _makes_module(model, e, scope)]
    if not made or all(_stateless(model, e, scope) for e in made):
        return None
    resolved = [_resolved(model, e, scope) for e in made]
    parameters = all(_is_parameter(model, e) for e in resolved)
    return container, resolved[0], parameters


def _wrapped_elsewhere(
    model: TrainingModel, info: ClassInfo, name: str, scope: Scope | None
) -> bool:
    """``self.body = nn.Sequential(*self.blocks)``: the elements are registered through
    another attribute (``name`` in ``scope``, or anywhere in the class for ``self.x``)."""
    sites = model.calls_in(scope) if scope is not None else model.calls_in_class(info)
    for site in sites:
        qualified = site.qualified or ""
        if not is_under(qualified, "torch.nn") or qualified.rsplit(".", 1)[-1] not in (
            REGISTERING_WRAPPERS
        ):
            continue
        for arg in site.node.args:
            if any(dotted(n) == name for n in (arg.value, *descendants(arg.value))):
                return True
    return False


def _chosen_into_attribute(model: TrainingModel, info: ClassInfo, attribute: str) -> bool:
    """``self.backbone = self.resnet_dict[name]``, also through a method returning the element
    (``self.backbone = self._get_basemodel(name)``): the container is a lookup table and the
    element in use is registered through another attribute (the others are never run)."""
    for other, bindings in info.attributes.items():
        if other == attribute:
            continue
        for binding in bindings:
            if binding.value is None or binding.scope is None or binding.unpack_index is not None:
                continue
            if _element_of(model, binding.value, binding.scope, f"self.{attribute}", 2):
                return True
    return False


def _element_of(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, container: str, depth: int
) -> bool:
    """Whether ``expr`` is an element of ``container`` (``self.d[k]``, maybe ``.to(device)``):
    directly, through a local bound once to one, or returned by a method of the class."""
    while isinstance(expr, cst.Call):
        method = method_call(expr)
        if method is not None and method[1] in _KEEPING:
            expr = method[0]  # ``self.d[k].cuda()``
            continue
        callee = model.callee(expr, scope, external=False)
        if depth <= 0 or callee is None or callee.cls is None or callee.cls is not scope.cls:
            return False
        return any(_element_of(model, r, callee, container, depth - 1) for r in callee.returns)
    if isinstance(expr, cst.Subscript):
        return dotted(expr.value) == container
    if isinstance(expr, cst.Name):
        local = _single_local_value(model, expr.value, scope)
        return local is not None and _element_of(model, local, scope, container, depth)
    return False


def _grad_tensor(model: TrainingModel, value: cst.BaseExpression) -> cst.Call | None:
    """``torch.zeros(3, requires_grad=True)`` (maybe ``.to(device)``), ``Variable(t,
    requires_grad=True)``, ``torch.randn(3).requires_grad_()``: the factory call."""
    while True:
        method = method_call(value)
        if method is None or method[1] not in _KEEPING:
            break
        value = method[0]
    if not isinstance(value, cst.Call):
        return None
    method = method_call(value)
    if method is not None and method[1] == "requires_grad_":
        flag = value.args[0].value if value.args else None
        if (flag is None or literal(flag, None) is True) and _grad_tensor_factory(model, method[0]):
            return value
        return None
    qualified = model.imports.qualify(value.func) or ""
    if literal(keyword(value, "requires_grad"), None) is not True:
        return None
    if qualified in ("torch.autograd.Variable", "torch.autograd.variable.Variable"):
        return value
    return value if _grad_tensor_factory(model, value) else None


def _grad_tensor_factory(model: TrainingModel, value: cst.BaseExpression) -> bool:
    if not isinstance(value, cst.Call):
        return False
    qualified = model.imports.qualify(value.func) or ""
    head, _, last = qualified.rpartition(".")
    return head == "torch" and last in _TENSOR_FACTORIES


def _given_to_optimizer(model: TrainingModel, attribute: str) -> bool:
    """An optimizer of the file built with ``obj.attribute`` among its parameters."""
    for creation in model.creations.optimizers:
        for node in descendants(creation.call):
            if isinstance(node, cst.Attribute) and node.attr.value == attribute:
                return True
    return False


def _single_local_value(model: TrainingModel, name: str, scope: Scope):
    bindings = [b for b in scope.bindings.get(name, []) if not b.augmented]
    if len(bindings) != 1 or bindings[0].unpack_index is not None:
        return None
    return bindings[0].value


def _container_of(value: cst.BaseExpression) -> str | None:
    if isinstance(value, (cst.List, cst.ListComp)):
        return "list"
    if isinstance(value, cst.Tuple):
        return "tuple"
    if isinstance(value, (cst.Set, cst.SetComp)):
        return "set"
    if isinstance(value, (cst.Dict, cst.DictComp)):
        return "dict"
    return None


def _elements(value: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(value, (cst.List, cst.Tuple, cst.Set)):
        return [e.value for e in value.elements if not isinstance(e, cst.StarredElement)]
    if isinstance(value, (cst.ListComp, cst.SetComp)):
        return [value.elt]
    if isinstance(value, cst.Dict):
        return [e.value for e in value.elements if isinstance(e, cst.DictElement)]
    if isinstance(value, cst.DictComp):
        return [value.value]
    return []


class _Fills:
    """What ``name.append(...)``, ``name.extend([...])``, ``name[k] = ...``, ``name += [...]``
    put into a container, indexed once per function (or class) by the container's name."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._index: dict[int, dict[str, list[cst.BaseExpression]]] = {}

    def of(self, name: str, info: ClassInfo, scope: Scope | None) -> list[cst.BaseExpression]:
        """In ``scope``, or (``None``) anywhere in the class ``info``."""
        owner = scope.node if scope is not None else info.node
        if id(owner) not in self._index:
            self._index[id(owner)] = self._build(info, scope)
        return self._index[id(owner)].get(name, [])

    def _build(self, info: ClassInfo, scope: Scope | None) -> dict[str, list[cst.BaseExpression]]:
        model = self.model
        found: dict[str, list[cst.BaseExpression]] = {}
        sites = model.calls_in(scope) if scope is not None else model.calls_in_class(info)
        for site in sites:
            method = method_call(site.node)
            name = dotted(method[0]) if method is not None and method[1] in _FILLING else None
            if name is not None:
                for arg in site.node.args:
                    found.setdefault(name, []).extend(_elements(arg.value) or [arg.value])
        for where in [scope] if scope is not None else list(info.methods.values()):
            for name, bindings in where.bindings.items():
                for binding in bindings:
                    if binding.augmented and binding.value is not None:
                        found.setdefault(name, []).extend(_elements(binding.value))
            for statement in descendants(where.node):
                if not isinstance(statement, cst.Assign):
                    continue
                for target in statement.targets:
                    node = target.target
                    name = dotted(node.value) if isinstance(node, cst.Subscript) else None
                    if name is not None:
                        found.setdefault(name, []).append(statement.value)
        return found


def _makes_module(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> bool:
    """A call building a torch module, or a local name bound once to one (and not also
    registered as an attribute: ``self.conv1 = conv = nn.Conv2d(...)``)."""
    if isinstance(expr, cst.Name):
        bindings = scope.bindings.get(expr.value, [])
        if len(bindings) != 1 or bindings[0].unpack_index is not None:
            return False
        statement = bindings[0].statement
        if isinstance(statement, cst.Assign) and len(statement.targets) > 1:
            return False
        value = bindings[0].value
        return isinstance(value, cst.Call) and _makes_module(model, value, scope)
    if not isinstance(expr, cst.Call):
        return False
    value = model.value_of(expr, scope)
    if is_torch_module_value(value, model):
        return True
    if value is None or value.role is not Role.MODEL or value.call is not expr:
        return False
    if model.project is None:
        return False
    summary = class_summary(model, dotted(expr.func), scope)
    return summary is not None and summary.is_module


def _resolved(model: TrainingModel, expr: cst.BaseExpression, scope: Scope):
    if isinstance(expr, cst.Name):
        return _single_local_value(model, expr.value, scope) or expr
    return expr


def _is_parameter(model: TrainingModel, expr: cst.BaseExpression) -> bool:
    qualified = model.imports.qualify(expr.func) if isinstance(expr, cst.Call) else None
    return qualified in ("torch.nn.Parameter", "torch.nn.parameter.Parameter")


def _stateless(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> bool:
    if isinstance(expr, cst.Name):
        bound = _single_local_value(model, expr.value, scope)
        return (
            bound is not None
            and not isinstance(bound, cst.Name)
            and _stateless(model, bound, scope)
        )
    qualified = model.imports.qualify(expr.func) if isinstance(expr, cst.Call) else None
    return is_under(qualified, "torch.nn") and (qualified or "").rsplit(".", 1)[-1] in (
        STATELESS_LAYERS
    )
