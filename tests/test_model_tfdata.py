"""tf.data pipelines: stages through chains and rebinding, sources, batching, randomness."""

from __future__ import annotations

import libcst as cst
from model_helpers import build

from trainlint.model import TrainingModel
from trainlint.model.frameworks.tfdata import Stage, StageKind

TF = "import tensorflow as tf\nimport tensorflow_datasets as tfds"


def stage_at(model: TrainingModel, method: str, line: int) -> Stage:
    for stage in model.tfdata.stages:
        if stage.method == method and model.line_of(stage.anchor) == line:
            return stage
    raise AssertionError(f"no {method} stage on line {line}")


def methods(model: TrainingModel, stage: Stage) -> list[str]:
    return [s.method for s in model.tfdata.pipeline(stage).stages]


def test_chain_and_rebinding_join_into_one_pipeline() -> None:
    model = build(
        TF
        + """
ds = tf.data.Dataset.from_tensor_slices((x, y))
ds = ds.map(f).batch(32)
ds = ds.prefetch(1)
out = ds.shuffle(100)
"""
    )
    shuffle = stage_at(model, "shuffle", 6)
    assert methods(model, shuffle) == ["from_tensor_slices", "map", "batch", "prefetch", "shuffle"]
    assert model.tfdata.pipeline(shuffle).from_source
    assert model.tfdata.open_batch(shuffle) is stage_at(model, "batch", 4)
    assert [s.method for s in model.tfdata.downstream(stage_at(model, "map", 4))] == ["batch"]


def test_a_binding_in_the_other_arm_of_an_if_is_skipped() -> None:
    model = build(
        TF
        + """
ds = tf.data.TFRecordDataset(files)
if evaluating:
    ds = ds.batch(64)
else:
    ds = ds.shuffle(2048)
ds = ds.cache()
"""
    )
    shuffle = stage_at(model, "shuffle", 7)
    assert methods(model, shuffle) == ["TFRecordDataset", "shuffle"]
    assert model.tfdata.open_batch(shuffle) is None
    # after the if: the latest binding (the else arm) is the one read
    assert methods(model, stage_at(model, "cache", 8))[-2:] == ["shuffle", "cache"]


def test_tfds_splits_unpacked_nested_and_by_key_are_sources() -> None:
    model = build(
        TF
        + """
(train, test), info = tfds.load("mnist", split=["train", "test"], with_info=True)
both = tfds.load("mnist")
t = both["train"].batch(8)
a = train.batch(8)
batched = tfds.load("mnist", split="train", batch_size=16).shuffle(4)
"""
    )
    assert methods(model, stage_at(model, "batch", 5)) == ["load", "batch"]
    assert methods(model, stage_at(model, "batch", 6)) == ["load", "batch"]
    shuffle = stage_at(model, "shuffle", 7)
    batch = model.tfdata.open_batch(shuffle)
    assert batch is not None and batch.is_(StageKind.SOURCE)
    assert batch.label == "tfds.load(batch_size=...)"


def test_same_file_function_returns_continue_the_pipeline() -> None:
    model = build(
        TF
        + """
def make(files):
    ds = tf.data.Dataset.list_files(files)
    return ds.batch(4)

train = make("a/*").shuffle(10)
"""
    )
    assert methods(model, stage_at(model, "shuffle", 7)) == ["list_files", "batch", "shuffle"]


def test_a_notebook_is_one_module() -> None:
    model = build(
        TF
        + """
ds = tf.data.Dataset.range(10)
# cell 2
ds = ds.batch(2)
# cell 3
ds = ds.shuffle(5)
"""
    )
    assert methods(model, stage_at(model, "shuffle", 7)) == ["range", "batch", "shuffle"]


def test_element_shuffle_before_batch_and_block_shuffles_have_no_open_batch() -> None:
    model = build(
        TF
        + """
a = tf.data.Dataset.range(10).shuffle(10).batch(2).shuffle(3)
b = tf.data.Dataset.range(10).batch(2).shuffle(3).unbatch()
c = tf.data.Dataset.range(10).batch(2).unbatch().shuffle(3)
d = tf.data.Dataset.range(10).batch(2).shuffle(3, reshuffle_each_iteration=False)
"""
    )
    assert model.tfdata.open_batch(stage_at(model, "shuffle", 3)) is None
    assert model.tfdata.open_batch(stage_at(model, "shuffle", 4)) is None
    assert model.tfdata.open_batch(stage_at(model, "shuffle", 5)) is None
    assert model.tfdata.open_batch(stage_at(model, "shuffle", 6)) is not None


