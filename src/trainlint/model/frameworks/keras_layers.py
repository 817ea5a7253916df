"""What one keras layer does to the values flowing through it.

Read from the layer's constructor (qualified through the file's imports, so ``tf.keras``,
standalone ``keras`` and ``from tensorflow.keras import layers`` agree): the activation it
ends in (``activation=`` as a string or a callable, ``Activation``/``Softmax`` layers), whether
it passes its input through unchanged for the question "logits or probabilities"
(``Dropout``, ``Flatten``, ``Reshape``), whether it behaves differently under ``training``
(Dropout, BatchNormalization, random augmentation), and whether it is a pretrained base
(``keras.applications.*`` with ``include_top=False``, a hub layer).
"""

from __future__ import annotations

import enum
from dataclasses import replace

import libcst as cst

from trainlint.model.syntax.names import ImportTable, is_under
from trainlint.model.syntax.nodes import argument, keyword, literal, positional
from trainlint.model.values.kinds import Activation, TensorKind

#: Spellings of the keras API that stand for ``tensorflow.keras`` (``tf.losses`` is an alias
#: of ``tf.keras.losses`` in TF 2; ``keras.src`` is keras 3's implementation package).
_ALIASES = (
    ("tensorflow.keras.src.", "tensorflow.keras."),
    ("tensorflow.losses.", "tensorflow.keras.losses."),
    ("tensorflow.metrics.", "tensorflow.keras.metrics."),
    ("tensorflow.optimizers.", "tensorflow.keras.optimizers."),
    ("tensorflow.keras.layers.core.", "tensorflow.keras.layers."),
    ("tensorflow.keras.layers.experimental.preprocessing.", "tensorflow.keras.layers."),
    ("tensorflow.keras.layers.experimental.", "tensorflow.keras.layers."),
)


def canonical_keras(qualified: str) -> str:
    for prefix, replacement in _ALIASES:
        if qualified.startswith(prefix):
            return replacement + qualified[len(prefix) :]
    return qualified


def keras_name(imports: ImportTable, node: cst.CSTNode | None) -> str:
    """The qualified keras name of ``node`` (``tensorflow.keras.layers.Dense``), else ``""``."""
    qualified = canonical_keras(imports.qualify(node) or "")
    return qualified if is_under(qualified, "tensorflow.keras") else ""


class LayerKind(enum.Enum):
    ACTIVATED = "activated"  # ends in a known activation (or none: logits)
    PASS_THROUGH = "pass-through"  # keeps what its input holds
    MODEL = "model"  # Sequential / Model / an application: read its structure
    OTHER = "other"  # some other keras layer: what it outputs is not known


#: Layers that do not change whether values are logits or probabilities.
_PASS_THROUGH = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "Flatten",
    "Reshape",
    "Permute",
    "ActivityRegularization",
    "Identity",
}
#: Layers whose output depends on ``training`` (``model(x)`` outside ``fit`` runs them in
#: inference mode).
_TRAINING_LAYERS = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "AlphaDropout",
    "GaussianDropout",
    "GaussianNoise",
    "BatchNormalization",
    "SyncBatchNormalization",
}
#: Layers with an ``activation`` argument, and its position when given positionally.
_ACTIVATION_POSITION = {"Dense": 1, "EinsumDense": None}
_CONV_PREFIXES = ("Conv", "SeparableConv", "DepthwiseConv")
_STRING_ACTIVATIONS = {
    None: (Activation.LOGITS, "no activation"),
    "linear": (Activation.LOGITS, "no activation"),
    "sigmoid": (Activation.PROBABILITIES, "sigmoid"),
    "hard_sigmoid": (Activation.PROBABILITIES, "hard_sigmoid"),
    "softmax": (Activation.PROBABILITIES, "softmax"),
    "log_softmax": (Activation.LOG_PROBABILITIES, "log_softmax"),
    "relu": (Activation.NON_NEGATIVE, "relu"),
    "relu6": (Activation.NON_NEGATIVE, "relu6"),
    "softplus": (Activation.NON_NEGATIVE, "softplus"),
    "exponential": (Activation.NON_NEGATIVE, "exponential"),
    "tanh": (Activation.BOUNDED, "tanh"),
}
#: ``activation=tf.nn.softmax`` and friends: the last component of the qualified callable.
_CALLABLE_ACTIVATIONS = {
    name: _STRING_ACTIVATIONS[name]
    for name in ("softmax", "sigmoid", "log_softmax", "relu", "tanh", "linear")
}
_ACTIVATION_LAYERS = {
    "Softmax": (Activation.PROBABILITIES, "softmax"),
    "ReLU": (Activation.NON_NEGATIVE, "relu"),
}


