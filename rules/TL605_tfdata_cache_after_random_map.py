from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.tfdata import Stage, StageKind
from trainlint.model.frameworks.tfdata_stages import swapped
from trainlint.rule import Violation

_FIX_MAP = Fix(
    "cache the deterministic part of the pipeline, then augment",
    "ds.map(decode).cache().map(augment).shuffle(n).batch(b)",
)
_FIX_SHUFFLE = Fix(
    "cache before shuffling, so each epoch draws a new order",
    "ds.cache().shuffle(n).batch(b)",
)


def _fix(cache: Stage, frozen: Stage, base: Fix) -> Fix:
    """An edit when the cache directly follows the stage it should precede."""
    if cache.method != "cache" or frozen.method not in ("map", "shuffle"):
        return base
    replacement = swapped(cache, frozen)
    if replacement is None:
        return base
    return Fix(
        base.description, base.replacement, (Edit(cache.call, replacement),), Applicability.UNSAFE
    )


class TfdataCacheAfterRandomMap(Rule):
    """A `tf.data` pipeline caches after a random augmentation or a shuffle.

    ## What it does
    Follows each `tf.data` pipeline (method chains and rebinding of one variable, across
    notebook cells; see TL604) to every `.cache()` and flags it when an earlier `.map(f)`
    draws at random -- `f` calls `tf.random.*`, `tf.image.random_*`, `tf.nn.dropout`, a keras
    random preprocessing layer (`RandomFlip`, `RandomRotation`, a `Sequential` of them), or a
    same-file function that does; Python's or NumPy's RNG inside `tf.py_function` counts too
    -- or when an earlier `.shuffle()` reshuffles each epoch and no shuffle follows the cache.

    Stays silent on `stateless_random_*` ops (their seed fixes the result), on random layers
    called with `training=False`, on augmentation that a known flag switches off
    (`Transform(augment=False)` whose `__call__` draws only under `if self.augment:`,
    `partial(preprocess, training=False)`, a `training=False` default), on
    `shuffle(..., reshuffle_each_iteration=False)`, on map functions it cannot see
    (parameters, other modules), on `take(n).cache()` (a fixed sample replayed on purpose,
    e.g. for benchmarks), and when the dataset is shuffled again after the cache (also in a
    same-file function the dataset is passed to).

    ## Why is this bad?
    `cache()` stores the elements of the first epoch and replays them afterwards: the random
    crop, flip or noise drawn in epoch one is the one the model sees in every epoch, so the
    augmentation stops augmenting. After a shuffle the first epoch's order is replayed too,
    and every epoch sees the same sequence of batches.

    ## Example
    ```python
    ds = ds.map(random_flip_and_crop).cache().shuffle(1000).batch(32)
    ```

    ## Use instead
    ```python
    ds = ds.cache().map(random_flip_and_crop).shuffle(1000).batch(32)
    ```
    """

    code = "TL605"
    name = "tfdata-cache-after-random-map"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = ("cache(",)
    block_triggers = triggers
    summary = "A `tf.data` pipeline caches after a random map or a shuffle: one draw replayed."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        pipelines = model.tfdata
        for stage in pipelines.stages:
            if not stage.is_(StageKind.CACHE):
                continue
            frozen = pipelines.frozen_by_cache(stage)
            if frozen is None:
                continue
            earlier, draw = frozen
            where = model.where(earlier.anchor)
            if draw is not None:
                yield Violation(
                    stage.anchor,
                    f"`cache()` comes after `{earlier.label}` ({where}), whose function draws "
                    f"at random (`{model.text_of(draw.func)}`, {model.where(draw)}): the first "
                    "epoch's augmentation is cached and replayed in every epoch",
                    _fix(stage, earlier, _FIX_MAP),
                )
            else:
                yield Violation(
                    stage.anchor,
                    f"`cache()` comes after `{earlier.label}` ({where}) and nothing shuffles "
                    "after it: the first epoch's order is cached and replayed in every epoch",
                    _fix(stage, earlier, _FIX_SHUFFLE),
                )
