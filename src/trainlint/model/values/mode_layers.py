"""Module structure: which models hold layers that behave differently in train and eval mode.

``model.eval()`` matters only for layers that read ``self.training``: Dropout (and its
variants, also the dropout inside ``nn.Transformer*`` layers and multi-layer RNNs built with
``dropout=``), BatchNorm (running statistics), ``F.dropout(..., training=self.training)`` and
any other code of the class that branches on ``self.training``. A model known to hold none of
them computes the same thing in both modes (TL401 stays silent); one known to hold one is
silently wrong in the wrong mode (TL401 is an error).

What a model holds is read from its construction: a same-file ``nn.Module`` subclass (its
``self.x = ...`` attributes, through ``nn.Sequential``/``ModuleList``/``ModuleDict``, lists
built with ``append``, same-file factory functions and same-file submodule classes), a
``torch.nn`` constructor, or a pretrained factory (torchvision, timm, ``from_pretrained``:
all of them use BatchNorm or Dropout). Attributes whose value cannot be read count as unknown
only when they are used like modules (called, iterated, or their methods called): ``self.dim =
dim`` is not a layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted, keyword, literal, method_call
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, Scope
    from trainlint.model.values.roles import Value


@dataclass(frozen=True)
class ModeLayers:
    """The mode-dependent layers found (``Dropout``, ``BatchNorm2d``...) and whether every
    submodule could be read (``complete``)."""

    layers: tuple[str, ...] = ()
    complete: bool = False

    @property
    def has_any(self) -> bool:
        return bool(self.layers)

    @property
    def known_free(self) -> bool:
        """Known to hold no layer whose behaviour depends on the mode."""
        return self.complete and not self.layers

    def __or__(self, other: ModeLayers) -> ModeLayers:
        layers = tuple(dict.fromkeys(self.layers + other.layers))
        return ModeLayers(layers, self.complete and other.complete)


NONE = ModeLayers((), True)
UNKNOWN = ModeLayers((), False)

_DROPOUT = re.compile(r"^(Alpha|FeatureAlpha)?Dropout(1d|2d|3d)?$")
_BATCH_NORM = re.compile(r"^(Lazy)?(Sync)?BatchNorm(1d|2d|3d)?$")
_INSTANCE_NORM = re.compile(r"^(Lazy)?InstanceNorm(1d|2d|3d)$")
_CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
#: ``torch.nn`` layers with a ``dropout`` argument, and its default.
_DROPOUT_ARGUMENT = {
    "Transformer": 0.1,
    "TransformerEncoderLayer": 0.1,
    "TransformerDecoderLayer": 0.1,
    "MultiheadAttention": 0.0,
    "LSTM": 0.0,
    "GRU": 0.0,
    "RNN": 0.0,
}
#: ``TransformerEncoder(layer, n)``: the layer argument holds the dropout.
_WRAPPING = {"TransformerEncoder", "TransformerDecoder"}
_PRETRAINED = ("torchvision.models", "timm", "torch.hub")
_FUNCTIONAL_MODE = re.compile(r"^torch\.nn\.functional\.(\w*dropout\w*|batch_norm|instance_norm)$")
_PLAIN_BASES = (
    "torch.nn.Module",
    "torch.nn.modules.module.Module",
    "nn.Module",
    "Module",
    "object",
)
_NOT_TORCH = ("tensorflow", "keras", "flax", "jax", "mlx", "haiku", "paddle", "mindspore")


class ModuleStructure:
    """Answers "which mode-dependent layers does this model hold?" for one file, cached."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._classes: dict[str, ModeLayers] = {}

    # ------------------------------------------------------------------ entry points
    def of_value(self, value: Value | None) -> ModeLayers:
        """The layers of the model ``value`` was made from (unknown when it is not known)."""
        if value is None:
            return UNKNOWN
        if value.kind in self.model.classes:
            found = self.of_class(self.model.classes[value.kind])
            if found.complete or value.call is None:
                return found
            return self._of_call(value.call, self.model.module_scope, frozenset())
        if value.call is not None:
            return self._of_call(value.call, self.model.module_scope, frozenset())
        return UNKNOWN

    def is_torch(self, value: Value | None) -> bool:
        """Whether ``value`` is (as far as can be told) a torch module, not keras/flax/mlx."""
        if value is None or not value.kind:
            return True
        if is_under(value.kind, *_NOT_TORCH):
            return False
        info = self.model.classes.get(value.kind)
        if info is None:
            return True
        return not any(is_under(b, *_NOT_TORCH) for b in self.model.class_bases(info))

    def of_class(self, info: ClassInfo, seen: frozenset[str] = frozenset()) -> ModeLayers:
        if info.name in self._classes:
            return self._classes[info.name]
        if info.name in seen:
            return NONE  # a recursive structure: what it holds is counted where it starts
        found = self._read_class(info, seen | {info.name})
        self._classes[info.name] = found
        return found

    # ------------------------------------------------------------------ classes
    def _read_class(
        self,
        info: ClassInfo,
        seen: frozenset[str],
        made_by: tuple[cst.Call, Scope] | None = None,
    ) -> ModeLayers:
        """What ``info`` holds; with ``made_by`` (a construction and its scope), attributes
        bound to constructor parameters hold what that call passes (``RNNModel(rnn_layer)``
        with ``rnn_layer = nn.RNN(...)``)."""
        model = self.model
        init = info.methods.get("__init__")
        found = NONE
        for base in info.bases:
            local = model.classes.get(base.rsplit(".", 1)[-1])
            if local is not None and local is not info:
                found = found | self.of_class(local, seen)
            elif not _plain_module_base(base):
                found = found | UNKNOWN  # a library base class may hold anything
        used = _used_like_modules(model, info)
        for attribute, bindings in info.attributes.items():
            for binding in bindings:
                if binding.value is None or binding.augmented:
                    continue
                scope = binding.scope or model.module_scope
                value: cst.BaseExpression = binding.value
                if (
                    made_by is not None
                    and init is not None
                    and binding.scope is init
                    and isinstance(value, cst.Name)
                    and value.value in init.params
                ):
                    passed = argument_for(made_by[0], init, value.value)
                    if passed is not None:
                        value, scope = passed, made_by[1]
                layers = self._of_expression(value, scope, seen)
                if not layers.complete and attribute not in used:
                    layers = ModeLayers(layers.layers, True)  # ``self.dim = dim``: not a layer
                found = found | layers
        return found | self._methods_read_mode(info)

    def _methods_read_mode(self, info: ClassInfo) -> ModeLayers:
        """``F.dropout(x, training=self.training)`` or any branch on ``self.training``."""
        model = self.model
        methods = {id(scope) for scope in info.methods.values()}
        for site in model.calls:
            if id(site.scope) not in methods:
                continue
            qualified = site.qualified or model.imports.qualify(site.node.func) or ""
            if _FUNCTIONAL_MODE.match(qualified) and (
                keyword(site.node, "training") is not None or len(site.node.args) >= 3
            ):
                return ModeLayers((qualified.rsplit(".", 1)[-1],), True)
        if "self.training" in model.text_of(info.node):
            return ModeLayers(("self.training",), True)
        return NONE

    # ------------------------------------------------------------------ expressions
    def _of_expression(
        self, expr: cst.BaseExpression, scope: Scope, seen: frozenset[str]
    ) -> ModeLayers:
        if isinstance(expr, cst.Call):
            return self._of_call(expr, scope, seen)
        if isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
            return self._of_elements([e.value for e in expr.elements], scope, seen)
        if isinstance(expr, cst.Dict):
            values = [e.value for e in expr.elements if isinstance(e, cst.DictElement)]
            return self._of_elements(values, scope, seen)
        if isinstance(expr, (cst.ListComp, cst.GeneratorExp, cst.SetComp)):
            return self._of_expression(expr.elt, scope, seen)
        if isinstance(expr, cst.DictComp):
            return self._of_expression(expr.value, scope, seen)
        if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString, cst.FormattedString)):
            return NONE
        if isinstance(expr, cst.Name) and expr.value in ("None", "True", "False"):
            return NONE
        if isinstance(expr, cst.Name):
            return self._of_local(expr.value, scope, seen)
        if isinstance(expr, (cst.BinaryOperation, cst.Comparison, cst.UnaryOperation)):
            return NONE  # arithmetic on sizes and flags, not a layer
        return UNKNOWN

    def _of_elements(
        self, elements: list[cst.BaseExpression], scope: Scope, seen: frozenset[str]
    ) -> ModeLayers:
        found = NONE
        for element in elements:
            found = found | self._of_expression(element, scope, seen)
        return found

    def _of_local(self, name: str, scope: Scope, seen: frozenset[str]) -> ModeLayers:
        """A local list of layers (``layers = []; layers.append(nn.Dropout())``) or a value
        bound in the function; a parameter is unknown."""
        bindings = [b for b in scope.bindings.get(name, []) if b.value is not None]
        outer = scope.parent
        while not bindings and name not in scope.params and outer is not None:
            # a global the method reads (``swish_layer = Swish()`` at module level)
            bindings = [b for b in outer.bindings.get(name, []) if b.value is not None]
            if bindings:
                scope = outer
            elif name in outer.params:
                break
            outer = outer.parent
        if not bindings:
            return UNKNOWN
        found = NONE
        for binding in bindings:
            if binding.from_iteration:
                found = found | UNKNOWN
                continue
            found = found | self._of_expression(binding.value, scope, seen)  # type: ignore[arg-type]
        for site in self.model.calls:
            called = method_call(site.node)
            if site.scope is not scope or not called or dotted(called[0]) != name:
                continue
            if called[1] in ("append", "extend", "insert", "add_module"):
                added = [a.value for a in site.node.args]
                found = found | self._of_elements(added, scope, seen)
        return found

    def _of_call(self, call: cst.Call, scope: Scope, seen: frozenset[str]) -> ModeLayers:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        if is_under(qualified, "torch.nn") and not is_under(qualified, "torch.nn.functional"):
            return self._of_torch_layer(qualified, call, scope, seen)
        if is_under(qualified, "torch.nn.functional"):
            return NONE
        if is_under(qualified, *_PRETRAINED) or qualified.endswith("from_pretrained"):
            return ModeLayers((qualified.rsplit(".", 1)[-1],), True)
        if qualified.startswith("torch."):
            return NONE  # tensors, parameters (``torch.zeros``, ``nn.Parameter`` handled above)
        name = dotted(call.func)
        if name in model.classes:
            found = self.of_class(model.classes[name], seen)
            if found.complete or name in seen:
                return found
            # read again at this construction: its arguments may be known layers
            return self._read_class(model.classes[name], seen | {name}, (call, scope))
        method = method_call(call)
        if method is not None and method[1] in ("to", "cuda", "cpu", "float", "half", "double"):
            return self._of_expression(method[0], scope, seen)
        callee = model.callee(call, scope)
        if callee is not None and callee.returns:
            return self._of_elements(list(callee.returns), callee, seen)
        if name in ("int", "float", "bool", "str", "len", "max", "min", "round", "list", "dict"):
            return NONE
        return UNKNOWN

    def _of_torch_layer(
        self, qualified: str, call: cst.Call, scope: Scope, seen: frozenset[str]
    ) -> ModeLayers:
        last = qualified.rsplit(".", 1)[-1]
        if _DROPOUT.match(last) or _BATCH_NORM.match(last):
            return ModeLayers((last,), True)
        if _INSTANCE_NORM.match(last):
            tracked = literal(keyword(call, "track_running_stats"), False)
            return ModeLayers((last,), True) if tracked is not False else NONE
        if last in _CONTAINERS:
            values = [a.value for a in call.args]
            return self._of_elements(values, scope, seen)
        if last in _WRAPPING:
            return self._of_elements([a.value for a in call.args[:1]], scope, seen)
        if last in _DROPOUT_ARGUMENT:
            rate = literal(keyword(call, "dropout"), _DROPOUT_ARGUMENT[last])
            if last in ("LSTM", "GRU", "RNN") and keyword(call, "dropout") is None:
                return NONE
            return ModeLayers((f"{last}(dropout)",), True) if rate != 0 else NONE
        return NONE


def _plain_module_base(base: str) -> bool:
    return base in _PLAIN_BASES


def _used_like_modules(model: TrainingModel, info: ClassInfo) -> set[str]:
    """Attributes a method calls (``self.x(...)``, ``self.x[i](...)``, ``self.x.f(...)``) or
    iterates over: what an unreadable attribute must be used as before it counts as a layer."""
    methods = {id(scope) for scope in info.methods.values()}
    found: set[str] = set()
    for site in model.calls:
        if id(site.scope) not in methods and site.scope.cls is not info:
            continue
        func = site.node.func
        while isinstance(func, cst.Subscript):
            func = func.value
        name = dotted(func) or ""
        if name.startswith("self."):
            found.add(name.split(".")[1])
    for loop in model.loops:
        if loop.scope.cls is info:
            iterable = loop.iter_expr
            if isinstance(iterable, cst.Call) and iterable.args:
                iterable = iterable.args[0].value
            name = dotted(iterable) or ""
            if name.startswith("self."):
                found.add(name.split(".")[1])
    return found