def activation_kind(
    imports: ImportTable, given: cst.BaseExpression | None, node: cst.CSTNode
) -> TensorKind:
    """What an ``activation=`` argument makes of a layer's output (absent: logits)."""
    if given is None:
        kind, producer = _STRING_ACTIVATIONS[None]
        return TensorKind(kind, producer, node=node)
    value = literal(given, "?")
    if value in _STRING_ACTIVATIONS:
        kind, producer = _STRING_ACTIVATIONS[value]  # type: ignore[index]
        return TensorKind(kind, producer, -1 if producer == "softmax" else None, node=node)
    qualified = imports.qualify(given) or ""
    if is_under(qualified, "tensorflow", "keras"):
        last = qualified.rsplit(".", 1)[-1]
        if last in _CALLABLE_ACTIVATIONS:
            kind, producer = _CALLABLE_ACTIVATIONS[last]
            return TensorKind(kind, producer, -1 if producer == "softmax" else None, node=node)
    return TensorKind(Activation.UNKNOWN, node=node)


def layer_kind(imports: ImportTable, constructor: cst.Call) -> tuple[LayerKind, str]:
    """How a keras layer built by ``constructor`` treats its input, and its class name."""
    qualified = keras_name(imports, constructor.func)
    if not qualified:
        return LayerKind.OTHER, ""
    last = qualified.rsplit(".", 1)[-1]
    if last in ("Sequential", "Model") or is_application(qualified):
        return LayerKind.MODEL, last
    if last in _PASS_THROUGH or (last == "Activation" and _identity(imports, constructor)):
        return LayerKind.PASS_THROUGH, last
    if (
        last in _ACTIVATION_POSITION
        or last.startswith(_CONV_PREFIXES)
        or last in ("Activation", *_ACTIVATION_LAYERS)
    ):
        return LayerKind.ACTIVATED, last
    return LayerKind.OTHER, last


def _identity(imports: ImportTable, constructor: cst.Call) -> bool:
    """``Activation("linear")`` / ``Activation(keras.activations.linear)``: the identity, used
    to cast a mixed-precision model's output to float32; its output holds what its input
    holds (probabilities after a softmax), not logits."""
    given = argument(constructor, 0, "activation")
    if given is None:
        return False
    if literal(given, "?") == "linear":
        return True
    qualified = imports.qualify(given) or ""
    return is_under(qualified, "tensorflow", "keras") and qualified.endswith(".linear")


def activated_output(imports: ImportTable, constructor: cst.Call, last: str) -> TensorKind:
    """What an ``ACTIVATED`` layer outputs: its activation applied to a linear map."""
    if last in _ACTIVATION_LAYERS:
        kind, producer = _ACTIVATION_LAYERS[last]
        given = argument(constructor, 0, "axis") if last == "Softmax" else None
        axis = -1 if given is None else literal(given, "?")
        return TensorKind(kind, producer, axis, node=constructor)
    if last == "Activation":
        given = argument(constructor, 0, "activation")
        if given is None:
            return TensorKind(Activation.UNKNOWN, node=constructor)
        return activation_kind(imports, given, constructor)
    position = _ACTIVATION_POSITION.get(last)
    given = (
        argument(constructor, position, "activation")
        if position is not None
        else keyword(constructor, "activation")
    )
    found = activation_kind(imports, given, constructor)
    return _with_units(found, units_of(constructor) if last == "Dense" else None, constructor)


def _with_units(
    kind: TensorKind, units: object, node: cst.CSTNode, producer: str = "Dense"
) -> TensorKind:
    """A dense layer's output with its literal width: on the logits, or on the linear map an
    activation was applied to (so "a softmax over one unit" can be told)."""
    if not isinstance(units, int) or isinstance(units, bool):
        units = None
    if kind.activation is Activation.LOGITS:
        return replace(kind, width=units, producer=kind.producer if units is None else producer)
    if kind.activation is Activation.UNKNOWN or units is None:
        return kind
    return replace(kind, source=TensorKind(Activation.LOGITS, producer, node=node, width=units))


#: TF 1's functional dense layers: ``tf.layers.dense(inputs, units, activation=None)`` (no
#: activation by default) and contrib's ``fully_connected(inputs, num_outputs,
#: activation_fn=tf.nn.relu)`` (ReLU by default): units and activation by keyword and position.
_FUNCTIONAL_DENSE = {
    "tensorflow.layers.dense": ("units", "activation", False),
    "tensorflow.contrib.layers.fully_connected": ("num_outputs", "activation_fn", True),
    "tensorflow.contrib.slim.fully_connected": ("num_outputs", "activation_fn", True),
}


