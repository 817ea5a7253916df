"""FrameworkQueries: the part of :class:`trainlint.model.TrainingModel` that answers what the
frameworks' own structures hold: torch data pipelines, keras models and their compile(),
GradientTape blocks, tf.data pipelines, tf.distribute.

A mixin of the one model object: its methods read the core's parse results (scopes,
bindings, calls) through ``self``; see :mod:`trainlint.model` for the public queries.
"""

from __future__ import annotations

from functools import cached_property

from trainlint.model.frameworks.data import DataPipelines
from trainlint.model.frameworks.distribute import Distribution
from trainlint.model.frameworks.keras_models import KerasModels
from trainlint.model.frameworks.keras_modes import KerasModes
from trainlint.model.frameworks.keras_trainable import TrainableChanges
from trainlint.model.frameworks.replica_losses import ReplicaLosses
from trainlint.model.frameworks.tape_paths import TapePaths
from trainlint.model.frameworks.tapes import Tapes
from trainlint.model.frameworks.tfdata import TfDataPipelines


class FrameworkQueries:
    @cached_property
    def data(self) -> DataPipelines:
        """Dataset classes, DataLoader calls and what they read (see :mod:`.frameworks.data`)."""
        return DataPipelines(self)

    @cached_property
    def keras(self) -> KerasModels:
        """Keras model structure: layers, heads and their activations (see :mod:`.frameworks`)."""
        return KerasModels(self)

    @cached_property
    def keras_modes(self) -> KerasModes:
        """Keras models and layers holding Dropout/BatchNorm (:mod:`.frameworks.keras_modes`)."""
        return KerasModes(self)

    @cached_property
    def tapes(self) -> Tapes:
        """``tf.GradientTape`` blocks and their gradients (see :mod:`.frameworks.tapes`)."""
        return Tapes(self)

    @cached_property
    def trainable_changes(self) -> TrainableChanges:
        """``X.trainable = ...`` and the ones no later compile() makes visit fit()."""
        return TrainableChanges(self)

    @cached_property
    def tfdata(self) -> TfDataPipelines:
        """``tf.data`` pipelines: stages, their order, sources (see :mod:`.frameworks.tfdata`)."""
        return TfDataPipelines(self)

    @cached_property
    def tape_paths(self) -> TapePaths:
        """Gradient targets computed outside their tape or cut from it (``.tape_paths``)."""
        return TapePaths(self)

    @cached_property
    def distribution(self) -> Distribution:
        """``tf.distribute`` strategies and their replica steps (``.frameworks.distribute``)."""
        return Distribution(self)

    @cached_property
    def replica_losses(self) -> ReplicaLosses:
        """Per-replica means on a replica step's loss (``.frameworks.replica_losses``)."""
        return ReplicaLosses(self)
