"""What a same-file class IS: an ``nn.Module`` subclass, a keras Model/Layer, a plain class...

A class's kind comes from its bases, resolved transitively: through same-file classes, through
module-level aliases (``Base = nn.Module``), and through imports to qualified library names.
A class whose bases are all plain (``object``, ``ABC``, ``Generic``, other plain same-file
classes) is plain, whatever its methods are called: a hand-written ``class MLP:`` with its own
``forward`` and ``backward`` is not a torch module. Bases imported from code trainlint cannot
see (the project's other files, an unknown library) leave the kind unknown, and callers fall
back to weaker evidence for those.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import dotted

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo


class ClassKind(enum.Enum):
    TORCH_MODULE = "torch module"
    LIGHTNING_MODULE = "lightning module"  # a torch module whose loop Lightning runs
    KERAS_MODEL = "keras model"
    KERAS_LAYER = "keras layer"
    OPTIMIZER = "optimizer"  # a ``torch.optim.Optimizer`` subclass
    SCHEDULER = "scheduler"
    DATASET = "dataset"
    PROTOCOL = "protocol"
    DATACLASS = "dataclass"
    PLAIN = "plain class"
    LIBRARY = "library class"  # a known library base that is none of the above
    UNKNOWN = "unknown"  # a base trainlint cannot see: the project's other files, star imports

    @property
    def is_torch_module(self) -> bool:
        return self in (ClassKind.TORCH_MODULE, ClassKind.LIGHTNING_MODULE)


#: Bases that say nothing about what a class is for.
_PLAIN_BASES = {
    "object",
    "abc.ABC",
    "typing.Generic",
    "typing.NamedTuple",
    "typing.TypedDict",
    "enum.Enum",
    "enum.IntEnum",
    "Exception",
    "dict",
    "list",
    "tuple",
    "str",
    "int",
    "float",
    "ABC",
    "Generic",
}
_PROTOCOLS = {"typing.Protocol", "typing_extensions.Protocol", "Protocol"}
_DATACLASS_DECORATORS = {"dataclasses.dataclass", "attr.s", "attr.define", "attrs.define"}
#: Libraries whose classes are never torch modules (pydantic's ``BaseModel``, flax's and mlx's
#: ``Module``).
_FOREIGN = (
    "pydantic", "flax", "jax", "sklearn", "haiku", "equinox", "mxnet", "paddle", "gym", "mlx",
    "tinygrad",
)  # fmt: skip
_TORCH_NON_MODULES = ("torch.nn.Parameter", "torch.nn.parameter", "torch.nn.functional")


def library_kind(qualified: str) -> ClassKind:
    """The kind of a class derived from the library class ``qualified``."""
    last = qualified.rsplit(".", 1)[-1]
    if qualified in _PLAIN_BASES:
        return ClassKind.PLAIN
    if qualified in _PROTOCOLS:
        return ClassKind.PROTOCOL
    if last == "LightningModule" and is_under(qualified, "lightning", "lightning.pytorch"):
        return ClassKind.LIGHTNING_MODULE
    if is_under(qualified, "torch.optim.lr_scheduler") or last in ("_LRScheduler", "LRScheduler"):
        return ClassKind.SCHEDULER if is_under(qualified, "torch") else ClassKind.UNKNOWN
    if is_under(qualified, "torch.optim") and last[:1].isupper():
        return ClassKind.OPTIMIZER
    if is_under(qualified, "torch.utils.data") and "Dataset" in last:
        return ClassKind.DATASET
    if is_under(qualified, "torch.nn") and last[:1].isupper():
        if is_under(qualified, *_TORCH_NON_MODULES):
            return ClassKind.LIBRARY
        return ClassKind.TORCH_MODULE
    if is_under(qualified, "tensorflow.keras.layers") or qualified == "tensorflow.Module":
        return ClassKind.KERAS_LAYER
    if qualified in (
        "tensorflow.keras.Model",
        "tensorflow.keras.models.Model",
        "tensorflow.keras.Sequential",
        "tensorflow.keras.models.Sequential",
    ):
        return ClassKind.KERAS_MODEL
    if is_under(qualified, "transformers") and last.endswith(("Model", "PreTrainedModel")):
        if last.startswith("TF"):
            return ClassKind.KERAS_MODEL
        return ClassKind.UNKNOWN if last.startswith("Flax") else ClassKind.TORCH_MODULE
    if is_under(qualified, "torch", "tensorflow", *_FOREIGN):
        return ClassKind.LIBRARY  # ``torch.autograd.Function``, ``pydantic.BaseModel``
    return ClassKind.UNKNOWN


#: When bases disagree, the most specific kind wins.
_PRECEDENCE = (
    ClassKind.LIGHTNING_MODULE,
    ClassKind.TORCH_MODULE,
    ClassKind.KERAS_MODEL,
    ClassKind.KERAS_LAYER,
    ClassKind.OPTIMIZER,
    ClassKind.SCHEDULER,
    ClassKind.DATASET,
    ClassKind.PROTOCOL,
    ClassKind.UNKNOWN,
    ClassKind.LIBRARY,
)


class ClassKinds:
    """Kinds of the classes of one file, computed on demand and cached."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._kinds: dict[int, ClassKind] = {}

    def kind_of(self, info: ClassInfo) -> ClassKind:
        key = id(info.node)
        if key not in self._kinds:
            self._kinds[key] = ClassKind.UNKNOWN  # a cycle of bases resolves to unknown
            self._kinds[key] = self._compute(info)
        return self._kinds[key]

    def _compute(self, info: ClassInfo) -> ClassKind:
        kinds = {self.base_kind(base.value) for base in info.node.bases}
        for kind in _PRECEDENCE:
            if kind in kinds:
                return kind
        if any(self._is_dataclass(d.decorator) for d in info.node.decorators):
            return ClassKind.DATACLASS
        return ClassKind.PLAIN

    def base_kind(self, base: cst.BaseExpression, depth: int = 0) -> ClassKind:
        """The kind a class deriving from ``base`` (as written in a class header) gets."""
        if isinstance(base, cst.Subscript):  # ``Generic[T]``, ``Protocol[T]``
            base = base.value
        name = dotted(base)
        if name is None or depth > 5:
            return ClassKind.UNKNOWN
        qualified = self.model.imports.qualify_dotted(name)
        if qualified is not None:
            return library_kind(qualified)
        local = self.model.classes.get(name)
        if local is not None:
            return self.kind_of(local)
        alias = self._alias(name)
        if alias is not None:
            return self.base_kind(alias, depth + 1)
        return library_kind(name) if name in _PLAIN_BASES | _PROTOCOLS else ClassKind.UNKNOWN

    def _alias(self, name: str) -> cst.BaseExpression | None:
        """``Base = nn.Module`` at module level (the only binding of ``Base``)."""
        bindings = self.model.module_scope.bindings.get(name, [])
        values = {dotted(b.value) for b in bindings if b.unpack_index is None}
        if len(bindings) == 1 and None not in values:
            return bindings[0].value
        return None

    def _is_dataclass(self, decorator: cst.BaseExpression) -> bool:
        if isinstance(decorator, cst.Call):
            decorator = decorator.func
        name = dotted(decorator) or ""
        qualified = self.model.imports.qualify_dotted(name) or name
        return qualified in _DATACLASS_DECORATORS or name == "dataclass"
