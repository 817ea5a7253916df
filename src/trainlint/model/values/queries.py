"""ValueQueries: the part of :class:`trainlint.model.TrainingModel` that answers what a value is:
class kinds, roles, torch-module and tensor evidence, the tensor lattice, losses and
activations, module structure.

A mixin of the one model object: its methods read the core's parse results (scopes,
bindings, calls) through ``self``; see :mod:`trainlint.model` for the public queries.
"""

from __future__ import annotations

from functools import cached_property

import libcst as cst

from trainlint.model.syntax.scopes import (
    ClassInfo,
    Scope,
)
from trainlint.model.values.activations import SoftmaxApplication, softmax_applications
from trainlint.model.values.aliases import bound_method
from trainlint.model.values.draws import random_draw
from trainlint.model.values.evidence import Evidence
from trainlint.model.values.losses import LossCall, loss_calls
from trainlint.model.values.mode_layers import ModuleStructure
from trainlint.model.values.modules import is_known_module
from trainlint.model.values.modules import names_used_as_modules as _names_used_as_modules
from trainlint.model.values.resolve import ValueResolver
from trainlint.model.values.roles import Role, Value
from trainlint.model.values.state_dicts import copied_from_module, matched_to_own_keys
from trainlint.model.values.submodules import UnregisteredAttribute, unregistered_attributes
from trainlint.model.values.tensors import TensorAnalysis, TensorKind
from trainlint.model.values.types import ClassKind, ClassKinds

_LIGHTNING_BASES = ("LightningModule",)
_HF_TRAINER_BASES = ("Trainer", "Seq2SeqTrainer")


class ValueQueries:
    @cached_property
    def class_kinds(self) -> ClassKinds:
        return ClassKinds(self)

    def class_kind(self, info: ClassInfo) -> ClassKind:
        """What a same-file class is, from its bases resolved transitively (see ``.types``)."""
        return self.class_kinds.kind_of(info)

    def is_torch_module_class(self, info: ClassInfo) -> bool:
        """A class known to derive from ``torch.nn.Module`` (Lightning modules included)."""
        return self.class_kind(info).is_torch_module

    def is_module_class(self, info: ClassInfo) -> bool:
        """A model class of any framework; for bases trainlint cannot see, one named so."""
        kind = self.class_kind(info)
        if kind is not ClassKind.UNKNOWN:
            return kind.is_torch_module or kind is ClassKind.KERAS_MODEL
        return any(
            b.endswith(("Module", "Model", "PreTrainedModel", "LightningModule"))
            for b in self.class_bases(info)
        )

    def is_lightning_class(self, info: ClassInfo | None) -> bool:
        return info is not None and any(
            b.rsplit(".", 1)[-1] in _LIGHTNING_BASES for b in self.class_bases(info)
        )

    def is_hf_trainer_class(self, info: ClassInfo | None) -> bool:
        if info is None:
            return False
        return any(
            b.rsplit(".", 1)[-1] in _HF_TRAINER_BASES
            and (b.startswith("transformers") or "." not in b)
            for b in self.class_bases(info)
        )

    def uses_manual_optimization(self, info: ClassInfo) -> bool:
        for bindings in (info.attributes.get("automatic_optimization", []),):
            for binding in bindings:
                if isinstance(binding.value, cst.Name) and binding.value.value == "False":
                    return True
        value = info.class_assignments.get("automatic_optimization")
        return isinstance(value, cst.Name) and value.value == "False"

    def is_framework_managed(self, scope: Scope) -> bool:
        """Code whose optimization loop a framework runs (Lightning, HF Trainer)."""
        cls = scope.cls
        if self.is_hf_trainer_class(cls):
            return True
        if self.is_lightning_class(cls):
            return not self.uses_manual_optimization(cls)  # type: ignore[arg-type]
        return False

    @cached_property
    def model_classes(self) -> dict[str, ClassInfo]:
        return {n: c for n, c in self.classes.items() if self.is_module_class(c)}

    def role_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Role | None:
        value = self.value_of(expr, scope)
        return value.role if value is not None else None

    def value_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Value | None:
        """What ``expr`` holds in ``scope``: its role, and the call that made it."""
        return self.values.value_of(expr, scope)

    def value_of_call(self, call: cst.Call, scope: Scope, index: int | None) -> Value | None:
        """What ``call`` returns (result slot ``index`` for tuple-returning wrappers)."""
        return self.values.value_of_call(call, scope, index)

    def bound_method(self, call: cst.Call, scope: Scope) -> tuple[cst.BaseExpression, str] | None:
        """``(receiver, method)`` for ``call``, also through ``step = optimizer.step``."""
        return bound_method(self, call, scope)

    def is_known_module(self, expr: cst.BaseExpression, scope: Scope) -> bool:
        """Whether ``expr`` is known (not guessed from its name) to be a torch module."""
        return is_known_module(self, expr, scope)

    @cached_property
    def evidence(self) -> Evidence:
        """``is_tensor(expr, scope, before)``: known, not named (see ``.values.evidence``)."""
        return Evidence(self)

    @cached_property
    def unregistered_attributes(self) -> list[UnregisteredAttribute]:
        """Modules/grad tensors a torch module holds unregistered (see ``.submodules``)."""
        return unregistered_attributes(self)

    @cached_property
    def values(self) -> ValueResolver:
        return ValueResolver(self)

    @cached_property
    def tensors(self) -> TensorAnalysis:
        """What tensors hold: logits, probabilities, ... (see :mod:`.tensors`)."""
        return TensorAnalysis(self)

    def tensor_kind(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> TensorKind:
        return self.tensors.kind_of(expr, scope, before)

    def names_used_as_modules(self, scope: Scope) -> frozenset[str]:
        """Names ``scope`` uses as only a module can be used (``m.load_state_dict(...)``,
        ``m.eval()``), once per scope (see :func:`.values.modules.names_used_as_modules`)."""
        cache = self.__dict__.setdefault("_module_names", {})
        key = id(scope.node)
        if key not in cache:
            cache[key] = _names_used_as_modules(self, scope)  # type: ignore[arg-type]
        return cache[key]

    def random_draw(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> bool:
        """Whether ``expr`` holds a random draw (``torch.randn``...), by where it was made and
        never by its name (see :mod:`.values.draws`)."""
        return random_draw(self, expr, scope, before)  # type: ignore[arg-type]

    @cached_property
    def loss_calls(self) -> list[LossCall]:
        """Every loss call, its family and prediction argument (see :mod:`.losses`)."""
        return loss_calls(self)

    @cached_property
    def softmax_applications(self) -> list[SoftmaxApplication]:
        """Every softmax/log-softmax applied or stacked in the file (see :mod:`.activations`)."""
        return list(softmax_applications(self))

    @cached_property
    def module_structure(self) -> ModuleStructure:
        """Which models hold mode-dependent layers (see :mod:`.values.modules`)."""
        return ModuleStructure(self)

    def matched_to_own_keys(
        self, state: cst.BaseExpression | None, receiver: cst.BaseExpression, scope: Scope
    ) -> bool:
        """Whether ``state`` keeps only keys of ``receiver``'s own ``state_dict()``."""
        return matched_to_own_keys(self, state, receiver, scope)

    def copied_from_module(
        self, state: cst.BaseExpression | None, receiver: cst.BaseExpression, scope: Scope
    ) -> bool:
        """``state`` is another live module's ``state_dict()`` (see ``.values.state_dicts``)."""
        return copied_from_module(self, state, receiver, scope)  # type: ignore[arg-type]
