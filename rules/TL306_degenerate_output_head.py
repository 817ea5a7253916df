from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.values.activations import degenerate_heads, made_at
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED


class DegenerateOutputHead(Rule):
    """A one-unit output layer under a softmax, or scored by a categorical cross-entropy.

    ## What it does
    Flags a linear layer with one output unit (`nn.Linear(h, 1)`, keras `Dense(1)`) whose output
    goes through a softmax over its last axis (`F.softmax(x, dim=-1)`, `nn.Softmax(dim=-1)`
    after it in an `nn.Sequential`, `Dense(1, activation="softmax")`), or a softmax over dim 1 /
    no dim that then reaches a loss, or that feeds `CrossEntropyLoss` / `F.cross_entropy`
    directly. TensorFlow: keras `Dense(1, activation="softmax")` (also
    `activation=tf.nn.softmax`, or a `Softmax()` / `Activation("softmax")` layer after a
    `Dense(1)`) in `Sequential` or functional models, TF 1's `tf.layers.dense(x, 1,
    activation=tf.nn.softmax)`, and a one-unit output compiled with (or fed in a custom loop to)
    a categorical cross-entropy (`categorical_crossentropy`, `SparseCategoricalCrossentropy`,
    whatever its activation: keras rescales the output to sum to 1 over the last axis), or to
    `tf.nn.softmax_cross_entropy_with_logits`.
    Silent on a softmax over another axis
    (attention pooling: `F.softmax(self.score(h), dim=1)` over the time steps).

    ## Why is this bad?
    A softmax over a single value is always exactly 1, and a cross-entropy over a single
    class is always 0: the output is constant, the gradient is zero, and the model learns
    nothing, silently. It is usually a binary classifier written like a multi-class one.

    ## Example
    ```python
    head = nn.Sequential(nn.Linear(64, 1), nn.Softmax(dim=-1))
    loss = nn.BCELoss()(head(features), labels)
    ```

    ## Use instead
    ```python
    head = nn.Linear(64, 1)
    loss = nn.BCEWithLogitsLoss()(head(features), labels)   # sigmoid + BCE, or k units
    ```
    """

    code = "TL306"
    name = "degenerate-output-head"
    severity = Severity.ERROR
    frameworks = ("torch", "tf")
    triggers = ("Linear", "Dense", "dense", "fully_connected")
    block_triggers = (
        *triggers,
        "loss",
        "Loss",
        "softmax",
        "Softmax",
        "entropy",
        "criterion",
        IMPORTED,
    )
    summary = "A one-unit output under a softmax or a cross-entropy: always 1 (or 0)."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for head in degenerate_heads(model):
            layer = head.layer
            anchor: cst.CSTNode | None = layer.node
            if anchor is None and head.loss is not None:
                anchor = head.loss.site.node  # the layer is in another module
            if anchor is None or id(anchor) in reported:
                continue
            reported.add(id(anchor))
            name = model.text_of(layer.node) if layer.node is not None else layer.producer
            where = "" if layer.node is not None else f" ({made_at(model, layer)})"
            if head.softmax is not None:
                message = (
                    f"`{name}`{where} has one output unit and a softmax over it: the softmax "
                    "of a single value is always 1, so the output is constant and nothing "
                    "is learned"
                )
            else:
                message = (
                    f"`{name}`{where} has one output unit and feeds {head.loss_label}: "
                    "cross-entropy over a single class is always 0, so nothing is learned"
                )
            binary = (
                '`activation="sigmoid"` with `binary_crossentropy`'
                if layer.producer.startswith(("Dense", "tf."))
                else "BCEWithLogitsLoss"
            )
            yield Violation(
                anchor,
                message,
                Fix(
                    "for two classes use one unit with a sigmoid and binary cross-entropy "
                    f"({binary}); otherwise give the layer one unit per class"
                ),
            )
