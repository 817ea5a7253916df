from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import Activation, LossFamily, TrainingModel
from trainlint.model.frameworks.keras_compile import CompileCall, LossKind, LossSpec
from trainlint.model.frameworks.keras_models import Head, KerasModel
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED

_CROSS_ENTROPY = (LossKind.BINARY, LossKind.CATEGORICAL, LossKind.SPARSE)


def _heads_for(model: KerasModel, loss: LossSpec) -> list[Head]:
    """The outputs a compile() loss applies to (dict entries by output name, lists by index)."""
    if loss.key is None:
        return list(model.heads)
    if isinstance(loss.key, int):
        several = len(model.heads) > 1  # a one-element loss list applies to the one output
        return [model.heads[loss.key]] if several and loss.key < len(model.heads) else []
    return [h for h in model.heads if h.name == loss.key]


def _final_layer(model: TrainingModel, head: Head) -> str:
    node = head.layer or head.kind.node
    return f" (`{model.text_of(node)}`)" if node is not None else ""


def _logits_message(model: TrainingModel, name: str, head: Head, loss: LossSpec) -> str:
    return (
        f"the final layer of `{name}`{_final_layer(model, head)} has no activation, so it "
        f"outputs logits, but the loss `{loss.label}` expects probabilities (from_logits is "
        "False, its default): the "
        "loss is computed on clipped logits and training goes wrong quietly"
    )


def _probabilities_message(model: TrainingModel, name: str, head: Head, loss: LossSpec) -> str:
    return (
        f"`{name}` ends in a {head.kind.producer}{_final_layer(model, head)}, so it outputs "
        f"probabilities, but the loss `{loss.label}` is built with from_logits=True: the "
        f"{head.kind.producer} is applied twice and the gradients vanish"
    )


_FIX_LOGITS = Fix(
    "tell the loss it receives logits (or add the activation to the last layer)",
    "keras.losses.BinaryCrossentropy(from_logits=True)  # SparseCategoricalCrossentropy(...)",
)
_FIX_PROBABILITIES = Fix(
    "drop from_logits=True, or remove the activation from the last layer (keep from_logits=True)",
)


class KerasFromLogitsMismatch(Rule):
    """The model's last activation disagrees with the loss's `from_logits`.

    ## What it does
    Reads the keras model a `compile()` call (or a custom-loop loss call) trains -- built with
    `Sequential([...])` and `.add()`, the functional API, a same-file `keras.Model` subclass,
    or on a pretrained base such as `keras.applications.MobileNetV2(include_top=False)` -- and
    the activation of the final layer of each output. It flags:

    * a final softmax/sigmoid (`Dense(k, activation="softmax")`, a trailing `Softmax()` or
      `Activation("sigmoid")`) with a loss built `from_logits=True`;
    * a final layer with no activation (`Dense(1)`, `Dense(10)`) with a loss string
      (`"binary_crossentropy"`, `"sparse_categorical_crossentropy"`) or class left at its
      default `from_logits=False`, e.g. a transfer-learning head `Dense(1)` compiled with
      `BinaryCrossentropy()`;
    * a binary loss with `from_logits=True` reported with `"accuracy"` or `BinaryAccuracy()`
      at its default threshold of 0.5;
    * the same mismatches in custom loops: `loss_fn(y, model(x))`.

    Stays silent when the activation cannot be seen (a subclassed model whose `call()`
    applies it through code trainlint cannot read, a model loaded from disk), when
    `from_logits` is not a literal, and on per-output dicts whose names do not match.

    ## Why is this bad?
    With `from_logits=False` keras treats the outputs as probabilities: logits are clipped
    into (0, 1) and the loss is nonsense, though it still goes down a little. With
    `from_logits=True` on softmax outputs the softmax is applied twice; the loss saturates
    and learning slows to a crawl. Accuracy at a 0.5 threshold on logits counts every
    positive logit below 0.5 as a negative: the reported accuracy is wrong.

    ## Example
    ```python
    model = keras.Sequential([layers.Dense(64, activation="relu"), layers.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    ```

    ## Use instead
    ```python
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    ```
    """

    code = "TL601"
    name = "keras-from-logits-mismatch"
    severity = Severity.ERROR
    frameworks = ("tf",)
    triggers = ("crossentropy", "Crossentropy", "bce")
    block_triggers = (*triggers, IMPORTED)
    summary = "A keras model's final activation disagrees with the loss's `from_logits`."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for compiled in model.keras.compiles:
            yield from self._compiled(model, compiled)
        yield from self._custom_loops(model)

    def _compiled(self, model: TrainingModel, compiled: CompileCall) -> Iterator[Violation]:
        name = model.text_of(compiled.receiver)
        probabilities = False
        for loss in compiled.losses:
            if loss.kind not in _CROSS_ENTROPY or compiled.model is None:
                continue
            for head in _heads_for(compiled.model, loss):
                activation = head.kind.activation
                if loss.from_logits is True and activation is Activation.PROBABILITIES:
                    probabilities = True
                    message = _probabilities_message(model, name, head, loss)
                    yield Violation(loss.node, message, _FIX_PROBABILITIES)
                    break
                if loss.from_logits is False and activation is Activation.LOGITS:
                    message = _logits_message(model, name, head, loss)
                    yield Violation(loss.node, message, _FIX_LOGITS)
                    break
        if probabilities:
            return  # the loss is what is wrong: accuracy on probabilities is right
        binary_logits = {
            loss.key
            for loss in compiled.losses
            if loss.kind is LossKind.BINARY and loss.from_logits is True
        }
        if not binary_logits:
            return
        every = len(binary_logits) == len(compiled.losses)
        for metric in compiled.metrics:
            if not metric.binary_threshold_default:
                continue
            if metric.key in binary_logits or (metric.key is None and every):
                yield Violation(
                    metric.node,
                    f"`{metric.label}` thresholds predictions at 0.5, but the loss is built "
                    "from_logits=True, so the model outputs logits, whose decision "
                    "threshold is 0: the reported accuracy is wrong",
                    Fix(
                        "threshold the logits at 0",
                        "keras.metrics.BinaryAccuracy(threshold=0.0)",
                    ),
                )

    def _custom_loops(self, model: TrainingModel) -> Iterator[Violation]:
        for loss in model.loss_calls:
            if not loss.keras or loss.prediction is None:
                continue
            kind = model.tensor_kind(loss.prediction, loss.site.scope, loss.site.statement_order)
            prediction = model.text_of(loss.prediction)
            if (
                loss.family in (LossFamily.CROSS_ENTROPY, LossFamily.BCE_WITH_LOGITS)
                and kind.activation is Activation.PROBABILITIES
            ):
                yield Violation(
                    loss.site.node,
                    f"`{prediction}` holds probabilities (after a {kind.producer}), but "
                    f"{loss.label} is built with from_logits=True: the {kind.producer} is "
                    "applied twice",
                    _FIX_PROBABILITIES,
                )
            elif (
                loss.family is LossFamily.CATEGORICAL_ON_PROBABILITIES
                and kind.activation is Activation.LOGITS
            ):
                yield Violation(
                    loss.site.node,
                    f"`{prediction}` holds logits (the last layer has no activation), but "
                    f"{loss.label} expects probabilities (from_logits=False)",
                    Fix(
                        "tell the loss it receives logits",
                        "keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
                    ),
                )
