"""The structure of keras models: their layers, their outputs, and what each output holds.

Three ways to build a model are read:

* ``Sequential([...])`` and later ``model.add(layer)`` calls on the same binding (anywhere
  after it in the module: in a notebook the cells are one module);
* the functional API: ``Model(inputs, outputs)`` (also ``outputs=[...]`` / ``{...}``), each
  output traced back through layer calls ``Dense(1)(x)`` / ``head(x)`` and pass-through
  layers to the layer that made it;
* subclassed models (a same-file class deriving from ``keras.Model``): the layers bound to
  ``self`` and what ``call()`` returns, when the tensor analysis can tell.

Pretrained applications (``keras.applications.MobileNetV2(include_top=False)``) and hub layers
count as a *base*; a model loaded from disk has unknown heads. What an output holds is a
:class:`~trainlint.model.values.tensors.TensorKind` (``LOGITS`` for a final layer with no
activation): ``UNKNOWN`` whenever it cannot be told, and rules stay silent then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_compile import CompileCall, compile_calls
from trainlint.model.frameworks.keras_layers import (
    LayerKind,
    activated_output,
    application_output,
    canonical_keras,
    is_application,
    is_pretrained_base,
    is_training_dependent,
    keras_name,
    layer_kind,
    layer_name,
    units_of,
)
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import argument, descendants, dotted, method_call
from trainlint.model.values.kinds import Activation, TensorKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, ClassInfo, Scope

UNKNOWN = TensorKind(Activation.UNKNOWN)

_MODEL_CLASSES = {"tensorflow.keras.Model", "tensorflow.keras.models.Model"}
_SEQUENTIAL = {"tensorflow.keras.Sequential", "tensorflow.keras.models.Sequential"}
_LOADERS = {
    "tensorflow.keras.models.load_model",
    "tensorflow.keras.saving.load_model",
    "tensorflow.keras.models.clone_model",
    "tensorflow.keras.models.model_from_json",
}


@dataclass(frozen=True)
class Head:
    """One output of a model: what it holds and the layer that produced it."""

    kind: TensorKind
    layer: cst.Call | None = None  # the final layer's constructor
    name: str | None = None  # the output's name (its layer's ``name=``, or a dict key)

    @property
    def units(self) -> object:
        return units_of(self.layer) if self.layer is not None else "?"


@dataclass(eq=False)
class KerasModel:
    """A keras model built in this file."""

    node: cst.Call  # the constructor (``Sequential(...)``, ``Model(...)``, ``MyModel()``)
    scope: Scope
    style: str  # "sequential" | "functional" | "subclassed" | "application" | "loaded"
    heads: tuple[Head, ...] = ()
    layers: tuple[cst.Call, ...] = ()  # layer constructors found in it
    bases: tuple[cst.Call, ...] = ()  # pretrained bases (applications without top, hub)
    cls: ClassInfo | None = None
    binding: Binding | None = None
    notes: list[str] = field(default_factory=list)
    #: What the model is made of besides keras built-in layers, for whoever needs to read it
    #: (see :mod:`.keras_modes`): constructors of other layers (same-file layer classes,
    #: builder calls) and, in functional models, calls of helpers that apply layers
    #: (``x = conv_block(x, 64)``).
    parts: tuple[cst.Call, ...] = ()
    #: Some layer could not be told at all (a ``Sequential`` entry that is not a call).
    opaque: bool = False

    @property
    def head(self) -> Head | None:
        """The single output's head (None for several outputs or none known)."""
        return self.heads[0] if len(self.heads) == 1 else None

    def training_layers(self, model: TrainingModel) -> list[cst.Call]:
        """Layers that behave differently with ``training=True`` (Dropout, BatchNorm, ...)."""
        return [c for c in self.layers if is_training_dependent(model.imports, c)]


