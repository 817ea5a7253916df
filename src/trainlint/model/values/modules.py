"""Whether a value is KNOWN to be a torch module (not merely called ``model`` or ``net``).

Evidence, from strongest: it was made by a ``torch.nn`` constructor, a model factory
(``timm.create_model``, ``torchvision.models.*``, a non-TF ``from_pretrained``), an instance of
a same-file ``nn.Module`` subclass (or of one in another module of the project, from its
summary), a wrapper of one of those (DDP, ``torch.compile``,
``accelerator.prepare``); it is annotated ``nn.Module``; an ``isinstance(x, nn.Module)`` check
guards the use; it is an element of a ``torch.nn`` container (``self.blocks[i]``); or the same
function (the same class, for ``self.x``) uses it in a way only a module can be used
(``x.parameters()``, ``x.register_forward_hook(...)``, ``x.eval()``, ``DDP(x)``) while nothing
visible made it as something else. A compiled extension
(``import fused_softmax_cuda``), an object of another library, an instance of a plain class
with a ``forward`` of its own, and a bare name are not torch modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, method_call, positional
from trainlint.model.values.roles import Role, Value

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

#: Methods only ``nn.Module`` has among the objects that have a ``forward``.
MODULE_ONLY_METHODS = {
    "parameters",
    "named_parameters",
    "buffers",
    "named_buffers",
    "modules",
    "named_modules",
    "children",
    "named_children",
    "register_forward_hook",
    "register_forward_pre_hook",
    "register_full_backward_hook",
    "register_buffer",
    "load_state_dict",
    "requires_grad_",
    # shared with tensors or optimizers, neither of which has a ``forward``
    "eval",
    "train",
    "cuda",
    "half",
    "state_dict",
    "zero_grad",
}
_FACTORIES = ("timm.create_model", "torchvision.models", "torch.hub.load")
_CONTAINERS = {"ModuleList", "Sequential", "ModuleDict"}
#: Calls that take only modules (``torch.jit.script`` also takes functions).
_MODULE_WRAPPERS = {
    "torch.compile",
    "torch.nn.DataParallel",
    "torch.nn.parallel.DataParallel",
    "torch.nn.parallel.DistributedDataParallel",
    "torch.distributed.fsdp.FullyShardedDataParallel",
    "torch.distributed.fsdp.fully_shard",
}


def is_torch_module_value(value: Value | None, model: TrainingModel) -> bool:
    """Whether a resolved value's producer makes a torch module."""
    if value is None or value.role is not Role.MODEL or value.call is None:
        return False
    kind = value.kind
    if kind == "isinstance":
        return True  # only ``torch.nn`` types give MODEL to an ``isinstance`` check
    info = model.classes.get(kind)
    if info is not None:
        return model.is_torch_module_class(info)
    if is_under(kind, "torch.nn", *_FACTORIES):
        return True
    last = kind.rsplit(".", 1)[-1]
    if is_under(kind, "transformers", "peft") and last == "from_pretrained":
        owner = kind.rsplit(".", 2)[-2] if kind.count(".") >= 2 else ""
        return not owner.startswith(("TF", "Flax"))
    return False


