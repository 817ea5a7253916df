"""trainable changes after compile(): which ones a later fit() does not see."""

from __future__ import annotations

from model_helpers import build

from trainlint.model import TrainingModel

KERAS = "from tensorflow import keras"


def stale_lines(model: TrainingModel) -> list[int]:
    return [model.line_of(s.change.node) for s in model.trainable_changes.stale]


def test_owner_of_a_loop_over_layers_is_the_model_iterated() -> None:
    model = build(
        KERAS
        + """
for layer in base.layers[:10]:
    layer.trainable = False
for block in base.submodules:
    block.trainable = True
head.trainable = False
"""
    )
    owners = {c.key: c.owner for c in model.trainable_changes.changes}
    assert owners == {
        "layer.trainable": "base",
        "block.trainable": "base",
        "head.trainable": "head",
    }


def test_change_after_compile_before_fit_is_stale_and_recompiling_is_not() -> None:
    model = build(
        KERAS
        + """
base = keras.applications.VGG16(include_top=False)
m = keras.Sequential([base, keras.layers.Dense(1)])
m.compile(loss="mse")
base.trainable = False
m.fit(x, y)
base.trainable = True
m.compile(loss="mse")
m.fit(x, y)
"""
    )
    assert stale_lines(model) == [5]
    stale = model.trainable_changes.stale[0]
    assert model.line_of(stale.compiled.node) == 4 and model.line_of(stale.fit.node) == 6


def test_a_later_compile_of_another_model_is_the_gan_idiom() -> None:
    model = build(
        KERAS
        + """
d = keras.Sequential([keras.layers.Dense(1)])
d.compile(loss="mse")
d.trainable = False
gan = keras.Sequential([g, d])
gan.compile(loss="mse")
d.train_on_batch(x, y)
gan.train_on_batch(z, y)
"""
    )
    assert stale_lines(model) == []


def test_setting_it_after_the_combined_compile_is_stale_for_the_combined_model() -> None:
    model = build(
        KERAS
        + """
d = keras.Sequential([keras.layers.Dense(1)])
d.compile(loss="mse")
gan = keras.Sequential([g, d])
gan.compile(loss="mse")
d.trainable = False
gan.train_on_batch(z, y)
"""
    )
    stale = model.trainable_changes.stale
    assert stale_lines(model) == [6]
    assert model.text_of(stale[0].fit.node.func) == "gan.train_on_batch"


def test_values_restored_before_the_fit_and_loops_read_in_later_iterations() -> None:
    toggled = build(
        KERAS
        + """
m = keras.Sequential([keras.layers.Dense(1)])
m.compile(loss="mse")
for step in range(3):
    m.trainable = False
    m.trainable = True
    m.train_on_batch(x, y)
"""
    )
    assert stale_lines(toggled) == []
    late = build(
        KERAS
        + """
m = keras.Sequential([keras.layers.Dense(1)])
m.compile(loss="mse")
for epoch in range(3):
    m.fit(x, y)
    m.trainable = False
"""
    )
    assert stale_lines(late) == [6]


def test_unrelated_objects_helpers_that_compile_and_files_without_keras() -> None:
    model = build(
        KERAS
        + """
def make(d):
    out = keras.Sequential([d])
    out.compile(loss="mse")
    return out
m = keras.Sequential([keras.layers.Dense(1)])
m.compile(loss="mse")
other.trainable = False
m.trainable = False
gan = make(m)
m.fit(x, y)
"""
    )
    assert stale_lines(model) == []
    plain = build("m.compile()\nm.trainable = False\nm.fit(x)\n")
    assert stale_lines(plain) == []


def test_methods_of_a_class_run_after_its_init() -> None:
    source = (
        KERAS
        + """
class GAN:
    def __init__(self, g, d):
        self.d = d
        self.d.compile(loss="mse")
        self.combined = keras.Sequential([g, self.d])
        self.combined.compile(loss="mse")
        self.d.trainable = False
    def train(self, z, y):
        self.combined.train_on_batch(z, y)
"""
    )
    assert stale_lines(build(source)) == [8]
    idiom = source.replace("        self.d.trainable = False\n", "").replace(
        "        self.combined = keras",
        "        self.d.trainable = False\n        self.combined = keras",
    )
    assert stale_lines(build(idiom)) == []