def test_a_shuffle_batched_again_reorders_the_examples_the_first_batch_made() -> None:
    model = build(
        TF
        + """
windows = tf.data.Dataset.range(1000).batch(11, drop_remainder=True)
pairs = windows.map(split)
train = pairs.shuffle(100).batch(8)
"""
    )
    # ``batch(11)`` cut windows (the examples); the shuffle comes before the minibatches
    assert model.tfdata.open_batch(stage_at(model, "shuffle", 5)) is None


def test_unknown_origin_counts_only_in_a_tensorflow_file_without_other_pipelines() -> None:
    in_tf = build(TF + "\ndef f(ds):\n    return ds.batch(2).shuffle(3)\n")
    assert sorted(s.method for s in in_tf.tfdata.stages) == ["batch", "shuffle"]
    assert not any(in_tf.tfdata.pipeline(s).from_source for s in in_tf.tfdata.stages)
    plain = build("def f(ds):\n    return ds.batch(2).shuffle(3)\n")
    assert plain.tfdata.stages == []
    mixed = build(TF + "\nimport datasets\ndef f(ds):\n    return ds.batch(2).shuffle(3)\n")
    assert mixed.tfdata.stages == []


def test_experimental_apply_stands_for_its_stages() -> None:
    model = build(
        TF
        + """
ds = tf.data.Dataset.range(10)
ds = ds.apply(tf.data.experimental.map_and_batch(parse, batch_size=4))
ds = ds.apply(tf.data.experimental.unbatch())
"""
    )
    applied = stage_at(model, "apply", 4)
    assert applied.kinds == (StageKind.MAP, StageKind.BATCH)
    assert model.text_of(applied.function) == "parse"
    assert stage_at(model, "apply", 5).kinds == (StageKind.UNBATCH,)


def test_nested_unpacking_binds_each_name_without_a_value() -> None:
    model = build("(a, (b, c)), d = f()\n")
    bindings = model.module_scope.bindings
    assert bindings["a"][0].nested_path == (0, 0) and bindings["a"][0].value is None
    assert bindings["c"][0].nested_path == (0, 1, 1)
    assert model.text_of(bindings["b"][0].unpacked_from) == "f()"
    assert bindings["d"][0].unpack_index == 1 and bindings["d"][0].value is not None


def draw_of(model: TrainingModel, line: int) -> str | None:
    draw = model.tfdata.random_draw(stage_at(model, "map", line))
    return model.text_of(draw.func) if draw is not None else None


def test_map_functions_that_draw_directly_through_helpers_and_layers() -> None:
    model = build(
        TF
        + """
from tensorflow.keras import layers
aug = tf.keras.Sequential([layers.RandomFlip(), layers.RandomZoom(0.1)])
flip = layers.RandomFlip()
def crop(x):
    return tf.image.random_crop(x, [8, 8, 3])
def pre(x, y):
    return crop(x), y
ds = tf.data.Dataset.range(4)
a = ds.map(pre)
b = ds.map(lambda x, y: (aug(x, training=True), y))
c = ds.map(lambda x, y: (flip(x, training=False), y))
d = ds.map(lambda x: tf.image.stateless_random_flip_left_right(x, seed=(1, 2)))
e = ds.map(lambda x: x + tf.random.normal([3]))
f = ds.map(lambda x: layers.RandomRotation(0.2)(x))
"""
    )
    assert draw_of(model, 11) == "tf.image.random_crop"
    assert draw_of(model, 12) == "aug"
    assert draw_of(model, 13) is None
    assert draw_of(model, 14) is None
    assert draw_of(model, 15) == "tf.random.normal"
    assert draw_of(model, 16) == "layers.RandomRotation(0.2)"


