"""Module structure: what calling a layer object returns.

A layer is known by its constructor (``nn.Linear(h, k)``, ``nn.Softmax(dim=1)``, keras
``Dense(1, activation="sigmoid")``), by the same-file model class it instantiates, or by an
``nn.Sequential`` / keras ``Sequential`` stack, whose output is its last layer applied to what
the layers before it produce (so ``nn.Sequential(nn.Linear(h, k), nn.ReLU())`` returns a ReLU
of logits, and a trailing ``Dropout``/``Identity``/``Flatten`` keeps what came before it).
Auxiliary heads held in attributes (``self.aux = nn.Sequential(nn.Linear(h, k),
nn.Softmax())``) are ordinary layers here; ``forward`` returns are read by the evaluator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_layers import (
    LayerKind,
    activated_output,
    is_activation_layer,
    layer_kind,
)
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import argument, dotted, keyword, literal, positional
from trainlint.model.values.kinds import UNKNOWN, UNRESOLVED_AXIS, Activation, TensorKind

if TYPE_CHECKING:
    from trainlint.model.syntax.scopes import Scope
    from trainlint.model.values.tensors import TensorAnalysis

LINEAR_LAYERS = {"Linear", "Bilinear", "LazyLinear", "Dense", "Conv1d", "Conv2d", "Conv3d"}
ACTIVATION_LAYERS = {
    "Sigmoid": Activation.PROBABILITIES,
    "Softmax": Activation.PROBABILITIES,
    "Softmax2d": Activation.PROBABILITIES,
    "LogSoftmax": Activation.LOG_PROBABILITIES,
    "LogSigmoid": Activation.LOG_PROBABILITIES,
    "ReLU": Activation.NON_NEGATIVE,
    "ReLU6": Activation.NON_NEGATIVE,
    "Softplus": Activation.NON_NEGATIVE,
}
#: Layers whose output holds the same kind of values as their input.
PASS_THROUGH_LAYERS = {
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "Identity",
    "Flatten",
    "Unflatten",
}
_PRODUCERS = {
    "Sigmoid": "sigmoid",
    "Softmax": "softmax",
    "Softmax2d": "softmax",
    "LogSoftmax": "log_softmax",
    "LogSigmoid": "logsigmoid",
}


def axis_of(call: cst.Call, position: int) -> object:
    """The ``dim=``/``axis=`` of a softmax-like call: a literal, ``UNRESOLVED_AXIS``, or None
    when it is not given (an explicit ``dim=None`` counts as not given)."""
    for name in ("dim", "axis"):
        found = keyword(call, name)
        if found is not None:
            return literal(found, UNRESOLVED_AXIS)
    found = positional(call, position)
    return literal(found, UNRESOLVED_AXIS) if found is not None else None


def width_of(constructor: cst.Call, last: str) -> int | None:
    """The output units of a linear layer, when written as a literal."""
    if last in ("Linear", "LazyLinear"):
        given = argument(constructor, 1 if last == "Linear" else 0, "out_features")
    elif last == "Bilinear":
        given = argument(constructor, 2, "out_features")
    elif last == "Dense":
        given = argument(constructor, 0, "units")
    else:
        return None
    value = literal(given, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stack_layers(constructor: cst.Call) -> list[cst.BaseExpression]:
    """The layers of ``Sequential(a, b)``, ``Sequential([a, b])`` and
    ``Sequential(OrderedDict([("a", a), ("b", b)]))``, in order (empty when not literal)."""
    layers: list[cst.BaseExpression] = [a.value for a in constructor.args if not a.keyword]
    if any(a.star for a in constructor.args):
        return []
    if len(layers) == 1 and isinstance(layers[0], (cst.List, cst.Tuple)):
        layers = [e.value for e in layers[0].elements]
    if len(layers) == 1 and isinstance(layers[0], cst.Call):
        inner = layers[0]
        if (dotted(inner.func) or "").endswith("OrderedDict"):
            pairs = positional(inner, 0)
            if not isinstance(pairs, (cst.List, cst.Tuple)):
                return []
            layers = []
            for element in pairs.elements:
                pair = element.value
                if not isinstance(pair, cst.Tuple) or len(pair.elements) != 2:
                    return []
                layers.append(pair.elements[1].value)
    return layers


class LayerAnalysis:
    """What calling a layer returns, given (when known) what it is applied to."""

    def __init__(self, tensors: TensorAnalysis) -> None:
        self.tensors = tensors
        self.model = tensors.model
        #: Sequentials being expanded: ``self.fc = nn.Sequential(..., self.fc)`` holds itself.
        self._expanding: set[int] = set()
        self._statements: dict[int, int] | None = None

    def output(
        self, constructor: cst.Call, scope: Scope, given: TensorKind = UNKNOWN
    ) -> TensorKind:
        """What calling the object built by ``constructor`` on a ``given`` input returns."""
        model = self.model
        qualified = model.imports.qualify(constructor.func) or ""
        last = qualified.rsplit(".", 1)[-1]
        if not qualified:
            name = dotted(constructor.func)
            info = model.classes.get(name or "")
            if info is not None:
                for method in ("forward", "call"):
                    found = model.method(info, method)
                    if found is not None:
                        return self.tensors.returned(found, None) or UNKNOWN
            return UNKNOWN
        if not is_under(qualified, "torch.nn", "tensorflow.keras.layers", "tensorflow.keras"):
            return UNKNOWN
        if is_under(qualified, "tensorflow.keras"):
            # keras layers are read as the keras structure reads them (one table of
            # activations: strings and callables, ``Softmax``/``Activation`` layers)
            kind, name = layer_kind(model.imports, constructor)
            if kind is LayerKind.ACTIVATED:
                found = activated_output(model.imports, constructor, name)
                if is_activation_layer(model.imports, constructor):
                    return found.with_source(given)
                return found
            if kind is LayerKind.PASS_THROUGH:
                return given
        if last in LINEAR_LAYERS:
            width = width_of(constructor, last)
            return TensorKind(Activation.LOGITS, f"nn.{last}", node=constructor, width=width)
        if last in ACTIVATION_LAYERS:
            producer = _PRODUCERS.get(last, last.lower())
            axis = axis_of(constructor, 0) if "Softmax" in last and last != "Softmax2d" else None
            kind = TensorKind(ACTIVATION_LAYERS[last], producer, axis, node=constructor)
            return kind.with_source(given)
        if last in PASS_THROUGH_LAYERS:
            return given
        if last == "Sequential":
            if id(constructor) in self._expanding:
                return UNKNOWN  # a stack that names itself (the old head wrapped in a new one)
            self._expanding.add(id(constructor))
            try:
                return self.stack(stack_layers(constructor), scope, self._statement(constructor))
            finally:
                self._expanding.discard(id(constructor))
        return UNKNOWN

    def stack(
        self, layers: list[cst.BaseExpression], scope: Scope, before: int | None = None
    ) -> TensorKind:
        """The output of layers applied in order: the last one applied to the rest's output.
        ``before``: the order of the statement building the stack (names are read there)."""
        if not layers:
            return UNKNOWN
        constructor = self.constructor(layers[-1], scope, before)
        if constructor is None:
            return UNKNOWN
        qualified = self.model.imports.qualify(constructor.func) or ""
        last = qualified.rsplit(".", 1)[-1]
        needs_input = (
            last in ACTIVATION_LAYERS or last in PASS_THROUGH_LAYERS or last == ("Activation")
        )
        given = self.stack(layers[:-1], scope, before) if needs_input else UNKNOWN
        return self.output(constructor, scope, given)

    def constructor(
        self, layer: cst.BaseExpression, scope: Scope, before: int | None = None
    ) -> cst.Call | None:
        """The constructor of a layer written inline or held in a name (``self.fc``). In a
        stack built at ``before``, a name is what it held then: ``model =
        keras.Sequential([model])`` wraps the earlier model, not itself."""
        if isinstance(layer, cst.Call):
            return layer
        name = dotted(layer)
        if before is not None and name is not None:
            earlier = [b for b in self.model.lookup(name, scope, before) if b.order < before]
            plain = [b for b in earlier if not b.augmented and not b.from_iteration]
            if not plain or plain[0].value is None or plain[0].unpack_index is not None:
                return None
            value = self.model.value_of(plain[0].value, plain[0].scope or scope)
            return value.call if value is not None else None
        value = self.model.value_of(layer, scope)
        return value.call if value is not None else None

    def _statement(self, call: cst.Call) -> int | None:
        """The order of the statement holding ``call`` (bindings it makes come later)."""
        if self._statements is None:
            self._statements = {id(site.node): site.statement_order for site in self.model.calls}
        return self._statements.get(id(call))
