from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.tfdata import Stage, StageKind
from trainlint.model.frameworks.tfdata_stages import swapped
from trainlint.rule import Violation

_FIX = Fix(
    "shuffle the elements before batching them",
    "ds.shuffle(buffer_size).batch(batch_size)",
)


def _swapped(shuffle: Stage, batch: Stage) -> Edit | None:
    if batch.method not in ("batch", "padded_batch") or shuffle.method != "shuffle":
        return None
    replacement = swapped(shuffle, batch)
    return Edit(shuffle.call, replacement) if replacement is not None else None


class TfdataShuffleAfterBatch(Rule):
    """A `tf.data` pipeline shuffles after batching (or shuffles with a buffer of 1).

    ## What it does
    Follows each `tf.data` pipeline through method chains (`ds.batch(32).shuffle(1000)`) and
    through successive rebinding of one variable (`ds = ds.batch(32)` ... `ds =
    ds.shuffle(1000)`, also across notebook cells), from its source
    (`tf.data.Dataset.from_tensor_slices`, `list_files`, `TFRecordDataset`, `tfds.load`, ...)
    or from a parameter of unknown origin in a TensorFlow file. It flags a `.shuffle()` that
    comes after a `.batch()`/`.padded_batch()` (or a batch made by `tfds.load(batch_size=...)`
    or `apply(...bucket_by_sequence_length...)`) with no `unbatch()` in between, and a
    `shuffle(1)`, which shuffles nothing.

    Stays silent when the elements were already shuffled before the batch (shuffling batches
    too is harmless), when the batches are unbatched again after the shuffle (a block
    shuffle), on batches made implicitly (`image_dataset_from_directory` shuffles its
    elements itself), and on bindings in the other arm of an `if`.

    ## Why is this bad?
    Shuffling batches reorders whole batches: every epoch the same elements sit together in
    the same batches, only in another order. The gradient noise that element shuffling gives
    is lost, and data stored sorted by class or source yields single-class batches forever.
    `shuffle(1)` keeps the order exactly as it was.

    ## Example
    ```python
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).shuffle(1000)
    ```

    ## Use instead
    ```python
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(1000).batch(32)
    ```
    """

    code = "TL604"
    name = "tfdata-shuffle-after-batch"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = ("shuffle",)
    block_triggers = triggers
    summary = "A `tf.data` pipeline shuffles batches, not elements (or shuffles with buffer 1)."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        pipelines = model.tfdata
        for stage in pipelines.stages:
            if not stage.is_(StageKind.SHUFFLE) or stage.is_(StageKind.BATCH):
                continue
            if stage.buffer_size == 1:
                yield Violation(
                    stage.anchor,
                    f"`{stage.label}` with a buffer of 1 keeps every element in place: "
                    "nothing is shuffled",
                    Fix(
                        "give the shuffle a buffer as large as the dataset, or one that spans "
                        "many batches",
                        "ds.shuffle(buffer_size=10_000)",
                    ),
                )
                continue
            batch = pipelines.open_batch(stage)
            if batch is None:
                continue
            edit = _swapped(stage, batch)
            fix = _FIX
            if edit is not None:
                fix = Fix(_FIX.description, _FIX.replacement, (edit,), Applicability.UNSAFE)
            yield Violation(
                stage.anchor,
                f"`{stage.label}` comes after `{batch.label}` ({model.where(batch.anchor)}): "
                "it shuffles whole batches, so the same elements are batched together in "
                "every epoch",
                fix,
            )
