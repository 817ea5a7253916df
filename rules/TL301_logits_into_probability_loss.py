from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import LossFamily, TrainingModel
from trainlint.model.values.kinds import Activation, TensorKind
from trainlint.model.values.losses import hand_written_bce
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED, LOG

_FIXES = {
    LossFamily.BINARY_CROSS_ENTROPY: (
        "use the logits version of the loss",
        "nn.BCEWithLogitsLoss()(logits, target)  # or F.binary_cross_entropy_with_logits",
    ),
    LossFamily.NLL: (
        "take log_softmax first, or use cross-entropy on the logits",
        "F.nll_loss(F.log_softmax(logits, dim=-1), target)  # or F.cross_entropy(logits, target)",
    ),
}
_KERAS_FIX = (
    "tell the loss it receives logits",
    "keras.losses.BinaryCrossentropy(from_logits=True)",
)
_TF_FIX = (
    "use the logits version of the loss",
    "tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)",
)


def _builtin(model: TrainingModel, logits: str) -> str:
    """The stable built-in loss, in the file's framework (TF when it imports no torch)."""
    if model.imports.imports("tensorflow") and not model.imports.imports("torch"):
        return f"tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits={logits})"
    return f"F.binary_cross_entropy_with_logits({logits}, target)"


def _describe(kind: TensorKind, missing: str = "sigmoid") -> str:
    if kind.activation is Activation.UNBOUNDED:
        return f"unbounded values from `{kind.producer}`"
    return f"raw logits (the output of {kind.producer}, with no {missing})"


class LogitsIntoProbabilityLoss(Rule):
    """A loss that expects probabilities receives logits (a hand-written BCE, `BCELoss`, `NLLLoss`).

    ## What it does
    Flags a binary cross-entropy written out by hand (`y*log(p) + (1-y)*log(1-p)`, in any
    arrangement, with torch, tf.math, the keras backend or numpy), `nn.BCELoss`,
    `F.binary_cross_entropy` or keras `binary_crossentropy` with `from_logits=False`, and
    `NLLLoss`/`F.nll_loss`, TF 1's `tf.losses.log_loss`, the keras backend's
    `binary_crossentropy`, when the prediction provably holds values that are not
    probabilities: the output of a `Linear`/`Dense` layer (directly, or as the last layer of a
    same-file model or `Sequential`), TF 1's `tf.layers.dense` with no activation, a matrix
    product (`tf.matmul(x, W) + b`, `tf.nn.bias_add`), or an unbounded tensor factory such as
    `torch.randn` / `tf.random.normal`,
    with no sigmoid, softmax or clamp on the way. A prediction whose producer cannot be
    resolved is never flagged.

    ## Why is this bad?
    Logits range over all real numbers. `log(p)` of a negative logit is NaN, `log(1 - p)` of
    a logit above 1 is NaN, and where they happen to be defined the value is not a
    likelihood: the loss goes down a little while the model learns nothing sensible.
    `NLLLoss` expects log-probabilities; on raw logits it just maximizes the target logit
    without bound.

    ## Example
    ```python
    logits = model(x)                      # ends in nn.Linear(hidden, 1)
    loss = -(y * torch.log(logits) + (1 - y) * torch.log(1 - logits)).mean()
    ```

    ## Use instead
    ```python
    logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits, y)   # numerically stable
    ```
    """

    code = "TL301"
    name = "logits-into-probability-loss"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = (
        "log(",
        "BCELoss",
        "binary_cross",
        "BinaryCross",
        "NLLLoss",
        "nll_loss",
        "log_loss",
    )
    block_triggers = (*triggers, LOG, IMPORTED)
    summary = "A loss that expects probabilities (BCE, NLL) is fed logits or unbounded values."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        code = model.module.code_for_node
        for loss in model.loss_calls:
            if loss.family not in (LossFamily.BINARY_CROSS_ENTROPY, LossFamily.NLL):
                continue
            kind = model.tensor_kind(loss.prediction, loss.site.scope, loss.site.statement_order)
            if not kind.is_real_valued:
                continue
            prediction = code(loss.prediction) if loss.prediction is not None else "input"
            expected = (
                "probabilities"
                if loss.family is LossFamily.BINARY_CROSS_ENTROPY
                else ("log-probabilities")
            )
            if loss.keras:
                description, replacement = _KERAS_FIX
            elif loss.tensorflow:
                description, replacement = _TF_FIX  # TF 1's ``tf.losses.log_loss``
            else:
                description, replacement = _FIXES[loss.family]
            missing = "log_softmax" if loss.family is LossFamily.NLL else "sigmoid"
            yield Violation(
                loss.site.node,
                f"{loss.label} expects {expected}, but `{prediction}` holds "
                f"{_describe(kind, missing)}",
                Fix(description, replacement),
            )
        for bce in hand_written_bce(model):
            kind = model.tensor_kind(bce.prediction, bce.scope, bce.order)
            if not kind.is_real_valued:
                continue
            yield Violation(
                bce.anchor,
                f"hand-written binary cross-entropy takes log({code(bce.prediction)}), but "
                f"`{code(bce.prediction)}` holds {_describe(kind)}: "
                "log of it is NaN or meaningless",
                Fix("use the built-in loss on the logits", _builtin(model, code(bce.prediction))),
            )
