"""Loss calls and what each expects as its prediction input.

``loss_calls(model)`` finds every call of a loss (criterion objects, functional forms, keras
losses) and says which family it is and which argument is the prediction. ``hand_written_bce``
finds ``y*log(p) + (1-y)*log(1-p)`` written out by hand, in any arrangement.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_layers import canonical_keras
from trainlint.model.syntax.nodes import descendants, dotted, keyword, literal, positional
from trainlint.model.values.kinds import log_argument
from trainlint.model.values.roles import Role, Value

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import CallSite, Scope


class LossFamily(enum.Enum):
    BINARY_CROSS_ENTROPY = "binary cross-entropy on probabilities"
    BCE_WITH_LOGITS = "binary cross-entropy on logits"
    CROSS_ENTROPY = "cross-entropy on logits"
    NLL = "negative log-likelihood on log-probabilities"
    CATEGORICAL_ON_PROBABILITIES = "categorical cross-entropy on probabilities"


@dataclass(frozen=True)
class LossCall:
    site: CallSite
    family: LossFamily
    prediction: cst.BaseExpression | None
    label: str  # how the code names the loss, for messages: "nn.BCELoss", "F.nll_loss", ...
    #: torch: (input, target); keras: (y_true, y_pred).
    keras: bool = False
    #: A TensorFlow loss (keras or ``tf.nn``/TF1 ``tf.losses``), not a torch one.
    tensorflow: bool = False


_TORCH_CRITERIA = {
    "BCELoss": LossFamily.BINARY_CROSS_ENTROPY,
    "BCEWithLogitsLoss": LossFamily.BCE_WITH_LOGITS,
    "CrossEntropyLoss": LossFamily.CROSS_ENTROPY,
    "NLLLoss": LossFamily.NLL,
}
_TORCH_FUNCTIONS = {
    "torch.nn.functional.binary_cross_entropy": LossFamily.BINARY_CROSS_ENTROPY,
    "torch.nn.functional.binary_cross_entropy_with_logits": LossFamily.BCE_WITH_LOGITS,
    "torch.nn.functional.cross_entropy": LossFamily.CROSS_ENTROPY,
    "torch.nn.functional.nll_loss": LossFamily.NLL,
    "torchvision.ops.sigmoid_focal_loss": LossFamily.BCE_WITH_LOGITS,
    "torchvision.ops.focal_loss.sigmoid_focal_loss": LossFamily.BCE_WITH_LOGITS,
}
#: ``tf.nn`` losses on logits and TF1's ``tf.losses`` (``tf.compat.v1.losses``; these names
#: exist only there, ``tf.losses`` of TF 2 is keras's and has none of them): the family, and
#: the keyword and position of the prediction. ``tf.nn``'s keep ``labels`` first (TF 1 puts a
#: ``_sentinel`` before it, so its calls are keyword-only).
_TF_FUNCTIONS = {
    "tensorflow.nn.softmax_cross_entropy_with_logits": (LossFamily.CROSS_ENTROPY, "logits", 1),
    "tensorflow.nn.softmax_cross_entropy_with_logits_v2": (
        LossFamily.CROSS_ENTROPY,
        "logits",
        1,
    ),
    "tensorflow.nn.sparse_softmax_cross_entropy_with_logits": (
        LossFamily.CROSS_ENTROPY,
        "logits",
        1,
    ),
    "tensorflow.nn.sigmoid_cross_entropy_with_logits": (LossFamily.BCE_WITH_LOGITS, "logits", 1),
    "tensorflow.nn.weighted_cross_entropy_with_logits": (LossFamily.BCE_WITH_LOGITS, "logits", 1),
    "tensorflow.losses.softmax_cross_entropy": (LossFamily.CROSS_ENTROPY, "logits", 1),
    "tensorflow.losses.sparse_softmax_cross_entropy": (LossFamily.CROSS_ENTROPY, "logits", 1),
    "tensorflow.losses.sigmoid_cross_entropy": (LossFamily.BCE_WITH_LOGITS, "logits", 1),
    "tensorflow.losses.log_loss": (LossFamily.BINARY_CROSS_ENTROPY, "predictions", 1),
}
_KERAS_BINARY = {"binary_crossentropy", "BinaryCrossentropy", "BinaryFocalCrossentropy"}
_KERAS_CATEGORICAL = {
    "categorical_crossentropy",
    "CategoricalCrossentropy",
    "sparse_categorical_crossentropy",
    "SparseCategoricalCrossentropy",
}


#: keras loss classes whose first positional parameter is ``from_logits``.
_FROM_LOGITS_FIRST = {
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy",
}


def _keras_family(name: str, from_logits: object) -> LossFamily | None:
    if name in _KERAS_BINARY:
        return (
            LossFamily.BCE_WITH_LOGITS
            if from_logits is True
            else (LossFamily.BINARY_CROSS_ENTROPY if from_logits is False else None)
        )
    if name in _KERAS_CATEGORICAL:
        return (
            LossFamily.CROSS_ENTROPY
            if from_logits is True
            else (LossFamily.CATEGORICAL_ON_PROBABILITIES if from_logits is False else None)
        )
    return None


def classify_loss_call(model: TrainingModel, site: CallSite) -> LossCall | None:
    call = site.node
    tensorflow = _TF_FUNCTIONS.get(site.qualified or "")
    if tensorflow is not None:
        family, name, position = tensorflow
        prediction = keyword(call, name) or positional(call, position)
        label = (site.qualified or "").replace("tensorflow.", "tf.", 1)
        return LossCall(site, family, prediction, label, tensorflow=True)
    qualified = canonical_keras(site.qualified or "")  # ``tf.losses`` is ``tf.keras.losses``
    last = qualified.rsplit(".", 1)[-1]
    if qualified in _TORCH_FUNCTIONS:
        prediction = keyword(call, "input") or keyword(call, "inputs") or positional(call, 0)
        label = last if last == "sigmoid_focal_loss" else f"F.{last}"
        return LossCall(site, _TORCH_FUNCTIONS[qualified], prediction, label)
    if qualified.startswith("tensorflow.keras") and last in _KERAS_BINARY | _KERAS_CATEGORICAL:
        if last[:1].islower():  # functional form: (y_true, y_pred, from_logits=False)
            from_logits = literal(keyword(call, "from_logits"), "?") if call.args else "?"
            if keyword(call, "from_logits") is None:
                from_logits = False
            family = _keras_family(last, from_logits)
            prediction = keyword(call, "y_pred") or keyword(call, "output") or positional(call, 1)
            if family is not None:
                return LossCall(site, family, prediction, last, keras=True, tensorflow=True)
        return None
    constructor, options = _criterion_of(model, call, site.scope, site.statement_order)
    if constructor is None:
        return None
    kind = canonical_keras(model.imports.qualify(constructor.func) or "")
    kind_last = kind.rsplit(".", 1)[-1]
    if kind.startswith("torch.nn") and kind_last in _TORCH_CRITERIA:
        prediction = keyword(call, "input") or positional(call, 0)
        return LossCall(site, _TORCH_CRITERIA[kind_last], prediction, f"nn.{kind_last}")
    if kind.startswith("tensorflow.keras") and kind_last in _KERAS_BINARY | _KERAS_CATEGORICAL:
        given = options.get("from_logits")
        if given is None and kind_last in _FROM_LOGITS_FIRST:
            given = positional(constructor, 0)  # ``SparseCategoricalCrossentropy(True)``
        from_logits = literal(given, "?") if given is not None else False
        family = _keras_family(kind_last, from_logits)
        prediction = keyword(call, "y_pred") or positional(call, 1)
        if family is not None:
            return LossCall(site, family, prediction, kind_last, keras=True, tensorflow=True)
    return None


def _criterion_of(
    model: TrainingModel, call: cst.Call, scope: Scope, before: int | None = None
) -> tuple[cst.Call | None, dict[str, cst.BaseExpression]]:
    """The constructor of the criterion object ``call`` calls (inline or through a binding)."""
    if isinstance(call.func, cst.Call):
        inner = call.func
        return inner, {a.keyword.value: a.value for a in inner.args if a.keyword}
    value = _criterion_bound_before(model, call, scope, before)
    if value is None:
        value = model.value_of(call.func, scope)
    if value is not None and value.role is Role.CRITERION and value.call is not None:
        return value.call, value.options
    return None, {}


def _criterion_bound_before(
    model: TrainingModel, call: cst.Call, scope: Scope, before: int | None
) -> Value | None:
    """The criterion a name holds where ``call`` runs, when the same scope rebinds it (a
    notebook's ``loss_fn = nn.L1Loss()`` for one model, ``loss_fn = nn.CrossEntropyLoss()``
    cells later for another): the latest binding before the call, not the file's last."""
    name = dotted(call.func)
    if before is None or not name:
        return None
    bindings = [b for b in model.lookup(name, scope) if not b.augmented and not b.from_iteration]
    if len(bindings) < 2 or any(b.scope is not bindings[0].scope for b in bindings):
        return None
    earlier = [b for b in bindings if b.order < before]
    if not earlier or not isinstance(earlier[0].value, cst.Call):
        return None
    return model.value_of(earlier[0].value, earlier[0].scope or scope)