def is_known_module(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> bool:
    """Whether ``expr`` is known, not guessed, to be a torch module in ``scope``."""
    if is_torch_module_value(model.value_of(expr, scope), model):
        return True
    return _element_of_container(model, expr, scope) or _evidence_by_name(model, expr, scope)


def _element_of_container(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, depth: int = 0
) -> bool:
    """``self.blocks[i]``, ``block = self.blocks[name]``, ``for block in self.blocks`` on a
    ``torch.nn`` container; ``ddp.module``, the module a DDP/DataParallel wrapper holds."""
    if (
        isinstance(expr, cst.Attribute)
        and expr.attr.value == "module"
        and is_known_module(model, expr.value, scope)
    ):
        return True
    name = dotted(expr)
    if name is not None and depth < 2:
        bindings = model.lookup(name, scope)
        if len(bindings) != 1 or bindings[0].value is None:
            return False
        binding = bindings[0]
        inner_scope = binding.scope or scope
        if binding.from_iteration:
            return binding.unpack_index is None and _is_container(model, binding.value, inner_scope)
        return _element_of_container(model, binding.value, inner_scope, depth + 1)
    if isinstance(expr, cst.Subscript):
        return _is_container(model, expr.value, scope)
    return False


def _is_container(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> bool:
    """An ``nn.ModuleList``/``Sequential``/``ModuleDict``, or its ``values()``/``children()``."""
    method = method_call(expr)
    if method is not None and method[1] in ("values", "children", "modules"):
        expr = method[0]
    container = model.value_of(expr, scope)
    return (
        container is not None
        and container.short_kind in _CONTAINERS
        and is_under(container.kind, "torch.nn")
    )


def _evidence_by_name(model: TrainingModel, expr: cst.BaseExpression, scope: Scope) -> bool:
    name = dotted(expr)
    if name is None:
        return False
    value = model.value_of(expr, scope)
    if value is not None and value.call is not None and value.role is not Role.MODEL:
        return False  # made as something else: a plain class's instance, an optimizer...
    summary = model.instance_summary(expr, scope)
    if summary is not None and summary.is_module:
        return True  # an instance of a Module subclass defined in another project module
    return _annotated_module(model, name, scope) or _used_as_module(model, name, scope)


def _annotated_module(model: TrainingModel, name: str, scope: Scope, depth: int = 0) -> bool:
    """``backbone: nn.Module`` -- also through ``self.backbone = backbone``."""
    annotation = scope.annotations.get(name, "")
    if is_under(annotation, "torch.nn") and annotation.rsplit(".", 1)[-1][:1].isupper():
        return True
    if depth > 3:
        return False
    for binding in model.lookup(name, scope):
        source = dotted(binding.value) if binding.unpack_index is None else None
        if (
            source
            and source != name
            and binding.scope is not None
            and _annotated_module(model, source, binding.scope, depth + 1)
        ):
            return True
    return False


def _used_as_module(model: TrainingModel, name: str, scope: Scope) -> bool:
    """``name.parameters()`` or ``DDP(name)`` in the same function (same class for ``self.``)."""
    in_class = name.startswith("self.") and scope.cls is not None
    for site in model.calls:
        same = site.scope.cls is scope.cls if in_class else site.scope is scope
        if not same:
            continue
        method = method_call(site.node)
        if method is not None and method[1] in MODULE_ONLY_METHODS and dotted(method[0]) == name:
            return True
        if site.qualified in _MODULE_WRAPPERS and dotted(positional(site.node, 0)) == name:
            return True
    return False


#: Of those, the methods a forward's output (a tensor) has too.
_TENSOR_TOO = {"cuda", "half", "requires_grad_"}
#: Moves whose result is the same object, module or tensor.
_MOVES = {"to", "cuda", "cpu", "float", "half", "double"}


def constructs_module(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    """Whether ``call``'s result is a module, not a forward's output: it is bound (maybe after
    ``.to(device)``) to a name the same function then uses as only a module can be used
    (``m = Model(envs).to(device); m.load_state_dict(...)``, ``m.eval()``). A class passed
    in as a parameter annotated ``nn.Module`` is called to build a model."""
    # asked once per event build that reaches the call (every loop around it): memoized
    memo = model.__dict__.setdefault("_constructs_module", {})
    key = (id(call), id(scope.node))
    if key not in memo:
        memo[key] = _constructs_module(model, call, scope)
    return memo[key]


def _constructs_module(model: TrainingModel, call: cst.Call, scope: Scope) -> bool:
    node: cst.CSTNode = call
    parent = model.dataflow.parent(node)
    while isinstance(parent, cst.Attribute) and parent.attr.value in _MOVES:
        outer = model.dataflow.parent(parent)
        if not isinstance(outer, cst.Call) or outer.func is not parent:
            return False
        node, parent = outer, model.dataflow.parent(outer)
    if not isinstance(parent, cst.Assign) or len(parent.targets) != 1:
        return False
    name = dotted(parent.targets[0].target)
    return name is not None and name in model.names_used_as_modules(scope)


def names_used_as_modules(model: TrainingModel, scope: Scope) -> frozenset[str]:
    """The names ``scope`` calls a method only a module has on (``m.load_state_dict(...)``,
    ``m.eval()``; not ``.cuda()``, which tensors have too)."""
    found = set()
    for site in model.calls_in(scope):
        method = method_call(site.node)
        if method is None or method[1] not in MODULE_ONLY_METHODS or method[1] in _TENSOR_TOO:
            continue
        name = dotted(method[0])
        if name is not None:
            found.add(name)
    return frozenset(found)