def functional_dense_output(imports: ImportTable, call: cst.Call) -> TensorKind | None:
    """What ``tf.layers.dense(x, k, activation=...)`` returns; None for other calls."""
    entry = _FUNCTIONAL_DENSE.get(imports.qualify(call.func) or "")
    if entry is None:
        return None
    units_keyword, activation_keyword, relu_default = entry
    given = argument(call, 2, activation_keyword)
    if given is None and relu_default:
        found = TensorKind(Activation.NON_NEGATIVE, "relu", node=call)
    else:
        found = activation_kind(imports, given, call)
    producer = (imports.qualify(call.func) or "").replace("tensorflow.", "tf.", 1)
    units = literal(argument(call, 1, units_keyword), "?")
    if found.activation is Activation.LOGITS:
        found = replace(found, producer=producer)
    return _with_units(found, units, call, producer)


def dense_output(imports: ImportTable, call: cst.Call) -> TensorKind | None:
    """What a keras ``Dense`` built by ``call`` outputs, or TF 1's ``tf.layers.dense`` call
    returns; None for any other call."""
    if keras_name(imports, call.func).rsplit(".", 1)[-1] == "Dense":
        return activated_output(imports, call, "Dense")
    return functional_dense_output(imports, call)


def is_activation_layer(imports: ImportTable, constructor: cst.Call) -> bool:
    """A layer that only applies an activation (``Softmax()``, ``Activation("sigmoid")``)."""
    last = keras_name(imports, constructor.func).rsplit(".", 1)[-1]
    return last in ("Activation", *_ACTIVATION_LAYERS)


def units_of(constructor: cst.Call) -> object:
    """The literal number of units of a ``Dense`` layer (``"?"`` when not a literal)."""
    return literal(argument(constructor, 0, "units"), "?")


def is_training_dependent(imports: ImportTable, constructor: cst.Call) -> bool:
    qualified = keras_name(imports, constructor.func)
    if not is_under(qualified, "tensorflow.keras.layers"):
        return False  # ``keras.initializers.RandomNormal`` is no layer
    last = qualified.rsplit(".", 1)[-1]
    # random augmentation layers (RandomFlip, RandomRotation...) only act when training
    return last in _TRAINING_LAYERS or last.startswith("Random")


def is_application(qualified: str) -> bool:
    """``tensorflow.keras.applications.MobileNetV2`` (also ``applications.resnet50.ResNet50``)."""
    last = qualified.rsplit(".", 1)[-1]
    return is_under(qualified, "tensorflow.keras.applications") and last[:1].isupper()


def application_output(constructor: cst.Call) -> TensorKind:
    """An application's classifier ends in ``classifier_activation`` (softmax) unless
    ``include_top=False`` (then it outputs features, not a head)."""
    include_top = literal(keyword(constructor, "include_top"), "?")
    if keyword(constructor, "include_top") is None:
        include_top = True
    if include_top is not True:
        return TensorKind(Activation.UNKNOWN, node=constructor)
    given = keyword(constructor, "classifier_activation")
    if given is None:
        return TensorKind(Activation.PROBABILITIES, "softmax", -1, node=constructor)
    value = literal(given, "?")
    if value is None:
        return TensorKind(Activation.LOGITS, "no activation", node=constructor)
    if value in _STRING_ACTIVATIONS:
        kind, producer = _STRING_ACTIVATIONS[value]  # type: ignore[index]
        return TensorKind(kind, producer, node=constructor)
    return TensorKind(Activation.UNKNOWN, node=constructor)


def is_pretrained_base(imports: ImportTable, constructor: cst.Call) -> bool:
    """A feature extractor with pretrained weights: an application without its top, or a
    TF-Hub ``KerasLayer``."""
    qualified = keras_name(imports, constructor.func)
    if is_application(qualified):
        return literal(keyword(constructor, "include_top"), "?") is False
    return (imports.qualify(constructor.func) or "") == "tensorflow_hub.KerasLayer"


def layer_name(constructor: cst.Call) -> str | None:
    """The ``name=`` a layer is given (how ``compile(loss={...})`` refers to an output)."""
    value = literal(keyword(constructor, "name"), None)
    return value if isinstance(value, str) else None


def first_input(call: cst.Call) -> cst.BaseExpression | None:
    """The tensor a layer call ``layer(x)`` is applied to."""
    return argument(call, 0, "inputs") or positional(call, 0)
