"""What a tensor holds: logits, probabilities, log-probabilities, or unknown.

A small lattice evaluated on demand over expressions, through assignments (the latest binding
before the use), same-file functions' returns, ``forward``/``call`` methods of same-file models,
``nn.Sequential`` / keras ``Sequential`` stacks (their last layer and its activation) and layer
objects bound to ``self`` attributes. Rules about activations and losses (BCE on logits,
softmax into cross-entropy, sigmoid into BCE-with-logits, ReLU on logits, keras ``from_logits``)
read it. When a producer cannot be resolved the answer is ``UNKNOWN``: rules never guess.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import argument, dotted, keyword, literal, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope


class Activation(enum.Enum):
    LOGITS = "logits"  # a linear map's output: any real number
    PROBABILITIES = "probabilities"  # after sigmoid/softmax: in [0, 1]
    LOG_PROBABILITIES = "log-probabilities"  # after log_softmax/logsigmoid
    UNBOUNDED = "unbounded"  # e.g. torch.randn: any real number, not from a layer
    BOUNDED = "bounded"  # clamped, or drawn from [0, 1): not logits, maybe not probabilities
    NON_NEGATIVE = "non-negative"  # after ReLU and friends
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TensorKind:
    activation: Activation
    #: What produced it, for messages: "nn.Linear", "sigmoid", "softmax", "torch.randn", ...
    producer: str = ""
    #: softmax/log_softmax axis when known (``dim=``/``axis=``), else None.
    axis: object = None
    node: cst.CSTNode | None = None

    @property
    def is_real_valued(self) -> bool:
        """Values that are not probabilities: logits or an unbounded factory."""
        return self.activation in (Activation.LOGITS, Activation.UNBOUNDED)


UNKNOWN = TensorKind(Activation.UNKNOWN)

_SIGMOID = {
    "torch.sigmoid",
    "torch.nn.functional.sigmoid",
    "torch.special.expit",
    "tensorflow.sigmoid",
    "tensorflow.math.sigmoid",
    "tensorflow.nn.sigmoid",
    "tensorflow.keras.activations.sigmoid",
    "tensorflow.keras.backend.sigmoid",
    "scipy.special.expit",
}
_SOFTMAX = {
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.special.softmax",
    "tensorflow.nn.softmax",
    "tensorflow.math.softmax",
    "tensorflow.keras.activations.softmax",
    "tensorflow.keras.backend.softmax",
    "scipy.special.softmax",
}
_LOG_SOFTMAX = {
    "torch.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.special.log_softmax",
    "torch.nn.functional.logsigmoid",
    "tensorflow.nn.log_softmax",
    "tensorflow.math.log_softmax",
    "tensorflow.math.log_sigmoid",
}
_NON_NEGATIVE = {
    "torch.relu",
    "torch.nn.functional.relu",
    "torch.nn.functional.relu6",
    "torch.nn.functional.softplus",
    "torch.abs",
    "tensorflow.nn.relu",
    "tensorflow.keras.activations.relu",
}
_UNBOUNDED_FACTORIES = {
    "torch.randn",
    "torch.randn_like",
    "torch.normal",
    "tensorflow.random.normal",
    "tensorflow.random.truncated_normal",
    "numpy.random.randn",
    "numpy.random.normal",
}
_BOUNDED = {
    "torch.clamp",
    "torch.clip",
    "torch.rand",
    "torch.rand_like",
    "tensorflow.clip_by_value",
    "tensorflow.random.uniform",
    "numpy.clip",
    "numpy.random.rand",
    "numpy.random.uniform",
    "tensorflow.keras.backend.clip",
}
_LINEAR_LAYERS = {"Linear", "Bilinear", "LazyLinear", "Dense", "Conv1d", "Conv2d", "Conv3d"}
_ACTIVATION_LAYERS = {
    "Sigmoid": Activation.PROBABILITIES,
    "Softmax": Activation.PROBABILITIES,
    "Softmax2d": Activation.PROBABILITIES,
    "LogSoftmax": Activation.LOG_PROBABILITIES,
    "LogSigmoid": Activation.LOG_PROBABILITIES,
    "ReLU": Activation.NON_NEGATIVE,
    "ReLU6": Activation.NON_NEGATIVE,
    "Softplus": Activation.NON_NEGATIVE,
}
_KERAS_ACTIVATIONS = {
    "sigmoid": (Activation.PROBABILITIES, "sigmoid"),
    "softmax": (Activation.PROBABILITIES, "softmax"),
    "relu": (Activation.NON_NEGATIVE, "relu"),
    "linear": (Activation.LOGITS, "Dense"),
    None: (Activation.LOGITS, "Dense"),
}
#: Methods that keep what a tensor holds (shape, dtype and device changes).
_SHAPE_METHODS = {
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "flatten",
    "float",
    "double",
    "half",
    "to",
    "cuda",
    "cpu",
    "contiguous",
    "permute",
    "transpose",
    "view_as",
    "reshape_as",
}
_SHAPE_FUNCTIONS = {"torch.squeeze", "torch.flatten", "torch.reshape", "tensorflow.squeeze"}


def _axis(call: cst.Call, position: int) -> object:
    for name in ("dim", "axis"):
        found = keyword(call, name)
        if found is not None:
            return literal(found, "?")
    found = positional(call, position)
    return literal(found, "?") if found is not None else None


class TensorAnalysis:
    """Evaluates :class:`TensorKind` for expressions of one file (memoized)."""

    max_depth = 12

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._memo: dict[tuple[int, int, int | None], TensorKind] = {}
        self._active: set[tuple[int, int, int | None]] = set()

    def kind_of(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> TensorKind:
        if expr is None:
            return UNKNOWN
        key = (id(expr), id(scope), before)
        if key in self._memo:
            return self._memo[key]
        if key in self._active or len(self._active) > self.max_depth:
            return UNKNOWN
        self._active.add(key)
        try:
            found = self._evaluate(expr, scope, before)
        finally:
            self._active.discard(key)
        self._memo[key] = found
        return found

    # ------------------------------------------------------------------ dispatch
    def _evaluate(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> TensorKind:
        if isinstance(expr, cst.Call):
            return self._call(expr, scope, before)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            return self._name(expr, scope, before)
        if isinstance(expr, cst.Subscript):
            return self.kind_of(expr.value, scope, before)  # indexing keeps the values
        if isinstance(expr, cst.BinaryOperation):
            return self._binary(expr, scope, before)
        return UNKNOWN

    def _binary(self, expr: cst.BinaryOperation, scope: Scope, before: int | None) -> TensorKind:
        if isinstance(expr.operator, cst.MatrixMultiply):
            return TensorKind(Activation.LOGITS, "a matrix product", node=expr)
        if not isinstance(expr.operator, (cst.Add, cst.Subtract, cst.Divide, cst.Multiply)):
            return UNKNOWN
        left = self.kind_of(expr.left, scope, before)
        right = self.kind_of(expr.right, scope, before)
        for this, other in ((left, right), (right, left)):
            # logits shifted or scaled by a bias/temperature are still logits
            if this.activation is Activation.LOGITS and other.activation is Activation.UNKNOWN:
                return this
        return UNKNOWN

    def _name(self, expr: cst.BaseExpression, scope: Scope, before: int | None) -> TensorKind:
        name = dotted(expr)
        if name is None:
            return UNKNOWN
        for binding in self.model.lookup(name, scope, before):
            if binding.augmented or binding.from_iteration or binding.value is None:
                return UNKNOWN
            return self._binding(binding, binding.scope or scope)
        return UNKNOWN

    def _binding(self, binding: Binding, scope: Scope) -> TensorKind:
        value = binding.value
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index < len(elements):
                    return self.kind_of(elements[binding.unpack_index].value, scope, binding.order)
                return UNKNOWN
            if isinstance(value, cst.Call):
                return self._call(value, scope, binding.order, binding.unpack_index)
            return UNKNOWN
        return self.kind_of(value, scope, binding.order)

    # ------------------------------------------------------------------ calls
    def _call(
        self, call: cst.Call, scope: Scope, before: int | None, index: int | None = None
    ) -> TensorKind:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        if index is None:
            found = self._library_call(call, qualified, scope, before)
            if found is not None:
                return found
        if isinstance(call.func, cst.Call):
            # ``layers.Dense(1)(x)`` / ``nn.Linear(4, 1)(x)``: the layer built inline
            return self._applied(call.func, call, scope, before) if index is None else UNKNOWN
        callee = model.callee(call, scope)
        if callee is not None and not (callee.short_name == "forward" and callee.cls):
            return self._returned(callee, index)
        value = model.value_of(call.func, scope)
        if value is not None and value.call is not None and index is None:
            layer = self._applied(value.call, call, scope, before)
            if layer.activation is not Activation.UNKNOWN:
                return layer
        if value is not None and value.kind in model.classes:
            info = model.classes[value.kind]
            for method in ("forward", "call", "__call__"):
                found = info.methods.get(method) or model.method(info, method)
                if found is not None:
                    return self._returned(found, index)
        return UNKNOWN

    def _library_call(
        self, call: cst.Call, qualified: str, scope: Scope, before: int | None
    ) -> TensorKind | None:
        method = method_call(call)
        name = method[1] if method is not None else ""
        if qualified in _SIGMOID or (method and name == "sigmoid" and not qualified):
            return TensorKind(Activation.PROBABILITIES, "sigmoid", node=call)
        if qualified in _SOFTMAX or (method and name == "softmax" and not qualified):
            axis = _axis(call, 1 if qualified else 0)
            return TensorKind(Activation.PROBABILITIES, "softmax", axis, node=call)
        if qualified in _LOG_SOFTMAX or (method and name in ("log_softmax",) and not qualified):
            return TensorKind(Activation.LOG_PROBABILITIES, "log_softmax", node=call)
        if qualified in _NON_NEGATIVE or (method and name in ("relu", "abs") and not qualified):
            return TensorKind(Activation.NON_NEGATIVE, name or qualified, node=call)
        if qualified in _UNBOUNDED_FACTORIES:
            return TensorKind(Activation.UNBOUNDED, qualified, node=call)
        if qualified in _BOUNDED or (
            method and name in ("clamp", "clip", "clamp_") and not qualified
        ):
            return TensorKind(Activation.BOUNDED, qualified or name, node=call)
        if qualified == "torch.nn.functional.linear":
            return TensorKind(Activation.LOGITS, "F.linear", node=call)
        if qualified in (
            "tensorflow.matmul",
            "tensorflow.linalg.matmul",
            "torch.matmul",
            "torch.mm",
        ):
            return TensorKind(Activation.LOGITS, "a matrix product", node=call)
        if qualified in _SHAPE_FUNCTIONS:
            return self.kind_of(positional(call, 0), scope, before)
        if method is not None and name in _SHAPE_METHODS and not qualified:
            return self.kind_of(method[0], scope, before)
        if qualified:
            return UNKNOWN if not qualified.endswith(("Sequential",)) else None
        return None

    def _returned(self, function: Scope, index: int | None) -> TensorKind:
        """What a same-file function returns: its returns must all agree."""
        kinds = set()
        for returned, order in zip(function.returns, function.return_orders, strict=False):
            if index is not None:
                if not isinstance(returned, cst.Tuple) or index >= len(returned.elements):
                    return UNKNOWN
                returned = returned.elements[index].value
            elif isinstance(returned, cst.Tuple):
                return UNKNOWN
            kinds.add(self.kind_of(returned, function, order))
        if len({k.activation for k in kinds}) != 1:
            return UNKNOWN
        return next(iter(kinds))

    # ------------------------------------------------------------------ layers and models
    def _applied(
        self, constructor: cst.Call, call: cst.Call, scope: Scope, before: int | None
    ) -> TensorKind:
        """What ``call`` -- the object built by ``constructor`` applied to an input -- returns.

        Keras layers and models are read by the keras structure (:mod:`..frameworks`); a
        pass-through layer (``Dropout``, ``Flatten``) returns what its input holds."""
        if is_under(self.model.imports.qualify(constructor.func), "tensorflow.keras", "keras"):
            found = self.model.keras.output_kind(constructor, scope)
            if found is None:
                return self.kind_of(argument(call, 0, "inputs"), scope, before)
            return found
        return self._layer_output(constructor, scope)

    def _layer_output(self, constructor: cst.Call, scope: Scope) -> TensorKind:
        """What calling the object built by ``constructor`` returns."""
        model = self.model
        qualified = model.imports.qualify(constructor.func) or ""
        last = qualified.rsplit(".", 1)[-1]
        if is_under(qualified, "tensorflow.keras", "keras"):
            return model.keras.output_kind(constructor, scope) or UNKNOWN
        if not qualified:
            name = dotted(constructor.func)
            info = model.classes.get(name or "")
            if info is not None:
                for method in ("forward", "call"):
                    found = model.method(info, method)
                    if found is not None:
                        return self._returned(found, None)
            return UNKNOWN
        if is_under(qualified, "torch.nn", "tensorflow.keras.layers", "tensorflow.keras"):
            if last == "Dense":
                given = argument(constructor, 1, "activation")
                activation = None if given is None else literal(given, "?")
                if activation in _KERAS_ACTIVATIONS:
                    kind, producer = _KERAS_ACTIVATIONS[activation]  # type: ignore[index]
                    return TensorKind(kind, producer, node=constructor)
                return UNKNOWN
            if last in _LINEAR_LAYERS:
                return TensorKind(Activation.LOGITS, f"nn.{last}", node=constructor)
            if last in _ACTIVATION_LAYERS:
                producer = last.lower()
                axis = _axis(constructor, 0) if "Softmax" in last else None
                return TensorKind(_ACTIVATION_LAYERS[last], producer, axis, node=constructor)
            if last == "Activation":
                activation = literal(positional(constructor, 0), "?")
                if activation in ("sigmoid", "softmax", "relu", "linear"):
                    kind, producer = _KERAS_ACTIVATIONS[activation]  # type: ignore[index]
                    return TensorKind(kind, producer, node=constructor)
                return UNKNOWN
            if last == "Sequential":
                return self._sequential(constructor, scope)
        return UNKNOWN

    def _sequential(self, constructor: cst.Call, scope: Scope) -> TensorKind:
        layers: list[cst.BaseExpression] = [a.value for a in constructor.args if not a.keyword]
        if len(layers) == 1 and isinstance(layers[0], (cst.List, cst.Tuple)):
            layers = [e.value for e in layers[0].elements]
        if not layers:
            return UNKNOWN
        last = layers[-1]
        if isinstance(last, cst.Call):
            return self._layer_output(last, scope)
        return UNKNOWN


def log_argument(model: TrainingModel, call: cst.Call) -> cst.BaseExpression | None:
    """``p`` for ``torch.log(p)``, ``np.log(p)``, ``K.log(p)``, ``tf.math.log(p)``, ``p.log()``."""
    qualified = model.imports.qualify(call.func) or ""
    if qualified in _LOGS:
        return positional(call, 0)
    method = method_call(call)
    if method is not None and method[1] == "log" and not qualified and not call.args:
        return method[0]
    return None


_LOGS = {
    "torch.log",
    "numpy.log",
    "math.log",
    "tensorflow.math.log",
    "tensorflow.log",
    "tensorflow.keras.backend.log",
    "jax.numpy.log",
}
