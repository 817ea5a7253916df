"""Which keras models and layers hold Dropout/BatchNorm (``model.keras_modes``)."""

from __future__ import annotations

import libcst as cst
from model_helpers import build

from trainlint.model import TrainingModel
from trainlint.model.frameworks.keras_held import HeldLayers, passes_training

IMPORTS = """
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers
"""


def held(model: TrainingModel, name: str) -> HeldLayers | None:
    return model.keras_modes.of_callable(cst.Name(name), model.module_scope)


def test_sequential_functional_and_applications() -> None:
    model = build(
        IMPORTS
        + """
seq = keras.Sequential([layers.Dense(4), layers.Dropout(0.1), layers.Dense(1)])
plain = keras.Sequential([layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal()),
                          layers.Dense(1)])
inputs = keras.Input((8,))
functional = keras.Model(inputs, layers.Dense(1)(layers.BatchNormalization()(inputs)))
rnn = keras.Sequential([layers.LSTM(8, dropout=0.2)])
resnet = keras.applications.ResNet50(include_top=False)
vgg = keras.applications.VGG16(include_top=False)
loaded = keras.models.load_model("m.keras")
"""
    )
    assert held(model, "seq").layers == ("Dropout",)
    assert held(model, "plain").known_free
    assert held(model, "functional").layers == ("BatchNormalization",)
    assert held(model, "rnn").has_any
    assert held(model, "resnet").has_any
    assert held(model, "vgg").known_free
    loaded = held(model, "loaded")
    assert not loaded.complete and loaded.external


def test_helpers_and_flags_of_builder_functions() -> None:
    model = build(
        IMPORTS
        + """
def block(x, dropout=False):
    x = layers.Dense(8)(x)
    if dropout:
        x = layers.Dropout(0.5)(x)
    return x

inputs = keras.Input((8,))
quiet = keras.Model(inputs, block(inputs))
noisy = keras.Model(inputs, block(inputs, dropout=True))
unknown = keras.Model(inputs, block(inputs, dropout=rate > 0))
"""
    )
    assert held(model, "quiet").known_free
    assert held(model, "noisy").layers == ("Dropout",)
    assert not held(model, "unknown").complete


def test_subclasses_read_their_attributes_and_constructions() -> None:
    model = build(
        IMPORTS
        + """
class Block(layers.Layer):
    def __init__(self):
        super().__init__()
        self.norm = layers.BatchNormalization()

class Net(keras.Model):
    def __init__(self, head):
        super().__init__()
        self.block = Block()
        self.head = head

    def call(self, x):
        return self.head(self.block(x))

class Branching(keras.Model):
    def call(self, x, training=None):
        if training:
            x = x + tf.random.normal(tf.shape(x))
        return x

class Dense(keras.Model):
    def __init__(self):
        super().__init__()
        self.layers_ = [layers.Dense(4) for _ in range(3)]

net = Net(keras.Sequential([layers.Dropout(0.2)]))
branching = Branching()
dense = Dense()
"""
    )
    assert set(held(model, "net").layers) == {"BatchNormalization", "Dropout"}
    assert held(model, "branching").has_any
    assert held(model, "dense").known_free
    assert held(model, "undefined_name") is None


def test_a_call_passes_the_mode() -> None:
    def call(text: str) -> cst.Call:
        node = cst.parse_expression(text)
        assert isinstance(node, cst.Call)
        return node

    assert passes_training(call("model(x, training=False)"))
    assert passes_training(call("model(x, True)"))
    assert passes_training(call("model(x, **options)"))
    assert not passes_training(call("model(x)"))
    assert not passes_training(call("model(inputs=x)"))


def test_models_passed_to_functions_and_unread_same_file_code() -> None:
    model = build(
        IMPORTS
        + """
def step(net, x):
    return net(x)

def other(net, x):
    return net(x)

step(keras.Sequential([layers.Dense(4), layers.Dropout(0.5)]), 1)
other(keras.Sequential([layers.Dense(4)]), 1)
other(unknown_model, 1)
"""
    )
    functions = model.module_scope.functions
    passed = model.keras_modes.of_callable(cst.Name("net"), functions["step"])
    assert passed is not None and passed.layers == ("Dropout",)
    assert model.keras_modes.of_callable(cst.Name("net"), functions["other"]) is None


def test_unread_same_file_code_holds_nothing_when_the_file_builds_no_mode_layer() -> None:
    model = build(
        IMPORTS
        + """
blocks = [make_block(i) for i in range(3)]
inputs = keras.Input((8,))
net = keras.Model(inputs, blocks[0](inputs))
"""
    )
    found = held(model, "net")
    assert found is not None and found.known_free


SHORTHANDS = (
    IMPORTS
    + """
import functools

BN = tf.keras.layers.BatchNormalization


def make_classifier():
    Conv = functools.partial(tf.keras.layers.Conv2D, padding="same", activation="relu")
    Drop = tf.keras.layers.Dropout
    net = tf.keras.Sequential([Conv(8, 3), BN(), tf.keras.layers.Flatten(), Drop(0.2)])
    return net


classifier = make_classifier()
"""
)


def test_layer_shorthands_of_a_builder_are_read_as_their_classes() -> None:
    found = held(build(SHORTHANDS), "classifier")
    assert found is not None and found.layers == ("BatchNormalization", "Dropout")


def test_a_builders_model_reads_the_same_whoever_asks_first() -> None:
    model = build(SHORTHANDS)
    (sequential,) = [s.node for s in model.calls if s.dotted == "tf.keras.Sequential"]
    model.keras.from_constructor(sequential, model.module_scope)  # asked from the wrong scope
    found = held(model, "classifier")
    assert found is not None and found.layers == ("BatchNormalization", "Dropout")
