"""Which keras models and layers compute something different with ``training=True``.

``model(x)`` outside ``fit()`` runs every layer in inference mode unless ``training`` is passed:
Dropout drops nothing and BatchNormalization normalizes with its moving statistics (and never
updates them). That matters only for models holding such layers, so this module reads what a
callable holds, as a :class:`~.keras_held.HeldLayers` (the layers found, whether everything
could be read, and whether what was not read lies outside the file):

* a keras built-in layer: Dropout/BatchNormalization/noise/random augmentation layers, and
  layers built with a non-zero ``dropout=``/``recurrent_dropout=`` (LSTM, MultiHeadAttention);
  every other built-in (and a few mode-free layers of tensorflow_addons) holds none;
* a model of :mod:`.keras_models`: ``Sequential``/functional (their layers, the same-file layer
  classes among them, the same-file helpers applying layers, ``conv_bn(x)``, where a layer
  under ``if flag:`` counts only when the flag is true at that call), a subclass, an
  application (all but VGG use BatchNormalization); a model loaded from disk is unknown;
* a same-file ``keras.Model``/``keras.layers.Layer`` subclass: the layers bound to ``self`` in
  any method (lists of them too), layers built inline in its methods, its same-file bases, a
  ``call()`` that branches on its ``training`` argument, and models passed to its constructor
  (``SimSiam(get_encoder(), get_predictor())``, read at the same-file constructions).

What same-file code could not be read counts as holding nothing when no training-dependent
layer is built anywhere in the file. A call passes the flag when it gives ``training=`` (any
value), a second positional argument (``model(x, True)``), or ``**kwargs``.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_held import (
    EXTERNAL,
    LOCAL_UNKNOWN,
    NONE,
    BuilderFlags,
    HeldLayers,
    aliased_layer,
    branches_on_training,
    called_attributes,
    has_dropout_argument,
    holding,
)
from trainlint.model.frameworks.keras_layers import (
    canonical_keras,
    is_training_dependent,
    keras_name,
)
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    method_call,
    root_name,
)
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.roles import Role
from trainlint.model.values.types import ClassKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.frameworks.keras_models import KerasModel
    from trainlint.model.syntax.scopes import CallSite, ClassInfo, Scope

_KERAS_CLASSES = (ClassKind.KERAS_MODEL, ClassKind.KERAS_LAYER)
#: Applications built without BatchNormalization.
_PLAIN_APPLICATIONS = ("VGG16", "VGG19")
#: Layers of other libraries that behave the same in both modes.
_MODE_FREE_LIBRARY_LAYERS = {
    "tensorflow_addons.layers.InstanceNormalization",
    "tensorflow_addons.layers.GroupNormalization",
    "tensorflow_addons.layers.WeightNormalization",
}


class KerasModes:
    """``TrainingModel.keras_modes``: training-dependent layers of keras callables."""

    max_depth = 4

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._classes: dict[str, HeldLayers] = {}
        self._guards = BuilderFlags()

    def of_callable(
        self, func: cst.BaseExpression, scope: Scope, before: int | None = None
    ) -> HeldLayers | None:
        """What the keras model or layer ``func`` holds; None when it is not known to be one.
        What same-file code could not be read counts as holding nothing when no
        training-dependent layer is built anywhere in the file."""
        held = self._of_callable(func, scope, before)
        unread_here = held is not None and not held.complete and not held.external
        if unread_here and not self.file_builds_mode_layers:
            return NONE
        return held

    def _of_callable(
        self, func: cst.BaseExpression, scope: Scope, before: int | None, depth: int = 0
    ) -> HeldLayers | None:
        model = self.model
        if isinstance(func, cst.Name) and func.value == "self" and scope.cls is not None:
            if model.class_kind(scope.cls) in _KERAS_CLASSES:
                return self.of_class(scope.cls)
            return None
        found = model.keras.model_of(func, scope, before)
        if found is not None:
            return self.of_keras_model(found)
        if isinstance(func, cst.Name) and func.value in scope.params and depth < 3:
            return self._of_parameter(func.value, scope, depth)
        name = dotted(func) or ""
        cls = scope.cls
        if name.startswith("self.") and name.count(".") == 1 and cls is not None:
            attribute = name[len("self.") :]
            if model.class_kind(cls) in _KERAS_CLASSES and attribute in cls.attributes:
                held = self.of_attribute(cls, attribute, True)
                if held is not None:
                    return held
        value = model.value_of(func, scope)
        if value is None or value.role is not Role.MODEL:
            return None
        if value.call is not None and keras_name(model.imports, value.call.func):
            return self._of_constructor(value.call, scope, frozenset(), 0)
        local = model.classes.get(value.kind)
        if local is not None and model.class_kind(local) in _KERAS_CLASSES:
            return self.of_class(local)
        return self._of_project_instance(func, scope)

    def _of_project_instance(self, func: cst.BaseExpression, scope: Scope) -> HeldLayers | None:
        """An instance of a keras model class of another module of the project, read from
        its summary (the layer constructors named in the class); None when it names none
        (its layers may be other classes whose ``call`` decides for itself)."""
        summary = self.model.instance_summary(func, scope)
        if summary is None or not summary.is_module:
            return None
        if not any(canonical_keras(base).startswith("tensorflow.keras") for base in summary.bases):
            return None
        found = ("Dropout",) * summary.has_dropout + ("BatchNormalization",) * summary.has_batchnorm
        return HeldLayers(found) if found else None

    def _of_parameter(self, name: str, scope: Scope, depth: int) -> HeldLayers | None:
        """A model passed in (``def train_one_step(model, x)``): what every same-file call of
        the function passes for it; None unless each passes a keras model or layer."""
        result: HeldLayers | None = None
        for site in self._callers.get(id(scope.node), []):
            given = argument_for(site.node, scope, name)
            if given is None:
                return None
            held = self._of_callable(given, site.scope, site.statement_order, depth + 1)
            if held is None:
                return None
            result = held if result is None else result | held
        return result

    @cached_property
    def _callers(self) -> dict[int, list[CallSite]]:
        """Same-file call sites by the function they call."""
        found: dict[int, list[CallSite]] = {}
        for site in self.model.calls:
            callee = self.model.callee(site.node, site.scope, external=False)
            if callee is not None:
                found.setdefault(id(callee.node), []).append(site)
        return found

    @cached_property
    def file_builds_mode_layers(self) -> bool:
        """Whether any training-dependent layer is built, or any ``call()`` branches on
        ``training``, anywhere in the file."""
        imports = self.model.imports
        for site in self.model.calls:
            call = aliased_layer(self.model, site.node, site.scope)
            if keras_name(imports, call.func) and (
                is_training_dependent(imports, call) or has_dropout_argument(call)
            ):
                return True
        return any(branches_on_training(info) for info in self.model.classes.values())

    def of_keras_model(
        self,
        found: KerasModel,
        seen: frozenset[str] = frozenset(),
        depth: int = 0,
        builder_call: cst.Call | None = None,
    ) -> HeldLayers:
        """What a model holds; ``builder_call`` is the call of the same-file function that
        built it, whose arguments decide its ``if flag:`` layers."""
        if found.style == "application":
            return self._application(found.node)
        if found.style == "loaded":
            return EXTERNAL
        if found.style == "subclassed" and found.cls is not None:
            return self.of_class(found.cls, seen)
        result = LOCAL_UNKNOWN if found.opaque else NONE
        imports = self.model.imports
        for layer in found.layers:
            written = aliased_layer(self.model, layer, found.scope)
            if not keras_name(imports, written.func) or not (
                is_training_dependent(imports, written) or has_dropout_argument(written)
            ):
                continue
            held = holding(_layer_label(self, written))
            result = result | self._guards.guarded(layer, found.scope, held, builder_call)
        for part in found.parts:
            result = result | self._of_constructor(part, found.scope, seen, depth + 1)
        return result

    def of_class(self, info: ClassInfo, seen: frozenset[str] = frozenset()) -> HeldLayers:
        if info.name in seen:
            return LOCAL_UNKNOWN
        if info.name not in self._classes:
            self._classes[info.name] = LOCAL_UNKNOWN  # recursion guard
            self._classes[info.name] = self._read_class(info, seen | {info.name})
        return self._classes[info.name]

    # ------------------------------------------------------------------ reading
    def _read_class(self, info: ClassInfo, seen: frozenset[str]) -> HeldLayers:
        model = self.model
        if model.class_kind(info) not in _KERAS_CLASSES:
            return LOCAL_UNKNOWN
        result = NONE
        called = called_attributes(info)
        for attribute in info.attributes:
            held = self.of_attribute(info, attribute, attribute in called, seen)
            result = result | (held if held is not None else EXTERNAL)
        for method in info.methods.values():
            for node in descendants(method.node):
                if isinstance(node, cst.Call) and isinstance(node.func, cst.Call):
                    inline = node.func  # ``layers.Dropout(0.2)(x)`` written in ``call()``
                    if keras_name(model.imports, inline.func):
                        result = result | self._of_constructor(inline, method, seen, 0)
        if branches_on_training(info):
            result = result | holding("`training` branch")
        for base in info.bases:
            local = model.classes.get(base.rsplit(".", 1)[-1])
            if local is not None and local is not info:
                result = result | self.of_class(local, seen)
        return result

    def of_attribute(
        self, info: ClassInfo, attribute: str, called: bool, seen: frozenset[str] = frozenset()
    ) -> HeldLayers | None:
        """What ``self.<attribute>`` holds, from every binding of it in the class; None when
        it is bound to an argument not known to be a keras model (a loss function)."""
        result = NONE
        for binding in info.attributes.get(attribute, []):
            value = binding.value
            scope = binding.scope or self.model.module_scope
            if isinstance(value, cst.Call) and not self._is_tensor_op(value):
                result = result | self._of_constructor(value, scope, seen, 0)
            elif isinstance(value, (cst.List, cst.Tuple, cst.ListComp)):
                result = result | self._of_elements(value, scope, seen)
            elif called:  # ``self.encoder = encoder``: passed in
                held = self._of_argument(info, value, scope, seen)
                if held is None:
                    return None
                result = result | held
        return result

    def _of_argument(
        self,
        info: ClassInfo,
        value: cst.BaseExpression | None,
        scope: Scope,
        seen: frozenset[str],
    ) -> HeldLayers | None:
        """An attribute bound to a parameter of ``__init__``: what the same-file
        constructions of the class pass for it (``SimSiam(get_encoder(), get_predictor())``);
        None unless every one of them passes a keras model or layer."""
        if (
            not isinstance(value, cst.Name)
            or value.value not in scope.params
            or scope.short_name != "__init__"
        ):
            return None
        result: HeldLayers | None = None
        for site in self.model.calls:
            if dotted(site.node.func) != info.name:
                continue
            given = argument_for(site.node, scope, value.value)
            if given is None:
                return None
            if isinstance(given, cst.Call):
                held = self._of_constructor(given, site.scope, seen, 1)
                if held.external and not self.model.keras.model_of(given, site.scope):
                    return None  # not known to be a model
            else:
                held = self._of_callable(given, site.scope, site.statement_order)
                if held is None:
                    return None
            result = held if result is None else result | held
        return result

    def _of_elements(
        self, node: cst.List | cst.Tuple | cst.ListComp, scope: Scope, seen: frozenset[str]
    ) -> HeldLayers:
        if isinstance(node, cst.ListComp):
            element = node.elt
            if isinstance(element, cst.Call):
                return self._of_constructor(element, scope, seen, 0)
            return LOCAL_UNKNOWN
        result = NONE
        for item in node.elements:
            if isinstance(item.value, cst.Call):
                result = result | self._of_constructor(item.value, scope, seen, 0)
            else:
                result = result | LOCAL_UNKNOWN
        return result

    def _of_constructor(
        self, call: cst.Call, scope: Scope, seen: frozenset[str], depth: int
    ) -> HeldLayers:
        """What the layer or model ``call`` builds holds (also a helper applying layers)."""
        model = self.model
        if depth > self.max_depth:
            return LOCAL_UNKNOWN
        qualified = keras_name(model.imports, call.func)
        if qualified:
            found = model.keras.from_constructor(call, scope)
            if found is not None:
                return self.of_keras_model(found, seen, depth)
            if is_training_dependent(model.imports, call) or has_dropout_argument(call):
                return holding(_layer_label(self, call))
            return NONE
        if (model.imports.qualify(call.func) or "") in _MODE_FREE_LIBRARY_LAYERS:
            return NONE
        local = model.classes.get(dotted(call.func) or "")
        if local is not None:
            return self.of_class(local, seen)
        found = model.keras.model_of(call, scope)
        callee = model.callee(call, scope, external=False)
        if found is not None:
            built_by = call if callee is not None and callee is found.scope else None
            return self.of_keras_model(found, seen, depth, built_by)
        if callee is not None:
            return self._of_helper(call, callee, seen, depth)
        return EXTERNAL if self._from_outside(call.func, scope) else LOCAL_UNKNOWN

    def _from_outside(self, func: cst.BaseExpression, scope: Scope) -> bool:
        """Whether a callable comes from outside this file: imported, or a parameter."""
        root = root_name(func)
        if root is None or root == "self":
            return False
        if self.model.imports.qualify_dotted(root) is not None:
            return True
        current: Scope | None = scope
        while current is not None:
            if root in current.params:
                return True
            if root in current.bindings or root in current.functions:
                return False
            current = current.parent
        return True

    def _of_helper(
        self, call: cst.Call, callee: Scope, seen: frozenset[str], depth: int
    ) -> HeldLayers:
        """A same-file function that applies layers (``conv_bn(x)``): the layers it builds,
        those under ``if flag:`` counted only when ``flag`` is true at this call."""
        result = NONE
        for site in self.model.calls_in(callee):
            inner = site.node
            if isinstance(inner.func, cst.Call) or self._is_tensor_op(inner):
                continue
            if method_call(inner) is not None and not keras_name(self.model.imports, inner.func):
                continue  # ``x.shape``, ``block.add(...)``: what they add is read as a call
            held = self._of_constructor(inner, callee, seen, depth + 1)
            result = result | self._guards.guarded(inner, callee, held, call)
        return result

    def _application(self, call: cst.Call) -> HeldLayers:
        name = keras_name(self.model.imports, call.func).rsplit(".", 1)[-1]
        if name in _PLAIN_APPLICATIONS:
            return NONE
        return holding("BatchNormalization")

    def _is_tensor_op(self, call: cst.Call) -> bool:
        """``tf.Variable(...)``, ``self.add_weight(...)``: values, not layers."""
        qualified = self.model.imports.qualify(call.func) or ""
        if is_under(qualified, "tensorflow") and not keras_name(self.model.imports, call.func):
            return True
        if is_under(qualified, "numpy", "math") or qualified.startswith("tensorflow.keras.ops"):
            return True
        if isinstance(call.func, cst.Name) and call.func.value in _BUILTINS:
            return True
        method = method_call(call)
        return method is not None and dotted(method[0]) == "self"


_BUILTINS = {"len", "range", "int", "float", "str", "list", "tuple", "dict", "print", "zip"}


def _layer_label(modes: KerasModes, constructor: cst.Call) -> str:
    name = keras_name(modes.model.imports, constructor.func).rsplit(".", 1)[-1]
    return name if is_training_dependent(modes.model.imports, constructor) else f"{name}(dropout=)"
