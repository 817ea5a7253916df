"""Keras ``call()`` methods and training guards around the calls in them."""

from __future__ import annotations

from model_helpers import build

from trainlint.model.frameworks.keras_calls import (
    keras_call_method,
    mentions_training_flag,
    training_guarded,
)
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import CallSite

SOURCE = """
import tensorflow as tf
from tensorflow.keras import backend as K


class Plain(tf.keras.layers.Layer):
    def call(self, x, training=None):
        x = self.bn(x, training=training)
        return tf.nn.dropout(x, 0.1)


class Early(tf.keras.layers.Layer):
    def call(self, x, training=None):
        if not training:
            return x
        return tf.nn.dropout(x, 0.1)


class LateIf(tf.keras.layers.Layer):
    def call(self, x, training=None):
        y = tf.nn.dropout(x, 0.1)
        if training:
            y = y * 2
        return y


class Rate(tf.keras.Model):
    def call(self, x, training=False):
        rate = self.rate if training else 0.0
        return tf.nn.dropout(x, rate)


class Wrapped(tf.keras.layers.Layer):
    def call(self, x, training=None):
        return K.in_train_phase(lambda: tf.nn.dropout(x, 0.2), x, training=training)


class Inline(tf.keras.layers.Layer):
    def call(self, x, training=None):
        return tf.nn.dropout(x, 0.2) if training else x


class NotKeras:
    def call(self, x):
        return tf.nn.dropout(x, 0.2)


def free(x):
    return tf.nn.dropout(x, 0.2)
"""


def _dropouts(model) -> list[CallSite]:  # noqa: ANN001
    return [s for s in model.calls if dotted(s.node.func) == "tf.nn.dropout"]


def test_call_methods_of_keras_classes_only() -> None:
    model = build(SOURCE)
    owners = {}
    for site in _dropouts(model):
        method = keras_call_method(model, site.scope)
        owners[site.scope.name] = method.cls.name if method and method.cls else None
    assert owners == {
        "Plain.call": "Plain",
        "Early.call": "Early",
        "LateIf.call": "LateIf",
        "Rate.call": "Rate",
        "Wrapped.call": "Wrapped",
        "Inline.call": "Inline",
        "NotKeras.call": None,
        "free": None,
    }


def test_training_guards() -> None:
    model = build(SOURCE)
    guarded = {}
    for site in _dropouts(model):
        method = keras_call_method(model, site.scope)
        if method is not None:
            guarded[method.cls.name] = training_guarded(model, site, method)  # type: ignore[union-attr]
    assert guarded == {
        "Plain": False,  # the input was made under the flag, the dropout is not
        "Early": True,
        "LateIf": False,  # an ``if`` after the dropout does not guard it
        "Rate": True,
        "Wrapped": True,
        "Inline": True,
    }


def test_training_flag_words() -> None:
    import libcst as cst

    def says(text: str) -> bool:
        return mentions_training_flag(cst.parse_expression(text))

    assert says("training") and says("not self.is_training") and says("K.learning_phase()")
    assert says("mode == ModeKeys.TRAIN") and not says("self.rate > 0") and not says("x")
    assert not says("self.model_size > 2")