def loss_calls(model: TrainingModel) -> list[LossCall]:
    """Every loss call in the file (read it through ``TrainingModel.loss_calls``, cached)."""
    found = []
    for site in model.calls:
        classified = classify_loss_call(model, site)
        if classified is not None:
            found.append(classified)
    return found


# ---------------------------------------------------------------------- hand-written BCE
@dataclass(frozen=True)
class HandWrittenBCE:
    anchor: cst.CSTNode  # the smallest expression holding both logs
    prediction: cst.BaseExpression
    scope: Scope
    order: int


def _is_small_constant(node: cst.BaseExpression) -> bool:
    if isinstance(node, (cst.Integer, cst.Float)):
        return True
    text = (node.value if isinstance(node, cst.Name) else "").lower()
    return "eps" in text or "epsilon" in text


def _core(node: cst.BaseExpression) -> cst.BaseExpression:
    """``p`` for ``p``, ``p + eps``, ``eps + p``."""
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Add):
        if _is_small_constant(node.right):
            return _core(node.left)
        if _is_small_constant(node.left):
            return _core(node.right)
    return node


def _complement(node: cst.BaseExpression) -> cst.BaseExpression | None:
    """``p`` for ``1 - p`` (also ``1.0 - p + eps``)."""
    node = _core(node)
    if (
        isinstance(node, cst.BinaryOperation)
        and isinstance(node.operator, cst.Subtract)
        and literal(node.left, None) in (1, 1.0)
    ):
        return _core(node.right)
    return None


