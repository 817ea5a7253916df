"""TF 1 graph code: what ``sess.run`` / ``Tensor.eval`` fetches are reduced to, keras
``*_on_batch`` results, and loops that train by running a graph's training op."""

from __future__ import annotations

import libcst as cst
from model_helpers import build

from trainlint.model.dataflow.lossflow import Reduction
from trainlint.model.loops.loop_purpose import evaluates, runs_graph_train_op, trains

GRAPH = """
import tensorflow as tf
from tensorflow import keras

cost = tf.reduce_mean(tf.square(pred - y))
per_sample = tf.square(pred - y)
train_op = tf.train.AdamOptimizer().minimize(cost)
net = keras.Sequential([keras.layers.Dense(1)])

with tf.Session() as sess:
    for start in range(0, n, 64):
        _, fetched = sess.run([train_op, cost], feed_dict=feed)
        whole = sess.run(per_sample, feed_dict=feed)
        evaluated = cost.eval(feed_dict=feed)
        on_batch = net.test_on_batch(xb, yb)
    for start in range(0, n, 64):
        only_eval = sess.run(cost, feed_dict=feed)
"""


def _reduction(model, name: str) -> Reduction:  # noqa: ANN001
    for scope in model.scopes:
        for binding in scope.bindings.get(name, []):
            return model.dataflow.reduction(cst.Name(name), scope, binding.order + 1)
    raise KeyError(name)


def test_fetches_keep_the_reduction_of_what_they_fetch() -> None:
    model = build(GRAPH)
    assert _reduction(model, "fetched") is Reduction.MEAN
    assert _reduction(model, "whole") is Reduction.UNKNOWN  # an elementwise op: not a mean
    assert _reduction(model, "evaluated") is Reduction.MEAN
    assert _reduction(model, "on_batch") is Reduction.MEAN


def test_a_loop_running_the_training_op_trains() -> None:
    model = build(GRAPH)
    first, second = sorted(model.loops, key=lambda loop: loop.order)[:2]
    assert runs_graph_train_op(model, first) and trains(model, first)
    assert not runs_graph_train_op(model, second) and not trains(model, second)
    assert not evaluates(model, first)