class KerasModels:
    """Keras model structure for one file (``TrainingModel.keras``)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._by_call: dict[int, KerasModel | None] = {}
        self._pinned: list[cst.CSTNode] = []
        self._bindings: dict[int, Binding] | None = None
        self._sites: dict[int, int] | None = None

    # ------------------------------------------------------------------ queries
    @cached_property
    def compiles(self) -> list[CompileCall]:
        """Every ``model.compile(...)`` with its model, losses and metrics (in file order)."""
        return compile_calls(self.model)

    def model_of(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> KerasModel | None:
        """The keras model ``expr`` refers to (a name bound to a constructor, a same-file
        builder function's return, the constructor itself)."""
        return self._model_of(expr, scope, before, 0)

    def from_constructor(self, call: cst.Call, scope: Scope) -> KerasModel | None:
        key = id(call)
        if key not in self._by_call:
            self._by_call[key] = None  # recursion guard: a model whose layers name itself
            self._pinned.append(call)
            # cached per call: read it in the scope it is written in, whoever asks first (a
            # builder's ``Sequential`` asked about from module level names its own locals)
            self._by_call[key] = self._build(call, self._written_in.get(key, scope))
        return self._by_call[key]

    @cached_property
    def _written_in(self) -> dict[int, Scope]:
        return {id(site.node): site.scope for site in self.model.calls}

    def output_kind(self, constructor: cst.Call, scope: Scope) -> TensorKind | None:
        """What calling the keras layer or model built by ``constructor`` returns; None when
        the layer passes its input through (the caller reads the input)."""
        kind, last = layer_kind(self.model.imports, constructor)
        if kind is LayerKind.PASS_THROUGH:
            return None
        if kind is LayerKind.ACTIVATED:
            return activated_output(self.model.imports, constructor, last)
        if kind is LayerKind.MODEL or self._local_model_class(constructor) is not None:
            found = self.from_constructor(constructor, scope)
            head = found.head if found is not None else None
            return head.kind if head is not None else UNKNOWN
        return UNKNOWN

    # ------------------------------------------------------------------ resolution
    def _model_of(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None, depth: int
    ) -> KerasModel | None:
        if expr is None or depth > 6:
            return None
        if isinstance(expr, cst.Call):
            found = self.from_constructor(expr, scope)
            if found is not None:
                return found
            callee = self.model.callee(expr, scope)
            if callee is None:
                return None
            for returned, order in zip(callee.returns, callee.return_orders, strict=False):
                found = self._model_of(returned, callee, order, depth + 1)
                if found is not None:
                    return found
            return None
        name = dotted(expr)
        if name is None:
            return None
        for binding in self.model.lookup(name, scope, before):
            if binding.augmented or binding.from_iteration or binding.unpack_index is not None:
                return None
            if binding.value is None or dotted(binding.value) == name:
                return None
            return self._model_of(binding.value, binding.scope or scope, binding.order, depth + 1)
        return None

    def _statement_order(self, call: cst.Call) -> int | None:
        if self._sites is None:
            self._sites = {id(site.node): site.statement_order for site in self.model.calls}
        return self._sites.get(id(call))

    def _local_model_class(self, call: cst.Call) -> ClassInfo | None:
        """The same-file class ``call`` instantiates, when it derives from ``keras.Model``."""
        info = self.model.classes.get(dotted(call.func) or "")
        if info is not None and self.is_model_class(info):
            return info
        return None

    def is_model_class(self, info: ClassInfo) -> bool:
        return any(canonical_keras(b) in _MODEL_CLASSES for b in self.model.class_bases(info))

    def _binding_of(self, call: cst.Call) -> Binding | None:
        if self._bindings is None:
            self._bindings = {}
            for scope in self.model.scopes:
                for bindings in scope.bindings.values():
                    for binding in bindings:
                        if isinstance(binding.value, cst.Call) and binding.unpack_index is None:
                            self._bindings.setdefault(id(binding.value), binding)
        return self._bindings.get(id(call))

    # ------------------------------------------------------------------ building
    def _build(self, call: cst.Call, scope: Scope) -> KerasModel | None:
        imports = self.model.imports
        qualified = keras_name(imports, call.func)
        if qualified in _SEQUENTIAL:
            return self._sequential(call, scope)
        if qualified in _MODEL_CLASSES:
            return self._functional(call, scope)
        if is_application(qualified):
            bases = (call,) if is_pretrained_base(imports, call) else ()
            heads = (Head(application_output(call), call),)
            return KerasModel(call, scope, "application", heads, (call,), bases)
        if qualified in _LOADERS:
            return KerasModel(call, scope, "loaded")
        info = self._local_model_class(call)
        if info is not None:
            return self._subclassed(call, scope, info)
        return None

    def _sequential(self, call: cst.Call, scope: Scope) -> KerasModel:
        given = argument(call, 0, "layers")
        entries: list[cst.BaseExpression] = []
        if isinstance(given, (cst.List, cst.Tuple)):
            entries = [e.value for e in given.elements if isinstance(e, cst.Element)]
        binding = self._binding_of(call)
        if binding is not None:
            entries += self._added(binding)
        found = KerasModel(call, scope, "sequential", binding=binding)
        layers: list[cst.Call] = []
        bases: list[cst.Call] = []
        before = self._statement_order(call)
        for entry in entries:
            layer = self._layer_constructor(entry, scope, before)
            if layer is None:
                found.opaque = True
                continue
            layers.append(layer)
            nested = self._nested(layer, scope)
            if nested is not None:
                layers += nested.layers
                bases += nested.bases
                found.opaque |= nested.opaque
            elif is_pretrained_base(self.model.imports, layer):
                bases.append(layer)
        found.layers, found.bases = tuple(layers), tuple(bases)
        found.parts = tuple(c for c in layers if not keras_name(self.model.imports, c.func))
        found.heads = (self._last_of(entries, scope, before),) if entries else ()
        return found

    def _added(self, binding: Binding) -> list[cst.BaseExpression]:
        """Layers given to ``model.add(...)`` while ``binding`` is the model's latest one."""
        added = []
        for site in self.model.calls:
            method = method_call(site.node)
            if method is None or method[1] != "add" or dotted(method[0]) != binding.target:
                continue
            if site.order <= binding.order or not site.node.args:
                continue
            latest = self.model.lookup(binding.target, site.scope, site.order)
            if latest and latest[0] is binding:
                added.append(site.node.args[0].value)
        return added

    def _layer_constructor(
        self, entry: cst.BaseExpression, scope: Scope, before: int | None = None
    ) -> cst.Call | None:
        """The constructor of a layer written inline or bound to a name earlier: before the
        statement ``before`` building the stack (``model = keras.Sequential([model])`` wraps
        the earlier model, not itself)."""
        if isinstance(entry, cst.Call):
            return entry
        name = dotted(entry)
        if name is None:
            return None
        for binding in self.model.lookup(name, scope, before):
            if before is not None and binding.order >= before:
                return None  # only the stack's own binding: what it wraps is not visible
            if isinstance(binding.value, cst.Call) and binding.unpack_index is None:
                return binding.value
            return None
        return None

    def _nested(self, layer: cst.Call, scope: Scope) -> KerasModel | None:
        kind, _ = layer_kind(self.model.imports, layer)
        if kind is LayerKind.MODEL or self._local_model_class(layer) is not None:
            return self.from_constructor(layer, scope)
        return None

    def _last_of(
        self, entries: list[cst.BaseExpression], scope: Scope, before: int | None = None
    ) -> Head:
        """The head of a stack of layers: the last one that is not a pass-through."""
        for entry in reversed(entries):
            layer = self._layer_constructor(entry, scope, before)
            if layer is None:
                return Head(UNKNOWN)
            kind = self.output_kind(layer, scope)
            if kind is None:
                continue
            nested = self._nested(layer, scope)
            if nested is not None and nested.head is not None:
                return nested.head
            return Head(kind, layer, layer_name(layer))
        return Head(UNKNOWN)

    def _functional(self, call: cst.Call, scope: Scope) -> KerasModel:
        outputs = argument(call, 1, "outputs")
        order = self._statement_order(call)
        found = KerasModel(call, scope, "functional", binding=self._binding_of(call))
        named: list[tuple[str | None, cst.BaseExpression]] = []
        if isinstance(outputs, (cst.List, cst.Tuple)):
            named = [(None, e.value) for e in outputs.elements if isinstance(e, cst.Element)]
        elif isinstance(outputs, cst.Dict):
            for element in outputs.elements:
                if isinstance(element, cst.DictElement):
                    key = element.key
                    text = key.evaluated_value if isinstance(key, cst.SimpleString) else None
                    named.append((text if isinstance(text, str) else None, element.value))
        elif outputs is not None:
            resolved = self._resolve_name(outputs, scope, order)
            if isinstance(resolved, (cst.List, cst.Tuple)):
                named = [(None, e.value) for e in resolved.elements if isinstance(e, cst.Element)]
            else:
                named = [(None, outputs)]
        layers: list[cst.Call] = []
        parts: list[cst.Call] = []
        heads = []
        for key, expr in named:
            layer = self._producing_layer(expr, scope, order, layers, parts)
            kind = self.model.tensor_kind(expr, scope, order)
            name = key or (layer_name(layer) if layer is not None else None)
            heads.append(Head(kind, layer, name))
        found.heads, found.layers = tuple(heads), tuple(layers)
        found.parts = tuple(parts)
        found.opaque = not named
        found.bases = tuple(c for c in layers if is_pretrained_base(self.model.imports, c))
        return found

    def _resolve_name(
        self, expr: cst.BaseExpression, scope: Scope, before: int | None
    ) -> cst.BaseExpression:
        name = dotted(expr)
        if name is None:
            return expr
        bindings = self.model.lookup(name, scope, before)
        if bindings and bindings[0].value is not None and bindings[0].unpack_index is None:
            return bindings[0].value
        return expr

    def _producing_layer(
        self,
        expr: cst.BaseExpression,
        scope: Scope,
        before: int | None,
        seen: list[cst.Call],
        parts: list[cst.Call] | None = None,
    ) -> cst.Call | None:
        """The layer whose call made ``expr``; every layer met on the way back is added to
        ``seen`` (the functional graph, walked from the output towards the inputs), to
        ``parts`` every other layer constructor, and every call that is not an op."""
        first: cst.Call | None = None
        frontier: list[tuple[cst.BaseExpression, int | None]] = [(expr, before)]
        visited: set[int] = set()
        while frontier and len(visited) < 200:
            current, order = frontier.pop()
            if id(current) in visited:
                continue
            visited.add(id(current))
            name = dotted(current)
            if name is not None:
                bindings = self.model.lookup(name, scope, order)
                earlier = [b for b in bindings if order is None or b.order < order]
                if earlier and earlier[0].value is not None and earlier[0].scope is scope:
                    frontier.append((earlier[0].value, earlier[0].order))
                continue
            if not isinstance(current, cst.Call):
                continue
            layer = self._layer_constructor(current.func, scope)
            if layer is not None and (
                keras_name(self.model.imports, layer.func)
                or (self._local_model_class(layer) is not None)
            ):
                seen.append(layer)
                nested = self._nested(layer, scope)
                if nested is not None:
                    seen.extend(nested.layers)
                kind, _ = layer_kind(self.model.imports, layer)
                if first is None and kind is not LayerKind.PASS_THROUGH:
                    first = layer
            elif parts is not None and (layer is not None or not self._is_op(current)):
                parts.append(layer if layer is not None else current)
            inputs = [a.value for a in current.args]
            for value in reversed(inputs):
                frontier.append((value, order))
        return first

    def _is_op(self, call: cst.Call) -> bool:
        """A TensorFlow/NumPy op or a tensor method (``tf.concat``, ``x.reshape``): no layers."""
        qualified = self.model.imports.qualify(call.func) or ""
        return is_under(qualified, "tensorflow", "numpy") or method_call(call) is not None

    def _subclassed(self, call: cst.Call, scope: Scope, info: ClassInfo) -> KerasModel:
        layers = []
        for bindings in info.attributes.values():
            for binding in bindings:
                if isinstance(binding.value, (cst.Call, cst.List, cst.Tuple)):
                    layers.extend(self._layers_in(binding.value))
        bases = tuple(c for c in layers if is_pretrained_base(self.model.imports, c))
        found = KerasModel(call, scope, "subclassed", (), tuple(layers), bases, info)
        method = self.model.method(info, "call")
        returns = list(zip(method.returns, method.return_orders, strict=False)) if method else []
        if method is not None and returns:
            if any(isinstance(r, (cst.Tuple, cst.Dict, cst.List)) for r, _ in returns):
                return found  # several outputs: not matched to losses here
            kinds = [self.model.tensor_kind(r, method, o) for r, o in returns]
            if len({k.activation for k in kinds}) == 1:  # every return agrees
                found.heads = (Head(kinds[0]),)
        return found

    def _layers_in(self, node: cst.CSTNode) -> list[cst.Call]:
        found = []
        nodes = [node, *descendants(node)]
        for child in nodes:
            if isinstance(child, cst.Call) and keras_name(self.model.imports, child.func):
                found.append(child)
        return found
