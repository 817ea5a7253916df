"""Keras model structure: layers, heads and their activations, compile() arguments."""

from __future__ import annotations

from model_helpers import build, scope

from trainlint.model import Activation, TrainingModel
from trainlint.model.frameworks.keras_compile import LossKind


def heads(model: TrainingModel, name: str, where: str = "<module>") -> list[Activation]:
    at = scope(model, where)
    binding = at.bindings[name][-1]
    found = model.keras.model_of(binding.value, at, binding.order + 1)
    assert found is not None, name
    return [h.kind.activation for h in found.heads]


IMPORTS = """
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers
"""


def test_sequential_list_and_add_calls() -> None:
    model = build(
        IMPORTS
        + """
a = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(1, activation="sigmoid")])
b = tf.keras.models.Sequential()
b.add(layers.Dense(8))
b.add(layers.Dense(3))
b.add(layers.Dropout(0.5))
c = keras.Sequential([layers.Dense(3), layers.Activation(tf.nn.softmax)])
d = keras.Sequential([layers.Dense(3, activation=tf.keras.activations.softmax)])
e = keras.Sequential([layers.Dense(3, activation="tanh")])
"""
    )
    assert heads(model, "a") == [Activation.PROBABILITIES]
    assert heads(model, "b") == [Activation.LOGITS]
    assert heads(model, "c") == [Activation.PROBABILITIES]
    assert heads(model, "d") == [Activation.PROBABILITIES]
    assert heads(model, "e") == [Activation.BOUNDED]


def test_linear_activation_layer_is_the_identity() -> None:
    model = build(
        IMPORTS
        + """
inputs = keras.Input(shape=(4,))
probs = layers.Activation("softmax")(layers.Dense(3)(inputs))
cast = keras.Model(inputs, layers.Activation("linear", dtype="float32")(probs))
seq = keras.Sequential([layers.Dense(1, activation="sigmoid"), layers.Activation("linear")])
plain = keras.Sequential([layers.Dense(3), layers.Activation(keras.activations.linear)])
"""
    )
    # ``Activation("linear")`` casts or renames: it keeps what its input holds
    assert heads(model, "cast") == [Activation.PROBABILITIES]
    assert heads(model, "seq") == [Activation.PROBABILITIES]
    assert heads(model, "plain") == [Activation.LOGITS]


def test_add_calls_only_while_the_binding_is_current() -> None:
    model = build(
        IMPORTS
        + """
m = keras.Sequential()
m.add(layers.Dense(1, activation="sigmoid"))
first = m
m = keras.Sequential()
m.add(layers.Dense(1))
"""
    )
    assert heads(model, "first") == [Activation.PROBABILITIES]
    assert heads(model, "m") == [Activation.LOGITS]


def test_standalone_keras_and_functional_outputs() -> None:
    model = build(
        """
import keras
from keras import layers
inputs = keras.Input((4,))
x = layers.Dense(8, activation="relu")(inputs)
y = layers.Dropout(0.2)(x)
head = layers.Dense(2, name="cls")
single = keras.Model(inputs, head(y))
p = layers.Dense(1, activation="sigmoid", name="p")(x)
both = keras.Model(inputs=inputs, outputs=[p, head(x)])
"""
    )
    assert heads(model, "single") == [Activation.LOGITS]
    assert heads(model, "both") == [Activation.PROBABILITIES, Activation.LOGITS]
    at = model.module_scope
    both = model.keras.model_of(at.bindings["both"][0].value, at)
    assert [h.name for h in both.heads] == ["p", "cls"]


def test_pretrained_base_and_training_layers() -> None:
    model = build(
        IMPORTS
        + """
base = keras.applications.MobileNetV2(include_top=False, weights="imagenet")
inputs = keras.Input((160, 160, 3))
x = base(inputs, training=False)
x = layers.GlobalAveragePooling2D()(x)
x = layers.BatchNormalization()(x)
outputs = layers.Dense(1)(x)
model = keras.Model(inputs, outputs)
classifier = keras.applications.ResNet50()
"""
    )
    at = model.module_scope
    found = model.keras.model_of(at.bindings["model"][0].value, at)
    assert found.style == "functional"
    assert [model.text_of(b) for b in found.bases][0].startswith("keras.applications")
    assert [model.text_of(c) for c in found.training_layers(model)] == [
        "layers.BatchNormalization()"
    ]
    assert heads(model, "model") == [Activation.LOGITS]
    assert heads(model, "classifier") == [Activation.PROBABILITIES]
    assert heads(model, "base") == [Activation.UNKNOWN]


def test_subclassed_model_reads_call() -> None:
    model = build(
        IMPORTS
        + """
class Net(keras.Model):
    def __init__(self):
        super().__init__()
        self.drop = layers.Dropout(0.1)
        self.out = layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.drop(x, training=training))


class Opaque(keras.Model):
    def call(self, x):
        return postprocess(x)


net = Net()
opaque = Opaque()
"""
    )
    assert heads(model, "net") == [Activation.LOGITS]
    assert heads(model, "opaque") == [Activation.UNKNOWN]
    at = model.module_scope
    net = model.keras.model_of(at.bindings["net"][0].value, at)
    assert [model.text_of(c) for c in net.training_layers(model)] == ["layers.Dropout(0.1)"]


def test_builder_function_and_loaded_model() -> None:
    model = build(
        IMPORTS
        + """
def make():
    m = keras.Sequential()
    m.add(layers.Dense(1))
    return m

built = make()
loaded = keras.models.load_model("m.keras")
"""
    )
    assert heads(model, "built") == [Activation.LOGITS]
    at = model.module_scope
    assert model.keras.model_of(at.bindings["loaded"][0].value, at).heads == ()


def test_compile_losses_and_metrics() -> None:
    model = build(
        IMPORTS
        + """
m = keras.Sequential([layers.Dense(1)])
fn = tf.losses.SparseCategoricalCrossentropy(True)
m.compile("adam", "bce", ["accuracy"])
m.compile(loss=fn, metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
b = keras.losses.CategoricalCrossentropy(from_logits=flag)
m.compile(loss={"a": keras.losses.binary_crossentropy, "b": b})
m.compile(loss=my_loss)
"""
    )
    first, second, third, fourth = model.keras.compiles
    assert [(s.kind, s.from_logits) for s in first.losses] == [(LossKind.BINARY, False)]
    assert [m.binary_threshold_default for m in first.metrics] == [True]
    assert [(s.kind, s.from_logits) for s in second.losses] == [(LossKind.SPARSE, True)]
    assert [m.binary_threshold_default for m in second.metrics] == [False]
    assert [(s.key, s.kind, s.from_logits) for s in third.losses] == [
        ("a", LossKind.BINARY, False),
        ("b", LossKind.CATEGORICAL, None),
    ]
    assert fourth.losses == () and fourth.model is not None