def hand_written_bce(model: TrainingModel) -> list[HandWrittenBCE]:
    logs_by_scope: dict[int, list[tuple[CallSite, cst.BaseExpression]]] = {}
    for site in model.calls:
        argument = log_argument(model.imports, site.node)
        if argument is not None:
            logs_by_scope.setdefault(id(site.scope), []).append((site, argument))
    code = model.module.code_for_node
    found = []
    for logs in logs_by_scope.values():
        if len(logs) < 2:
            continue
        for site, argument in logs:
            core = _core(argument)
            core_text = code(core)
            for other, other_argument in logs:
                complement = _complement(other_argument)
                if other is site or complement is None or code(complement) != core_text:
                    continue
                anchor = _smallest_enclosing(site.scope.node, site.node, other.node) or site.node
                found.append(HandWrittenBCE(anchor, core, site.scope, site.statement_order))
    return found


def _smallest_enclosing(
    root: cst.CSTNode, first: cst.CSTNode, second: cst.CSTNode
) -> cst.CSTNode | None:
    best = None
    for node in descendants(root):
        if isinstance(node, (cst.BinaryOperation, cst.UnaryOperation)):
            inner = {id(n) for n in descendants(node)}
            if id(first) in inner and id(second) in inner:
                best = node  # descendants are visited outer first: keep the last (innermost)
    return best
