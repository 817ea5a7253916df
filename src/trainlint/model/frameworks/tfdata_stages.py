"""The stages of a ``tf.data`` pipeline: what each dataset method does, and the calls that make
a dataset (``tf.data.Dataset.*``, ``TFRecordDataset``, ``tfds.load``, keras' ``*_from_directory``).

``apply()`` of the ``tf.data.experimental`` transformations counts as the stage it stands for
(``unbatch()``, ``map_and_batch``, ``shuffle_and_repeat``, ``bucket_by_sequence_length``);
``tfds.load(..., batch_size=n)`` is a source that batches.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import argument, dotted, keyword, literal, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


class StageKind(enum.Enum):
    SOURCE = "source"
    MAP = "map"
    BATCH = "batch"
    UNBATCH = "unbatch"
    SHUFFLE = "shuffle"
    CACHE = "cache"
    OTHER = "other"  # prefetch, repeat, filter, take, ...: changes neither order nor batching


_METHODS = {
    "map": (StageKind.MAP,),
    "parallel_map": (StageKind.MAP,),
    "batch": (StageKind.BATCH,),
    "padded_batch": (StageKind.BATCH,),
    "ragged_batch": (StageKind.BATCH,),
    "sparse_batch": (StageKind.BATCH,),
    "rebatch": (StageKind.BATCH,),
    "bucket_by_sequence_length": (StageKind.BATCH,),
    "unbatch": (StageKind.UNBATCH,),
    "shuffle": (StageKind.SHUFFLE,),
    "cache": (StageKind.CACHE,),
}
_OTHER_METHODS = {
    "prefetch",
    "repeat",
    "filter",
    "take",
    "skip",
    "shard",
    "interleave",
    "parallel_interleave",
    "flat_map",
    "with_options",
    "enumerate",
    "concatenate",
    "ignore_errors",
    "assert_cardinality",
    "take_while",
    "prefetch_to_device",
    "map_with_legacy_function",
    "filter_with_legacy_function",
    "unique",
    "snapshot",
    "scan",
    "apply",
    "window",
    "group_by_window",
    "rejection_resample",
}
#: ``ds.apply(tf.data.experimental.X(...))``: the stages X stands for.
_APPLIED = {
    "unbatch": (StageKind.UNBATCH,),
    "map_and_batch": (StageKind.MAP, StageKind.BATCH),
    "shuffle_and_repeat": (StageKind.SHUFFLE,),
    "bucket_by_sequence_length": (StageKind.BATCH,),
    "dense_to_ragged_batch": (StageKind.BATCH,),
    "dense_to_sparse_batch": (StageKind.BATCH,),
    "padded_batch_and_drop_remainder": (StageKind.BATCH,),
    "batch_and_drop_remainder": (StageKind.BATCH,),
}
_DATASET_CLASS = "tensorflow.data.Dataset"
_SOURCE_CLASSES = (
    "tensorflow.data.TFRecordDataset",
    "tensorflow.data.TextLineDataset",
    "tensorflow.data.FixedLengthRecordDataset",
    "tensorflow.data.experimental",
    "tensorflow.compat.v1.data",
    "tensorflow.contrib.data",
)
_TFDS_SOURCES = ("tensorflow_datasets.load", "tensorflow_datasets.as_dataset")
_KERAS_SOURCES = (
    "image_dataset_from_directory",
    "text_dataset_from_directory",
    "audio_dataset_from_directory",
    "timeseries_dataset_from_array",
)


@dataclass(frozen=True, eq=False)
class Stage:
    """One transformation of a dataset (or the call that made it)."""

    call: cst.Call
    kinds: tuple[StageKind, ...]
    scope: Scope
    order: int  # the statement order of the call

    @property
    def method(self) -> str:
        found = method_call(self.call)
        return found[1] if found is not None else dotted(self.call.func) or "?"

    @property
    def is_container(self) -> bool:
        """A source returning several datasets: ``tfds.load`` with no split or a list of them
        (a dict or a tuple of splits), ``..._from_directory(subset="both")``."""
        if not self.is_(StageKind.SOURCE):
            return False
        last = (dotted(self.call.func) or "").rsplit(".", 1)[-1]
        if last == "load":
            split = keyword(self.call, "split")
            return split is None or isinstance(split, (cst.List, cst.Tuple))
        return literal(keyword(self.call, "subset"), None) == "both"

    @property
    def label(self) -> str:
        """How a message names it: ``padded_batch``, ``tfds.load(batch_size=...)``."""
        if self.is_(StageKind.SOURCE):
            suffix = "(batch_size=...)" if self.is_(StageKind.BATCH) else "(...)"
            return f"{dotted(self.call.func) or self.method}{suffix}"
        if self.method == "apply":
            inner = argument(self.call, 0, "transformation_func")
            if isinstance(inner, cst.Call):
                return f"apply({dotted(inner.func) or '...'}(...))"
        return self.method

    @property
    def anchor(self) -> cst.CSTNode:
        """The method name (``shuffle`` in ``ds.batch(8).shuffle(8)``): the line it is on."""
        func = self.call.func
        return func.attr if isinstance(func, cst.Attribute) else func

    def is_(self, kind: StageKind) -> bool:
        return kind in self.kinds

    @property
    def function(self) -> cst.BaseExpression | None:
        """The function a ``map`` applies (``map_and_batch``'s first argument too)."""
        if self.method == "apply":
            inner = argument(self.call, 0, "transformation_func")
            return argument(inner, 0, "map_func") if isinstance(inner, cst.Call) else None
        return argument(self.call, 0, "map_func") if self.is_(StageKind.MAP) else None

    @property
    def reshuffles(self) -> bool:
        """A shuffle that draws a new order every epoch (the default)."""
        given = keyword(self.call, "reshuffle_each_iteration")
        return literal(given, True) is not False

    @property
    def buffer_size(self) -> object:
        """The shuffle buffer as a literal (``"?"`` when not one)."""
        call = self.call
        if self.method == "apply":
            inner = argument(call, 0, "transformation_func")
            call = inner if isinstance(inner, cst.Call) else call
        return literal(argument(call, 0, "buffer_size"), "?")


def swapped(later: Stage, earlier: Stage) -> cst.Call | None:
    """``X.earlier(a).later(b)`` rewritten as ``X.later(b).earlier(a)`` (the fix that moves a
    stage up the chain), for a chain written so; None otherwise."""
    func, earlier_func = later.call.func, earlier.call.func
    if not isinstance(func, cst.Attribute) or func.value is not earlier.call:
        return None
    if not isinstance(earlier_func, cst.Attribute) or later.is_(StageKind.SOURCE):
        return None
    if earlier.is_(StageKind.SOURCE):
        return None
    moved = later.call.with_changes(
        func=func.with_changes(value=earlier_func.value), lpar=(), rpar=()
    )
    return earlier.call.with_changes(
        func=earlier_func.with_changes(value=moved),
        lpar=later.call.lpar,
        rpar=later.call.rpar,
    )


def new_stage(model: TrainingModel, call: cst.Call, scope: Scope, order: int) -> Stage | None:
    """The stage ``call`` is: a dataset method, a dataset source, or None."""
    method = method_call(call)
    if method is None or model.imports.qualify(call.func):
        return _source(model, call, scope, order)
    name = method[1]
    if name == "apply":
        inner = argument(call, 0, "transformation_func")
        applied = _applied(model, inner)
        return Stage(call, applied or (StageKind.OTHER,), scope, order)
    if name in _METHODS:
        return Stage(call, _METHODS[name], scope, order)
    if name in _OTHER_METHODS:
        return Stage(call, (StageKind.OTHER,), scope, order)
    return None


def _applied(
    model: TrainingModel, transformation: cst.BaseExpression | None
) -> tuple[StageKind, ...]:
    if not isinstance(transformation, cst.Call):
        return ()
    qualified = model.imports.qualify(transformation.func) or ""
    if not is_under(qualified, "tensorflow"):
        return ()
    return _APPLIED.get(qualified.rsplit(".", 1)[-1], ())


def _source(model: TrainingModel, call: cst.Call, scope: Scope, order: int) -> Stage | None:
    """A call that makes a dataset (``tfds.load(..., batch_size=32)`` is batched)."""
    qualified = model.imports.qualify(call.func) or ""
    last = qualified.rsplit(".", 1)[-1]
    kinds: tuple[StageKind, ...] = (StageKind.SOURCE,)
    if is_under(qualified, *_TFDS_SOURCES):
        given = keyword(call, "batch_size")
        if given is not None and literal(given, "?") not in (-1, None):
            kinds += (StageKind.BATCH,)
        return Stage(call, kinds, scope, order)
    method = method_call(call)
    if method is not None and method[1] == "as_dataset" and _is_tfds(model, method[0], scope):
        return Stage(call, kinds, scope, order)
    if qualified.startswith(_DATASET_CLASS + ".") and last[:1].islower():
        return Stage(call, kinds, scope, order)
    if is_under(qualified, *_SOURCE_CLASSES) and last.endswith(("Dataset", "_dataset")):
        return Stage(call, kinds, scope, order)
    if is_under(qualified, "tensorflow.keras", "keras") and last in _KERAS_SOURCES:
        return Stage(call, kinds, scope, order)
    return None


def _is_tfds(model: TrainingModel, receiver: cst.BaseExpression, scope: Scope) -> bool:
    """``tfds.builder(...)``, or a name bound to it (one step: the common spelling)."""
    if not isinstance(receiver, cst.Call):
        name = dotted(receiver)
        bindings = model.lookup(name, scope) if name is not None else []
        receiver = bindings[0].value if bindings else None  # type: ignore[assignment]
    if isinstance(receiver, cst.Call):
        return is_under(model.imports.qualify(receiver.func), "tensorflow_datasets")
    return False
