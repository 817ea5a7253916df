"""TensorFlow forms of losses and activations: ``tf.nn`` / TF 1 ``tf.losses`` losses and which
argument is their prediction, TF 1 dense layers, keras activation layers, one-unit heads."""

from __future__ import annotations

from model_helpers import build, scope

from trainlint.model import Activation, LossFamily
from trainlint.model.values.activations import degenerate_heads, logit_loss_inputs


def test_tf_losses_name_their_logits_argument_and_family() -> None:
    model = build(
        """
        import tensorflow as tf
        import tensorflow.compat.v1 as tf1

        a = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=scores_a)
        b = tf.nn.sparse_softmax_cross_entropy_with_logits(y, scores_b)
        c = tf.nn.sigmoid_cross_entropy_with_logits(logits=scores_c, labels=y)
        d = tf1.losses.softmax_cross_entropy(y, scores_d)
        e = tf.compat.v1.losses.log_loss(labels=y, predictions=probs_e)
        f = tf.nn.weighted_cross_entropy_with_logits(y, scores_f, 2.0)
        g = tf.keras.losses.categorical_crossentropy(y, probs_g)
        """
    )
    found = {
        model.text_of(loss.prediction): (loss.family, loss.tensorflow, loss.keras, loss.label)
        for loss in model.loss_calls
    }
    assert found == {
        "scores_a": (
            LossFamily.CROSS_ENTROPY,
            True,
            False,
            "tf.nn.softmax_cross_entropy_with_logits",
        ),
        "scores_b": (
            LossFamily.CROSS_ENTROPY,
            True,
            False,
            "tf.nn.sparse_softmax_cross_entropy_with_logits",
        ),
        "scores_c": (
            LossFamily.BCE_WITH_LOGITS,
            True,
            False,
            "tf.nn.sigmoid_cross_entropy_with_logits",
        ),
        "scores_d": (LossFamily.CROSS_ENTROPY, True, False, "tf.losses.softmax_cross_entropy"),
        "probs_e": (LossFamily.BINARY_CROSS_ENTROPY, True, False, "tf.losses.log_loss"),
        "scores_f": (
            LossFamily.BCE_WITH_LOGITS,
            True,
            False,
            "tf.nn.weighted_cross_entropy_with_logits",
        ),
        "probs_g": (
            LossFamily.CATEGORICAL_ON_PROBABILITIES,
            True,
            True,
            "categorical_crossentropy",
        ),
    }


def test_torch_losses_are_not_tensorflow() -> None:
    model = build(
        """
        import torch.nn.functional as F
        loss = F.cross_entropy(logits, y)
        """
    )
    assert [loss.tensorflow for loss in model.loss_calls] == [False]


def test_logits_loss_inputs_read_what_tf_predictions_hold() -> None:
    model = build(
        """
        import tensorflow as tf

        probs = tf.nn.softmax(tf.matmul(x, W) + b)
        a = tf.nn.softmax_cross_entropy_with_logits(labels=tf.nn.softmax(teacher), logits=raw)
        b = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=probs)
        c = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=tf.sigmoid(z))
        """
    )
    found = {model.text_of(i.loss.prediction): i.kind.producer for i in logit_loss_inputs(model)}
    assert found == {"raw": "", "probs": "softmax", "tf.sigmoid(z)": "sigmoid"}


def test_tf1_dense_layers_and_bias_adds() -> None:
    model = build(
        """
        import tensorflow.compat.v1 as tf

        hidden = tf.layers.dense(x, 64, activation=tf.nn.relu)
        logits = tf.layers.dense(hidden, 1)
        probs = tf.layers.dense(hidden, 1, activation=tf.nn.softmax)
        relu_default = tf.contrib.layers.fully_connected(x, 10)
        linear = tf.contrib.layers.fully_connected(x, 10, activation_fn=None)
        shifted = tf.nn.bias_add(tf.matmul(x, W), b)
        added = tf.add(tf.matmul(x, W), b)
        end = 0
        """
    )
    where = scope(model, "<module>")

    def kind(name: str):  # noqa: ANN202
        from libcst import Name

        return model.tensor_kind(Name(name), where)

    assert kind("hidden").activation is Activation.NON_NEGATIVE
    assert (kind("logits").activation, kind("logits").width) == (Activation.LOGITS, 1)
    assert kind("logits").producer == "tf.layers.dense"
    softmax = kind("probs")
    assert (softmax.producer, softmax.source.width) == ("softmax", 1)  # type: ignore[union-attr]
    assert kind("relu_default").activation is Activation.NON_NEGATIVE
    assert kind("linear").activation is Activation.LOGITS
    assert kind("shifted").activation is Activation.LOGITS
    assert kind("added").activation is Activation.LOGITS


