"""tf.distribute: strategies, replica step functions, per-replica means on a loss."""

from __future__ import annotations

from model_helpers import build

from trainlint.model import TrainingModel

IMPORTS = """
import functools
import tensorflow as tf
"""


def steps(model: TrainingModel) -> list[tuple[str, bool | None]]:
    return [(run.step.short_name, run.multi_replica) for run in model.distribution.runs]


def test_strategies_and_the_functions_they_run() -> None:
    model = build(
        IMPORTS
        + """
def pick(tpu):
    if tpu:
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()

mirrored = tf.distribute.MirroredStrategy()
single = tf.distribute.OneDeviceStrategy("/cpu:0")
chosen = pick(True)

def a(x): ...
def b(x): ...
def c(x): ...
def d(x): ...

compiled = tf.function(b)
mirrored.run(a, args=(1,))
mirrored.run(compiled, args=(1,))
single.run(c, args=(1,))
chosen.experimental_run_v2(functools.partial(d, 2), args=(1,))

def driver(strategy):
    with strategy.scope():
        strategy.run(a, args=(1,))
"""
    )
    assert steps(model) == [("a", True), ("b", True), ("d", True), ("a", None)]
    assert len(model.distribution.scopes) == 1


def per_replica(model: TrainingModel, function: str) -> str | None:
    scope = model.module_scope.functions[function]
    target = scope.returns[0]
    found = model.replica_losses.per_replica_mean(target, scope, scope.return_orders[0])
    return model.text_of(found.node) if found is not None else None


def test_per_replica_means_and_global_averages() -> None:
    model = build(
        IMPORTS
        + """
default = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
none = tf.keras.losses.SparseCategoricalCrossentropy(reduction=tf.keras.losses.Reduction.NONE)

def helper(y, p):
    return tf.reduce_mean(none(y, p))

def mean(y, p):
    loss = helper(y, p)
    loss += 0.1
    return loss

def object_default(y, p):
    return default(y, p) * 2.0

def global_average(y, p):
    return tf.nn.compute_average_loss(none(y, p), global_batch_size=64)

def by_hand(y, p, strategy):
    loss = tf.reduce_mean(none(y, p))
    return loss / strategy.num_replicas_in_sync

def per_example_axis(y, p):
    return tf.nn.compute_average_loss(tf.reduce_mean(tf.square(y - p), axis=-1))
"""
    )
    assert per_replica(model, "mean") == "tf.reduce_mean(none(y, p))"
    assert per_replica(model, "object_default") == "default(y, p)"
    assert per_replica(model, "global_average") is None
    assert per_replica(model, "by_hand") is None
    assert per_replica(model, "per_example_axis") is None
