from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Activation, LossFamily, TrainingModel
from trainlint.model.values.activations import logit_loss_inputs, made_at
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED


class ActivationBeforeLogitsLoss(Rule):
    """A ReLU (or another non-negative activation) on the final logits of a classifier.

    ## What it does
    Flags `CrossEntropyLoss`/`F.cross_entropy`, `BCEWithLogitsLoss`/
    `F.binary_cross_entropy_with_logits`, and `NLLLoss` on a `log_softmax`, whose scores
    went through a ReLU, ReLU6, Softplus or `abs` after the last layer:
    `nn.Sequential(..., nn.Linear(h, k), nn.ReLU())`, `return F.relu(self.fc_out(x))`.
    Silent on activations inside hidden layers.

    ## Why is this bad?
    These losses expect raw scores that can be negative. After a ReLU every negative score is
    clipped to zero: the model cannot make one class less likely than "zero", gradients of
    clipped units are zero, and units that die never come back. Training runs, but accuracy
    plateaus below what the model can reach.

    ## Example
    ```python
    self.classifier = nn.Sequential(nn.Linear(512, 10), nn.ReLU())
    loss = F.cross_entropy(self.classifier(x), y)
    ```

    ## Use instead
    ```python
    self.classifier = nn.Linear(512, 10)
    loss = F.cross_entropy(self.classifier(x), y)
    ```
    """

    code = "TL307"
    name = "activation-before-logits-loss"
    severity = Severity.ERROR
    frameworks = ("torch",)
    triggers = ("relu", "ReLU", "softplus", "Softplus", "abs")
    block_triggers = (*(t for t in triggers if t != "abs"), r"re:\babs\b", IMPORTED)
    summary = "A ReLU-like activation clips the final logits before a logits loss."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in logit_loss_inputs(model):
            loss, kind = found.loss, found.kind
            if loss.tensorflow:
                continue  # a torch rule (RULES.md): TF's logits losses are not its contract
            clipped = None
            if kind.activation is Activation.NON_NEGATIVE and loss.family is not LossFamily.NLL:
                clipped = kind
            elif (
                kind.producer == "log_softmax"
                and kind.source is not None
                and kind.source.activation is Activation.NON_NEGATIVE
            ):
                clipped = kind.source
            if clipped is None:
                continue
            where = made_at(model, clipped)
            at = f" at {where}" if where else ""
            yield Violation(
                loss.site.node,
                f"{loss.label} needs raw scores, but `{model.text_of(loss.prediction)}` went "
                f"through {clipped.producer}{at} after the last layer: every negative logit "
                "is clipped to zero, so the model cannot express low scores",
                Fix("drop the activation after the last layer; feed the linear output"),
            )
