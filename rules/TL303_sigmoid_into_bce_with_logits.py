from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.model import LossFamily, TrainingModel
from trainlint.model.values.activations import drop_activation, logit_loss_inputs, made_at
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED


class SigmoidIntoBceWithLogits(Rule):
    """Probabilities from a sigmoid fed to `BCEWithLogitsLoss`, which applies a sigmoid itself.

    ## What it does
    Flags `nn.BCEWithLogitsLoss`, `F.binary_cross_entropy_with_logits` and torchvision's
    `sigmoid_focal_loss` whose **input** holds probabilities: from `torch.sigmoid`,
    `.sigmoid()`, an `nn.Sigmoid` layer (applied, or ending an `nn.Sequential`), a model
    whose `forward` returns a sigmoid (also one element of a returned tuple), or a softmax.
    TensorFlow: the `logits=` of `tf.nn.sigmoid_cross_entropy_with_logits`,
    `tf.nn.weighted_cross_entropy_with_logits` and TF 1's `tf.losses.sigmoid_cross_entropy`, fed
    by `tf.sigmoid`/`tf.nn.sigmoid`/`tf.math.sigmoid`, a keras `Dense(1, activation="sigmoid")`
    or `Activation("sigmoid")` output, or a TF 1 discriminator function returning a sigmoid
    (keras losses built with `from_logits=True` are TL601's).
    Silent on a sigmoid used only for metrics or thresholds, and on one applied only in some
    branches.

    ## Why is this bad?
    These losses take logits and apply the sigmoid inside, in a numerically stable way. Fed
    probabilities they compute sigmoid(sigmoid(x)), which lies in [0.5, 0.73]: the loss can
    never reach its minimum, the gradients are tiny, and the model learns slowly or not at
    all while no error is raised.

    ## Example
    ```python
    probs = torch.sigmoid(model(x))
    loss = nn.BCEWithLogitsLoss()(probs, y)
    ```

    ## Use instead
    ```python
    logits = model(x)
    loss = nn.BCEWithLogitsLoss()(logits, y)
    predictions = torch.sigmoid(logits) > 0.5   # probabilities only for metrics
    ```
    """

    code = "TL303"
    name = "sigmoid-into-bce-with-logits"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = (
        "BCEWithLogits",
        "binary_cross_entropy_with_logits",
        "sigmoid_focal_loss",
        "sigmoid_cross_entropy",
        "weighted_cross_entropy",
    )
    block_triggers = (*triggers, IMPORTED)
    summary = "Sigmoid probabilities are fed to a loss that applies the sigmoid itself."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in logit_loss_inputs(model):
            loss, kind = found.loss, found.kind
            if loss.family is not LossFamily.BCE_WITH_LOGITS or not kind.is_squashed:
                continue
            where = made_at(model, kind)
            source = f"the {kind.producer} at {where}" if where else f"a {kind.producer}"
            message = (
                f"{loss.label} applies a sigmoid itself, but `{model.text_of(loss.prediction)}` "
                f"holds {kind.producer} probabilities ({source}): the loss sees "
                "sigmoid(probabilities), squeezed into [0.5, 0.73], and barely trains"
            )
            edit = drop_activation(model, kind, loss)
            if edit is not None:
                fix = Fix(
                    f"feed the logits: drop the {kind.producer} used only by the loss",
                    f"{model.text_of(edit.node)} -> {edit.replacement}",
                    (edit,),
                    Applicability.UNSAFE,
                )
            else:
                fix = Fix("feed the logits to the loss; apply the sigmoid only for predictions")
            yield Violation(loss.site.node, message, fix)