def test_keras_ops_and_activation_layers_carry_what_they_are_applied_to() -> None:
    model = build(
        """
        import keras
        from keras import layers

        inputs = keras.Input((4,))
        h = layers.Dense(1)(inputs)
        out = layers.Softmax()(h)
        gated = layers.Activation("sigmoid")(layers.Dense(3)(inputs))
        p = keras.ops.softmax(z)
        q = keras.ops.log(p)
        """
    )
    where = scope(model, "<module>")
    from libcst import Name

    out = model.tensor_kind(Name("out"), where)
    assert (out.producer, out.axis, out.source.width) == ("softmax", -1, 1)  # type: ignore[union-attr]
    assert out.applied is not None and model.text_of(out.applied) == "layers.Softmax()(h)"
    gated = model.tensor_kind(Name("gated"), where)
    assert (gated.producer, gated.source.width) == ("sigmoid", 3)  # type: ignore[union-attr]
    assert model.tensor_kind(Name("p"), where).producer == "softmax"
    assert model.tensor_kind(Name("q"), where).activation is Activation.LOG_PROBABILITIES


def test_degenerate_keras_and_tf1_heads() -> None:
    model = build(
        """
        import tensorflow as tf
        from tensorflow import keras
        from tensorflow.keras import layers

        functional = layers.Dense(1, activation=tf.nn.softmax)(inputs)
        graph = tf.compat.v1.layers.dense(h, 1, activation=tf.nn.softmax)
        fine = layers.Dense(3, activation="softmax")(inputs)
        binary = layers.Dense(1, activation="sigmoid")(inputs)

        compiled = keras.Sequential([layers.Dense(8), layers.Dense(1, activation="sigmoid")])
        compiled.compile(loss="categorical_crossentropy", optimizer="adam")
        right = keras.Sequential([layers.Dense(8), layers.Dense(1, activation="sigmoid")])
        right.compile(loss="binary_crossentropy", optimizer="adam")

        head = keras.Sequential([layers.Dense(1)])
        cce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        loss = cce(y, head(x))
        """
    )
    found = [(model.text_of(h.layer.node), h.loss_label) for h in degenerate_heads(model)]
    assert found == [
        ("layers.Dense(1, activation=tf.nn.softmax)", ""),
        ("tf.compat.v1.layers.dense(h, 1, activation=tf.nn.softmax)", ""),
        ("layers.Dense(1)", "SparseCategoricalCrossentropy"),
        ('layers.Dense(1, activation="sigmoid")', '"categorical_crossentropy"'),
    ]


def test_keras_stacks_read_callable_activations_and_activation_layers() -> None:
    model = build(
        """
        import tensorflow as tf
        from tensorflow import keras

        stacked = keras.Sequential([keras.layers.Dense(1), keras.layers.Activation(tf.nn.softmax)])
        wide = keras.Sequential([keras.layers.Dense(4), keras.layers.Activation(tf.nn.softmax)])
        """
    )
    found = [(model.text_of(h.layer.node), h.softmax is not None) for h in degenerate_heads(model)]
    assert found == [("keras.layers.Dense(1)", True)]


def test_tf_activations_by_keyword_keep_their_operand() -> None:
    from libcst import Name

    model = build(
        """
        import tensorflow as tf

        layer = tf.layers.dense(x, 1)
        probs = tf.nn.softmax(logits=layer)
        gate = tf.sigmoid(x=layer)
        """
    )
    where = scope(model, "<module>")
    for name, producer in (("probs", "softmax"), ("gate", "sigmoid")):
        kind = model.tensor_kind(Name(name), where)
        assert kind.producer == producer
        assert kind.source is not None and kind.source.width == 1
    assert model.tensor_kind(Name("probs"), where).axis == -1  # TF's default axis
    assert [h.softmax is not None for h in degenerate_heads(model)] == [True]


def test_tf_and_keras_ops_logs_of_softmax_fuse() -> None:
    from trainlint.model.values.activations import fused_log_softmax, logs_of_probabilities

    model = build(
        """
        import tensorflow as tf
        import keras

        a = tf.log(tf.nn.softmax(z))
        b = keras.ops.log(keras.ops.softmax(z, axis=-1))
        c = tf.math.log(tf.sigmoid(z))
        """
    )
    fused = []
    for found in logs_of_probabilities(model):
        edit = fused_log_softmax(model, found)
        fused.append(model.text_of(edit.replacement) if edit is not None else None)  # type: ignore[arg-type]
    assert fused == ["tf.nn.log_softmax(z)", "keras.ops.log_softmax(z, axis=-1)", None]
