"""GradientTape blocks: what they record, their gradient calls, whether those are applied."""

from __future__ import annotations

from model_helpers import build

from trainlint.model import TrainingModel

IMPORTS = """
import tensorflow as tf
"""


def gradient_lines(model: TrainingModel) -> dict[int, bool]:
    return {model.line_of(g.call): model.tapes.applied(g) for g in model.tapes.gradients}


def test_tapes_from_with_items_and_reentered_bindings() -> None:
    model = build(
        IMPORTS
        + """
with tf.GradientTape() as g1, tf.GradientTape(persistent=True) as g2:
    y = f(x)
tape = tf.GradientTape(persistent=flag)
with tape:
    z = f(x)
with tape:
    w = f(z)
"""
    )
    tapes = model.tapes.tapes
    assert [t.name for t in tapes] == ["g1", "g2", "tape"]
    assert [t.persistent for t in tapes] == [False, True, None]
    assert len(tapes[2].blocks) == 2
    z, w = model.module_scope.bindings["z"][0], model.module_scope.bindings["w"][0]
    assert tapes[2].records(z.statement) and tapes[2].records(w.statement)
    y = model.module_scope.bindings["y"][0]
    assert model.tapes.recording(y.statement) == tapes[:2]


def test_gradients_applied_through_rebindings_and_zip() -> None:
    model = build(
        IMPORTS
        + """
def step(x):
    with tf.GradientTape() as tape:
        loss = f(x)
    grads = tape.gradient(loss, model.trainable_variables)
    grads, _ = tf.clip_by_global_norm(grads, 1.0)
    pairs = zip(grads, model.trainable_variables)
    optimizer.apply_gradients(pairs)

def saliency(image):
    with tf.GradientTape() as tape:
        tape.watch(image)
        score = f(image)
    return tf.abs(tape.gradient(score, image))
"""
    )
    assert list(gradient_lines(model).values()) == [True, False]


def test_gradients_returned_to_a_caller_or_assigned_by_hand() -> None:
    model = build(
        IMPORTS
        + """
def grads_of(x):
    with tf.GradientTape() as tape:
        loss = f(x)
    return tape.gradient(loss, weights)

for x in batches:
    for w, g in zip(weights, grads_of(x)):
        w.assign_sub(0.1 * g)
"""
    )
    assert list(gradient_lines(model).values()) == [True]


def test_train_step_override_of_a_keras_model() -> None:
    model = build(
        IMPORTS
        + """
class Net(tf.keras.Model):
    def train_step(self, data):
        return {}

class Plain:
    def train_step(self, data):
        return {}
"""
    )
    net, plain = model.classes["Net"], model.classes["Plain"]
    assert model.tapes.is_train_step_override(net.methods["train_step"])
    assert not model.tapes.is_train_step_override(plain.methods["train_step"])


def test_targets_computed_outside_the_tape() -> None:
    model = build(
        IMPORTS
        + """
def step(x):
    with tf.GradientTape() as tape:
        per_example = f(x)
        out = g(x)
    mean = tf.reduce_mean(per_example)
    first = tape.gradient(mean, w)
    loss, aux = out
    second = tape.gradient(loss, w)
    third = tape.gradient(tf.reduce_sum(per_example), w)
"""
    )
    paths = model.tape_paths
    outside = [paths.outside_target(g) for g in model.tapes.gradients]
    assert [o is not None for o in outside] == [True, False, True]
    assert outside[0].binding is not None and outside[0].binding.target == "mean"
    assert outside[2].binding is None


def test_cuts_on_every_path_versus_one_operand() -> None:
    model = build(
        IMPORTS
        + """
import numpy as np
net = tf.keras.Sequential([tf.keras.layers.Dense(1)])
teacher = tf.keras.Sequential([tf.keras.layers.Dense(1)])

def step(x):
    with tf.GradientTape() as tape:
        cut = np.square(net(x))
        loss = tf.reduce_mean(cut)
    a = tape.gradient(loss, net.trainable_variables)
    with tf.GradientTape() as tape:
        soft = tf.stop_gradient(teacher(x))
        loss = tf.reduce_mean(tf.square(net(x) - soft)) * np.float32(0.5)
    b = tape.gradient(loss, net.trainable_variables)
    with tf.GradientTape() as tape:
        loss = float(tf.reduce_mean(net(x)))
    c = tape.gradient(loss, net.trainable_variables)
"""
    )
    cuts = [model.tape_paths.cut_on_path(g) for g in model.tapes.gradients]
    assert cuts[1] is None
    assert cuts[0] is not None and cuts[0].how.startswith("NumPy")
    assert cuts[2] is not None and cuts[2].how == "`float()`"


def test_persistent_tapes_kept_across_iterations() -> None:
    model = build(
        IMPORTS
        + """
for x in xs:
    with tf.GradientTape(persistent=True) as kept:
        y = f(x)
    kept.gradient(y, w)
for x in xs:
    with tf.GradientTape(persistent=True) as released:
        y = f(x)
    released.gradient(y, w)
    del released

def once(x):
    with tf.GradientTape(persistent=True) as local:
        y = f(x)
    return local.gradient(y, w)
"""
    )
    kept = [t.name for t in model.tapes.tapes if model.tapes.kept_across_iterations(t)]
    assert kept == ["kept"]


def test_models_a_tape_trains() -> None:
    model = build(
        IMPORTS
        + """
with tf.GradientTape() as one:
    a = f(x)
opt.apply_gradients(zip(one.gradient(a, g.trainable_variables + d.trainable_weights), v))
with tf.GradientTape() as other:
    b = f(x)
opt.apply_gradients(zip(other.gradient(b, weights), weights))
"""
    )
    first, second = model.tapes.tapes
    assert model.tapes.trained_models(first) == {"g", "d"}
    assert model.tapes.trained_models(second) is None