def test_python_randomness_counts_only_inside_py_function() -> None:
    model = build(
        TF
        + """
import numpy as np
def py_noise(x):
    return x + np.random.normal()
def traced(x):
    return x * np.random.uniform()
ds = tf.data.Dataset.range(4)
a = ds.map(lambda x: tf.py_function(py_noise, [x], tf.float32))
b = ds.map(traced)
"""
    )
    assert draw_of(model, 9) == "np.random.normal"
    assert draw_of(model, 10) is None


def test_known_flags_rule_out_the_augmenting_arm() -> None:
    model = build(
        TF
        + """
import functools
class T:
    def __init__(self, train):
        self.train = train
    def __call__(self, x):
        if self.train:
            x = tf.image.random_flip_up_down(x)
        return x
def pre(x, training=False):
    if not training:
        return x
    return tf.image.random_hue(x, 0.1)
ds = tf.data.Dataset.range(4)
a = ds.map(T(train=False))
b = ds.map(T(True))
c = ds.map(pre)
d = ds.map(functools.partial(pre, training=True))
e = ds.map(lambda x: pre(x, training=False))
"""
    )
    assert draw_of(model, 16) is None
    assert draw_of(model, 17) == "tf.image.random_flip_up_down"
    assert draw_of(model, 18) is None
    assert draw_of(model, 19) == "tf.image.random_hue"
    assert draw_of(model, 20) is None


def test_cache_freezes_a_random_map_or_a_shuffle_not_followed_by_one() -> None:
    model = build(
        TF
        + """
def aug(x):
    return tf.image.random_flip_left_right(x)
ds = tf.data.Dataset.range(8)
a = ds.map(aug).cache()
b = ds.shuffle(8).cache()
c = ds.shuffle(8).cache().shuffle(8)
d = ds.map(aug).take(1).cache()
e = ds.cache().map(aug)
"""
    )
    tfdata = model.tfdata
    frozen = tfdata.frozen_by_cache(stage_at(model, "cache", 6))
    assert frozen is not None and frozen[0].method == "map" and frozen[1] is not None
    frozen = tfdata.frozen_by_cache(stage_at(model, "cache", 7))
    assert frozen is not None and frozen[0].method == "shuffle" and frozen[1] is None
    assert tfdata.frozen_by_cache(stage_at(model, "cache", 8)) is None
    assert tfdata.frozen_by_cache(stage_at(model, "cache", 9)) is None
    assert tfdata.frozen_by_cache(stage_at(model, "cache", 10)) is None


def test_a_parameter_continues_the_pipeline_of_its_one_caller() -> None:
    model = build(
        TF
        + """
def finish(ds):
    return ds.shuffle(100)
raw = tf.data.Dataset.range(10).cache()
out = finish(raw)
"""
    )
    cache = stage_at(model, "cache", 5)
    assert [s.method for s in model.tfdata.later(cache)] == ["shuffle"]
    assert methods(model, stage_at(model, "shuffle", 4)) == ["range", "cache", "shuffle"]


def test_tuple_literals_unpacked_and_windows_keep_the_pipeline() -> None:
    model = build(
        TF
        + """
data, info = tfds.load("fashion_mnist", with_info=True)
train, test = data["train"], data["test"]
train = train.cache()
windows = tf.data.Dataset.range(10).window(5, shift=1).flat_map(lambda w: w.batch(5))
windows = windows.shuffle(10)
"""
    )
    assert methods(model, stage_at(model, "cache", 5)) == ["load", "cache"]
    shuffle = stage_at(model, "shuffle", 7)
    assert methods(model, shuffle) == ["range", "window", "flat_map", "shuffle"]
    assert model.tfdata.open_batch(shuffle) is None


def test_a_source_of_several_splits_is_a_dataset_once_indexed() -> None:
    model = build(
        TF
        + """
splits = tfds.load("mnist")
train = splits["train"]
one = tfds.load("mnist", split="train")
"""
    )
    at = model.module_scope
    assert not model.evidence.is_dataset(cst.parse_expression("splits"), at, 10**9)
    assert model.evidence.is_dataset(cst.parse_expression("train"), at, 10**9)
    assert model.evidence.is_dataset(cst.parse_expression("one"), at, 10**9)


def test_spark_and_dask_files_are_not_tf_data_for_unknown_origins() -> None:
    spark = build(TF + "\nimport pyspark\ndef f(rdd):\n    return rdd.map(g).cache()\n")
    assert spark.tfdata.stages == []
