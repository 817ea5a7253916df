"""``tf.data`` pipelines: the ordered stages a dataset went through before each method call.

A pipeline is read from method chains (``ds.map(f).batch(32).shuffle(1000)``) and from the
successive rebinding of one variable (``ds = ds.map(f)`` then ``ds = ds.batch(32)``; a
notebook is one module, so across cells too), followed back to where it starts:

* a *source* known to make a dataset: ``tf.data.Dataset.from_tensor_slices`` / ``list_files``
  / ``range`` / ..., ``tf.data.TFRecordDataset``, ``tfds.load`` (also unpacked splits and
  ``["train"]``), ``builder.as_dataset``, keras' ``image_dataset_from_directory`` and friends;
* a same-file function's return (``make_dataset().shuffle(100)``);
* otherwise an unknown origin (a parameter, an attribute): the stages seen from there on are
  still the pipeline, but it is a tf.data pipeline only in a file that uses TensorFlow and no
  other library whose objects have ``batch``/``shuffle``/``map`` methods.

A binding in the other arm of an ``if`` than the use is skipped (it never runs before it);
one in an ``if`` around it counts (the stage runs on some path). What each stage does is
read by :mod:`.tfdata_stages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.tfdata_random import RandomMaps
from trainlint.model.frameworks.tfdata_stages import Stage, StageKind, new_stage
from trainlint.model.syntax.branches import BranchMap
from trainlint.model.syntax.nodes import dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, Scope


#: Libraries whose objects also have ``map``/``batch``/``shuffle``/``cache`` methods: in a file
#: using one, a pipeline of unknown origin is not taken for tf.data.
_OTHER_PIPELINES = (
    "torch",
    "torchdata",
    "datasets",
    "webdataset",
    "ray",
    "paddle",
    "mindspore",
    "pyspark",
    "dask",
)
__all__ = ["Pipeline", "Stage", "StageKind", "TfDataPipelines"]


@dataclass(frozen=True)
class Pipeline:
    """The stages a dataset went through, first to last (the stage asked about included)."""

    stages: tuple[Stage, ...]
    #: Starts at a known tf.data source (else at a parameter, attribute or unknown call).
    from_source: bool

    def before(self, stage: Stage) -> tuple[Stage, ...]:
        index = next(i for i, s in enumerate(self.stages) if s is stage)
        return self.stages[:index]


_EMPTY = Pipeline((), False)


class TfDataPipelines:
    """``TrainingModel.tfdata``: every tf.data stage of the file and its pipeline."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._pipelines: dict[tuple[int, int | None], Pipeline] = {}
        self._branches: dict[int, BranchMap] = {}
        self._stages: dict[int, Stage | None] = {}

    # ------------------------------------------------------------------ queries
    @cached_property
    def stages(self) -> list[Stage]:
        """Every dataset method call of the file whose pipeline is a tf.data one."""
        found = []
        for site in self.model.calls:
            stage = self._stage(site.node, site.scope, site.statement_order)
            if stage is not None and self.is_tf_data(self.pipeline(stage)):
                found.append(stage)
        return found

    def pipeline(self, stage: Stage) -> Pipeline:
        """The pipeline up to and including ``stage``."""
        return self._of(stage.call, stage.scope, stage.order, 0)

    def pipeline_of(
        self, expr: cst.BaseExpression, scope: Scope, before: int | None = None
    ) -> Pipeline:
        """The pipeline an expression holds (``from_source``: known to be a tf.data dataset)."""
        return self._of(expr, scope, before, 0)

    def downstream(self, stage: Stage) -> list[Stage]:
        """The stages applied to what ``stage`` returns, directly or through a name."""
        return self._consumers.get(id(stage.call), [])

    def later(self, stage: Stage) -> list[Stage]:
        """Every stage applied after ``stage`` along the pipelines that continue from it."""
        found: list[Stage] = []
        frontier = list(self.downstream(stage))
        while frontier and len(found) < 200:
            current = frontier.pop()
            if current not in found:
                found.append(current)
                frontier.extend(self.downstream(current))
        return found

    def open_batch(self, stage: Stage) -> Stage | None:
        """The batching ``stage`` works on: the last batch before it that no ``unbatch()``
        undid since, unless the elements were shuffled before that batch (a shuffle of batches
        on top of an element shuffle reorders them; it does not freeze them), are unbatched
        again right after ``stage`` (a block shuffle) or batched again after it (the earlier
        batch made the examples: windows of a sequence)."""
        earlier = self.pipeline(stage).before(stage)
        batch: Stage | None = None
        for index, current in enumerate(earlier):
            if current.is_(StageKind.UNBATCH):
                batch = None
            if current.is_(StageKind.BATCH):
                batch = current
                if any(_element_shuffle(e) for e in earlier[:index]):
                    return None
                if current.is_(StageKind.SHUFFLE) and current.reshuffles:
                    return None  # ``shuffle_and_repeat`` then batch, in one ``apply``
        if batch is None:
            return None
        for after in self.later(stage):
            if after.is_(StageKind.UNBATCH) and not self._batched_between(stage, after):
                return None
            if after.is_(StageKind.BATCH):
                # batched again after the shuffle: the earlier batch made the examples
                # (``chars.batch(seq_len + 1)`` windows of a text), which the shuffle reorders
                # before the minibatches are formed
                return None
        return batch

    def _batched_between(self, first: Stage, last: Stage) -> bool:
        stages = self.pipeline(last).before(last)
        start = next((i for i, s in enumerate(stages) if s is first), len(stages))
        return any(s.is_(StageKind.BATCH) for s in stages[start + 1 :])

    def random_draw(self, stage: Stage) -> cst.Call | None:
        """For a map stage, the random call its function makes (see :mod:`.tfdata_random`)."""
        if not stage.is_(StageKind.MAP):
            return None
        return self._random.draw_in(stage.function, stage.scope, stage.order)

    def frozen_by_cache(self, cache: Stage) -> tuple[Stage, cst.Call | None] | None:
        """What a ``cache()`` freezes for every later epoch: the first map before it that
        draws at random (with its random call), else a reshuffling shuffle before it when no
        shuffle comes after the cache."""
        earlier = self.pipeline(cache).before(cache)
        if earlier and earlier[-1].method == "take":
            return None  # ``take(1).cache().repeat()``: a fixed sample on purpose
        for stage in earlier:
            draw = self.random_draw(stage)
            if draw is not None:
                return stage, draw
        shuffles = [s for s in earlier if _element_shuffle(s)]
        if not shuffles or any(_element_shuffle(s) for s in self.later(cache)):
            return None
        return shuffles[-1], None

    @cached_property
    def _random(self) -> RandomMaps:
        return RandomMaps(self.model)

    def is_tf_data(self, pipeline: Pipeline) -> bool:
        if pipeline.from_source:
            return True
        imports = self.model.imports
        if not pipeline.stages or not imports.imports("tensorflow"):
            return False
        return not any(imports.imports(other) for other in _OTHER_PIPELINES)

    # ------------------------------------------------------------------ building
    @cached_property
    def _consumers(self) -> dict[int, list[Stage]]:
        found: dict[int, list[Stage]] = {}
        for stage in self.stages:
            earlier = self.pipeline(stage).before(stage)
            if earlier:
                found.setdefault(id(earlier[-1].call), []).append(stage)
        return found

    def _stage(self, call: cst.Call, scope: Scope, order: int) -> Stage | None:
        """The stage ``call`` is (one object per call: pipelines are compared by identity)."""
        key = id(call)
        if key not in self._stages:
            self._stages[key] = new_stage(self.model, call, scope, order)
        return self._stages[key]

    # ------------------------------------------------------------------ resolution
    def _of(
        self, expr: cst.BaseExpression, scope: Scope, before: int | None, depth: int
    ) -> Pipeline:
        key = (id(expr), before)
        if key not in self._pipelines:
            self._pipelines[key] = _EMPTY  # recursion guard
            self._pipelines[key] = self._resolve(expr, scope, before, depth)
        return self._pipelines[key]

    def _resolve(
        self, expr: cst.BaseExpression, scope: Scope, before: int | None, depth: int
    ) -> Pipeline:
        if depth > 40:
            return _EMPTY
        if isinstance(expr, cst.Call):
            order = before if before is not None else 0
            stage = self._stage(expr, scope, order)
            if stage is not None and stage.is_(StageKind.SOURCE):
                # ``tfds.load("mnist")`` is a dict of splits: a dataset once indexed
                return Pipeline((stage,), not stage.is_container)
            if stage is not None:
                receiver = method_call(expr)[0]  # type: ignore[index]
                upstream = self._of(receiver, scope, before, depth + 1)
                return Pipeline((*upstream.stages, stage), upstream.from_source)
            return self._returned(expr, scope, depth)
        if isinstance(expr, cst.Subscript):  # ``tfds.load("mnist")["train"]``
            inner = self._of(expr.value, scope, before, depth + 1)
            return _split_of(inner)
        name = dotted(expr)
        if name is None:
            return _EMPTY
        binding = self._binding(name, scope, before)
        if binding is None:
            return self._passed(name, scope, depth)
        if binding.augmented or binding.from_iteration:
            return _EMPTY
        owner = binding.scope or scope
        value = binding.value
        if binding.unpack_index is not None and isinstance(value, (cst.Tuple, cst.List)):
            # ``train, test = ds["train"], ds["test"]``: the element at that index
            elements = value.elements
            if binding.unpack_index >= len(elements):
                return _EMPTY
            element = elements[binding.unpack_index].value
            return self._of(element, owner, binding.order, depth + 1)
        unpacked = binding.unpacked_from if binding.value is None else binding.value
        if unpacked is not None and (binding.unpack_index is not None or binding.nested_path):
            # ``train, test = tfds.load(..., split=[...])``, ``(train, test), info = ...``
            found = self._of(unpacked, owner, binding.order, depth + 1)
            return _split_of(found)
        if binding.value is None:
            return _EMPTY
        if dotted(binding.value) == name:
            return _EMPTY
        return self._of(binding.value, owner, binding.order, depth + 1)

    def _passed(self, name: str, scope: Scope, depth: int) -> Pipeline:
        """A parameter: the pipeline its one same-file caller passes (several callers: the
        origin is unknown, as for a function nobody in the file calls)."""
        if name not in scope.params:
            return _EMPTY
        passed = self.model.tensors.callers.arguments(name, scope)
        if len(passed) != 1:
            return _EMPTY
        argument, caller, order = passed[0]
        return self._of(argument, caller, order, depth + 1)

    def _returned(self, call: cst.Call, scope: Scope, depth: int) -> Pipeline:
        """What a same-file function returns (the first return that is a pipeline)."""
        callee = self.model.callee(call, scope, external=False)
        if callee is None:
            return _EMPTY
        for returned, order in zip(callee.returns, callee.return_orders, strict=False):
            found = self._of(returned, callee, order, depth + 1)
            if found.stages:
                return found
        return _EMPTY

    def _binding(self, name: str, scope: Scope, before: int | None) -> Binding | None:
        """The latest binding of ``name`` before ``before`` that can run before the use."""
        for binding in self.model.lookup(name, scope, before):
            if before is not None and binding.order >= before:
                continue
            owner = binding.scope or scope
            if before is not None and owner is scope and self._other_arm(binding, before):
                continue
            return binding
        return None

    def _other_arm(self, binding: Binding, use: int) -> bool:
        owner = binding.scope
        if owner is None:
            return False
        key = id(owner.node)
        if key not in self._branches:
            body = owner.node.body if isinstance(owner.node, cst.FunctionDef) else owner.node
            self._branches[key] = BranchMap(body, self.model.order_of)
        return self._branches[key].in_other_arm(binding.statement, use)


def _element_shuffle(stage: Stage) -> bool:
    return stage.is_(StageKind.SHUFFLE) and stage.reshuffles and stage.buffer_size != 1


def _split_of(container: Pipeline) -> Pipeline:
    """One split of what a source returned (``tfds.load(...)["train"]``, unpacked splits)."""
    if len(container.stages) == 1 and container.stages[0].is_(StageKind.SOURCE):
        return Pipeline(container.stages, True)
    return _EMPTY
