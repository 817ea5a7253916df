"""``model.compile(...)`` and ``model.fit(...)``: what loss and metrics a keras model trains with.

A loss is read whatever its spelling: a string (``"binary_crossentropy"``, ``"bce"``), a loss
class (``keras.losses.BinaryCrossentropy(from_logits=True)``, also positional
``SparseCategoricalCrossentropy(True)``), a loss function (``keras.losses.binary_crossentropy``),
a name bound to one of these, or a dict / list of them for several outputs. ``from_logits`` is
``True``/``False`` when it is a literal or the default, ``None`` when it cannot be told.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_layers import keras_name
from trainlint.model.syntax.nodes import argument, dotted, keyword, literal, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.frameworks.keras_models import KerasModel
    from trainlint.model.syntax.scopes import CallSite, Scope


class LossKind(enum.Enum):
    BINARY = "binary cross-entropy"
    CATEGORICAL = "categorical cross-entropy"
    SPARSE = "sparse categorical cross-entropy"
    OTHER = "other"


_LOSS_NAMES = {
    "binary_crossentropy": LossKind.BINARY,
    "bce": LossKind.BINARY,
    "BinaryCrossentropy": LossKind.BINARY,
    "binary_focal_crossentropy": LossKind.BINARY,
    "BinaryFocalCrossentropy": LossKind.BINARY,
    "categorical_crossentropy": LossKind.CATEGORICAL,
    "CategoricalCrossentropy": LossKind.CATEGORICAL,
    "categorical_focal_crossentropy": LossKind.CATEGORICAL,
    "CategoricalFocalCrossentropy": LossKind.CATEGORICAL,
    "sparse_categorical_crossentropy": LossKind.SPARSE,
    "SparseCategoricalCrossentropy": LossKind.SPARSE,
}
#: Loss classes whose first positional parameter is ``from_logits``.
_FROM_LOGITS_FIRST = {
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
}
_BINARY_ACCURACY = {"accuracy", "acc", "binary_accuracy", "BinaryAccuracy"}


@dataclass(frozen=True)
class LossSpec:
    node: cst.BaseExpression  # the loss as written in compile() (the anchor)
    kind: LossKind
    from_logits: bool | None
    label: str  # how the code names it: "'binary_crossentropy'", "BinaryCrossentropy()"
    key: str | int | None = None  # output name (dict) or index (list); None for all outputs


@dataclass(frozen=True)
class MetricSpec:
    node: cst.BaseExpression
    label: str
    #: Thresholds predictions at 0.5 (``"accuracy"`` with a binary loss, ``BinaryAccuracy()``).
    binary_threshold_default: bool
    key: str | int | None = None


@dataclass(frozen=True)
class CompileCall:
    site: CallSite
    receiver: cst.BaseExpression
    model: KerasModel | None
    losses: tuple[LossSpec, ...]
    metrics: tuple[MetricSpec, ...]

    @property
    def node(self) -> cst.Call:
        return self.site.node


def _resolve(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, before: int
) -> tuple[cst.BaseExpression, Scope]:
    """Follow a name to the value it was bound to (a loss constructor, a list, ...)."""
    for _ in range(4):
        name = dotted(expr)
        if name is None or model.imports.qualify_dotted(name):
            return expr, scope
        bindings = [b for b in model.lookup(name, scope, before) if b.order < before]
        if not bindings or bindings[0].value is None or bindings[0].unpack_index is not None:
            return expr, scope
        if bindings[0].augmented:
            return expr, scope
        expr, scope, before = bindings[0].value, bindings[0].scope or scope, bindings[0].order
    return expr, scope


def loss_spec(
    model: TrainingModel, written: cst.BaseExpression, scope: Scope, before: int, key=None
) -> LossSpec | None:
    """What the loss ``written`` is (None for custom functions and unknown objects)."""
    expr, scope = _resolve(model, written, scope, before)
    text = model.text_of(written)
    value = literal(expr, None)
    if isinstance(value, str):
        kind = _LOSS_NAMES.get(value, LossKind.OTHER)
        return LossSpec(written, kind, False, text, key)
    if isinstance(expr, cst.Call):
        qualified = keras_name(model.imports, expr.func)
        last = qualified.rsplit(".", 1)[-1]
        if not qualified.startswith("tensorflow.keras.losses.") or not last[:1].isupper():
            return None
        kind = _LOSS_NAMES.get(last, LossKind.OTHER)
        given = keyword(expr, "from_logits")
        if given is None and last in _FROM_LOGITS_FIRST:
            given = argument(expr, 0, "from_logits")
        from_logits = False if given is None else literal(given, "?")
        return LossSpec(
            written, kind, from_logits if isinstance(from_logits, bool) else None, text, key
        )
    qualified = keras_name(model.imports, expr)
    if qualified.startswith("tensorflow.keras.losses."):
        last = qualified.rsplit(".", 1)[-1]
        kind = _LOSS_NAMES.get(last, LossKind.OTHER)
        return LossSpec(written, kind, False if last[:1].islower() else None, text, key)
    return None


def _losses(
    model: TrainingModel, given: cst.BaseExpression | None, scope: Scope, before: int
) -> tuple[LossSpec, ...]:
    if given is None:
        return ()
    expr, scope = _resolve(model, given, scope, before)
    found: list[LossSpec | None] = []
    if isinstance(expr, cst.Dict):
        for element in expr.elements:
            if isinstance(element, cst.DictElement):
                name = literal(element.key, None)
                if isinstance(name, str):
                    found.append(loss_spec(model, element.value, scope, before, name))
    elif isinstance(expr, (cst.List, cst.Tuple)):
        for index, element in enumerate(expr.elements):
            found.append(loss_spec(model, element.value, scope, before, index))
    else:
        found.append(loss_spec(model, given, scope, before))
    return tuple(spec for spec in found if spec is not None)


def metric_spec(
    model: TrainingModel, written: cst.BaseExpression, scope: Scope, before: int, key=None
) -> MetricSpec | None:
    expr, scope = _resolve(model, written, scope, before)
    text = model.text_of(written)
    value = literal(expr, None)
    if isinstance(value, str):
        return MetricSpec(written, text, value in _BINARY_ACCURACY, key)
    if isinstance(expr, cst.Call):
        qualified = keras_name(model.imports, expr.func)
        if qualified.rsplit(".", 1)[-1] == "BinaryAccuracy" and "metrics" in qualified:
            threshold = literal(argument(expr, 2, "threshold"), "?")
            if argument(expr, 2, "threshold") is None:
                threshold = 0.5
            return MetricSpec(written, text, threshold == 0.5, key)
        return MetricSpec(written, text, False, key)
    return None


def _metrics(
    model: TrainingModel, given: cst.BaseExpression | None, scope: Scope, before: int
) -> tuple[MetricSpec, ...]:
    if given is None:
        return ()
    expr, scope = _resolve(model, given, scope, before)
    found: list[MetricSpec | None] = []
    if isinstance(expr, (cst.List, cst.Tuple)):
        found = [metric_spec(model, e.value, scope, before) for e in expr.elements]
    elif isinstance(expr, cst.Dict):
        for element in expr.elements:
            if not isinstance(element, cst.DictElement):
                continue
            name = literal(element.key, None)
            inner, _ = _resolve(model, element.value, scope, before)
            items = inner.elements if isinstance(inner, (cst.List, cst.Tuple)) else ()
            values = [e.value for e in items] or [element.value]
            found += [metric_spec(model, v, scope, before, name) for v in values]
    else:
        found = [metric_spec(model, expr, scope, before)]
    return tuple(spec for spec in found if spec is not None)


def compile_calls(model: TrainingModel) -> list[CompileCall]:
    """Every ``x.compile(...)`` whose receiver is a keras model or is given a keras loss."""
    found = []
    for site in model.calls:
        method = method_call(site.node)
        if method is None or method[1] != "compile":
            continue
        receiver, call = method[0], site.node
        if dotted(receiver) in ("re", "torch", "regex") or model.imports.qualify(receiver):
            continue
        keras_model = model.keras.model_of(receiver, site.scope, site.statement_order)
        before = site.statement_order
        losses = _losses(model, argument(call, 1, "loss"), site.scope, before)
        if keras_model is None and not losses:
            continue
        metrics = _metrics(model, argument(call, 2, "metrics"), site.scope, before)
        found.append(CompileCall(site, receiver, keras_model, losses, metrics))
    return found
