from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.model import LossFamily, TrainingModel
from trainlint.model.values.activations import drop_activation, logit_loss_inputs, made_at
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED


class SoftmaxIntoCrossEntropy(Rule):
    """Probabilities from a softmax fed to `CrossEntropyLoss` (or to `NLLLoss`).

    ## What it does
    Flags `nn.CrossEntropyLoss`/`F.cross_entropy` whose **input** holds softmax probabilities: from
    `F.softmax`, `torch.softmax`, `.softmax()`, an `nn.Softmax` layer applied to it or ending
    the `nn.Sequential` (also an auxiliary head), or a model whose `forward` returns a softmax
    (also one element of the tuple it returns). Also flags a softmax (not `log_softmax`) fed to
    `NLLLoss`/`F.nll_loss`. TensorFlow: the `logits=` of
    `tf.nn.softmax_cross_entropy_with_logits` (also `_v2`),
    `tf.nn.sparse_softmax_cross_entropy_with_logits` and TF 1's
    `tf.losses.softmax_cross_entropy` / `sparse_softmax_cross_entropy` (also through
    `tf.compat.v1`), fed by `tf.nn.softmax`, `tf.keras.activations.softmax`,
    `keras.ops.softmax`, `tf.layers.dense(..., activation=tf.nn.softmax)`, a keras model or
    layer ending in a softmax, or a keras `Model.call` returning one (graph code and
    `GradientTape` loops alike; keras losses built with `from_logits=True` are TL601's).
    Silent on a softmax on the target
    (distillation), on probabilities used only for metrics or predictions, on `(logits,
    probs)` returns whose logits reach the loss, and on a softmax applied only in some
    branches (`if not self.training:`).

    ## Why is this bad?
    `CrossEntropyLoss` applies `log_softmax` itself. Given probabilities it computes
    softmax(softmax(x)): the outputs are squeezed into a narrow range, the loss can never
    get near zero and gradients vanish, so training is slow or stalls while still "working".
    `NLLLoss` expects log-probabilities; given probabilities it is not a likelihood at all.

    ## Example
    ```python
    class Net(nn.Module):
        def forward(self, x):
            return F.softmax(self.fc(x), dim=1)

    loss = nn.CrossEntropyLoss()(net(x), y)
    ```

    ## Use instead
    ```python
    class Net(nn.Module):
        def forward(self, x):
            return self.fc(x)            # logits; softmax only for predictions

    loss = nn.CrossEntropyLoss()(net(x), y)
    probs = net(x).softmax(dim=-1)
    ```
    TensorFlow: `tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=tf.matmul(x, W) + b)`,
    and `tf.nn.softmax(...)` of the same logits only for predictions.
    """

    code = "TL302"
    name = "softmax-into-cross-entropy"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = ("softmax", "Softmax")
    block_triggers = (*triggers, IMPORTED)
    summary = "Softmax probabilities are fed to a loss that applies log-softmax itself."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in logit_loss_inputs(model):
            loss, kind = found.loss, found.kind
            if kind.producer != "softmax" or loss.family is LossFamily.BCE_WITH_LOGITS:
                continue
            prediction = model.text_of(loss.prediction)
            where = made_at(model, kind)
            source = f"the softmax at {where}" if where else "a softmax"
            if loss.family is LossFamily.NLL:
                message = (
                    f"{loss.label} expects log-probabilities, but `{prediction}` holds "
                    f"softmax probabilities ({source}): use log_softmax"
                )
                replacement = "F.log_softmax(logits, dim=-1)  # or F.cross_entropy(logits, y)"
            else:
                message = (
                    f"{loss.label} applies log_softmax itself, but `{prediction}` holds "
                    f"softmax probabilities ({source}): the loss sees softmax(softmax(x)) "
                    "and its gradients shrink"
                )
                replacement = None
            edit = drop_activation(model, kind, loss) if loss.family is not LossFamily.NLL else None
            if edit is not None:
                fix = Fix(
                    "feed the logits: drop the softmax used only by the loss",
                    model.text_of(edit.node) + " -> " + str(edit.replacement),
                    (edit,),
                    Applicability.UNSAFE,
                )
            else:
                fix = Fix(
                    "feed the logits to the loss; apply softmax only for predictions",
                    replacement,
                )
            yield Violation(loss.site.node, message, fix)
