from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.values.activations import fused_log_softmax, logs_of_probabilities, made_at
from trainlint.rule import Violation
from trainlint.slicing import LOG


class LogOfSoftmax(Rule):
    """`log` of a softmax or a sigmoid, instead of `log_softmax` / `logsigmoid`.

    ## What it does
    Flags `torch.log`, `tf.math.log` (TF 1's `tf.log`), the keras backend's `log`, keras 3's
    `keras.ops.log` (also `np.log`, `.log()`) applied to the output of a softmax or a sigmoid
    (torch, `tf.nn`, `tf.math`, keras activations, backend and ops, keras layers and models
    ending in one), directly or through variables, layers and same-file functions: the TF 1
    tutorial cross-entropy `-tf.reduce_sum(y_ * tf.log(tf.nn.softmax(...)))` among them.
    With a clamp or an added epsilon in between
    (`torch.log(p.clamp(min=1e-8))`, `torch.log(p + 1e-8)`) it is reported as info only.

    ## Why is this bad?
    A softmax or sigmoid of a large negative score underflows to exactly 0 in floating point;
    its log is then `-inf` and the gradients NaN. `log_softmax` / `logsigmoid` compute the
    same values in one numerically stable step (a log-sum-exp), and the built-in losses
    (`F.cross_entropy`, `F.nll_loss` on `log_softmax`, `BCEWithLogitsLoss`) do it for you. A
    clamp avoids the NaN but flattens the gradient of every clamped value to zero.

    ## Example
    ```python
    log_probs = torch.log(F.softmax(logits, dim=-1))
    loss = -(targets * log_probs).sum(dim=-1).mean()
    ```

    ## Use instead
    ```python
    log_probs = F.log_softmax(logits, dim=-1)
    loss = -(targets * log_probs).sum(dim=-1).mean()
    ```
    `--fix` rewrites `log(softmax(x))` written in one expression into `log_softmax(x)`.
    """

    code = "TL304"
    name = "log-of-softmax"
    severity = Severity.WARNING
    frameworks = ("torch", "tf")
    triggers = ("log",)
    block_triggers = (LOG,)
    summary = "`log` of a softmax/sigmoid: use `log_softmax`/`logsigmoid` (stable)."
    fix_availability = "sometimes"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for found in logs_of_probabilities(model):
            producer = found.squashed.producer
            where = made_at(model, found.squashed)
            source = f"the {producer} at {where}" if where else f"a {producer}"
            stable = "log_softmax" if producer == "softmax" else "logsigmoid"
            argument = model.text_of(found.call)
            if found.clamped:
                effect = (
                    "biased by the epsilon"
                    if found.kind.producer == "an epsilon"
                    else "with no gradient where clamped"
                )
                message = (
                    f"`{argument}` takes the log of {source} kept off zero by "
                    f"{found.kind.producer}: finite, but {effect}; {stable} is exact"
                )
                yield Violation(
                    found.call,
                    message,
                    Fix(f"use {stable} on the scores"),
                    severity=Severity.INFO,
                )
                continue
            message = (
                f"`{argument}` takes the log of {source}: it underflows to log(0) = -inf "
                f"for large negative scores; {stable} computes it stably"
            )
            edit = fused_log_softmax(model, found)
            if edit is not None:
                replacement = model.text_of(edit.replacement)  # type: ignore[arg-type]
                fix = Fix("fuse the log into the softmax", replacement, (edit,), Applicability.SAFE)
            else:
                fix = Fix(f"use {stable} on the scores, or the built-in loss on logits")
            yield Violation(found.call, message, fix)
