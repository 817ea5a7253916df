from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.keras_held import passes_training
from trainlint.model.frameworks.tapes import Tape
from trainlint.rule import Violation


def _with_training(call: cst.Call) -> cst.Call:
    """``model(x)`` -> ``model(x, training=True)``."""
    args = list(call.args)
    if args:
        args[-1] = args[-1].with_changes(
            comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        )
    training = cst.Arg(
        value=cst.Name("True"),
        keyword=cst.Name("training"),
        equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
    )
    return call.with_changes(args=(*args, training))


def _is_trained(name: str, trained: set[str]) -> bool:
    """``self.encoder`` is trained by ``self.trainable_variables``, and ``model`` by
    ``model.trainable_variables``."""
    return any(name == owner or name.startswith(owner + ".") for owner in trained)


class KerasCallMissingTrainingFlag(Rule):
    """A keras model is called in a training tape without `training=True`.

    ## What it does
    Looks at the `tf.GradientTape` blocks whose gradients are applied (by
    `optimizer.apply_gradients`, `minimize`, `apply`, or a variable's `assign_sub`, in the
    same function or in a same-file caller it returns them to), including `train_step`
    overrides of a `keras.Model` subclass, and flags every call of a keras model or layer
    recorded there that passes no `training` argument. It is an error when the model is
    known to hold Dropout, BatchNormalization, noise or random augmentation layers, or
    layers built with `dropout=` (read from `Sequential`/functional models, same-file
    `keras.Model`/`Layer` subclasses, models passed to same-file functions and constructors,
    model classes of other project modules, and applications), a warning when what it holds
    cannot all be read (built by code in another file, or passed in). Each model is reported
    once per tape, at its first call.

    Stays silent on calls that pass `training=` (any value), a second positional argument or
    `**kwargs`; on models known to hold no such layer (the flag changes nothing); on tapes
    whose gradients are not applied (adversarial examples, saliency maps); on models the
    tape does not train when its gradient sources name the trained models'
    `trainable_variables` (a teacher in distillation, the discriminator in the generator's
    step of a GAN: inference mode is intended there); and on calls of anything not known to
    be a keras model.

    ## Why is this bad?
    Outside `fit()`, a keras model called as `model(x)` runs in inference mode: Dropout
    drops nothing and BatchNormalization normalizes each batch with its moving statistics
    and never updates them. The custom loop trains a different network from the one
    evaluated later: no regularization from dropout, and batch-norm statistics stuck at
    their initial values, so the model predicts badly at test time.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        logits = model(images)
        loss = loss_fn(labels, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = loss_fn(labels, logits)
    ```
    """

    code = "TL603"
    name = "keras-call-missing-training-flag"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = ("GradientTape",)
    block_triggers = triggers
    summary = "A keras model is called in a training `GradientTape` without `training=True`."
    fix_availability = "always"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        tapes = model.tapes
        reported: set[int] = set()
        for tape in tapes.tapes:
            if not any(tapes.applied(g) for g in tapes.gradients_of(tape)):
                continue
            for violation in self._tape(model, tape):
                if id(violation.node) not in reported:
                    reported.add(id(violation.node))
                    yield violation

    def _tape(self, model: TrainingModel, tape: Tape) -> Iterator[Violation]:
        named: set[str] = set()  # one finding per model and tape: the first call
        trained = model.tapes.trained_models(tape)
        for site in model.tapes.recorded_calls(tape):
            call = site.node
            if passes_training(call) or model.text_of(call.func) in named:
                continue
            if trained is not None and not _is_trained(model.text_of(call.func), trained):
                continue  # a frozen model (a teacher, the other half of a GAN)
            held = model.keras_modes.of_callable(call.func, site.scope, site.statement_order)
            if held is None or held.known_free:
                continue
            name = model.text_of(call.func)
            named.add(name)
            fix = Fix(
                "pass the mode: the tape trains this model",
                model.text_of(_with_training(call)),
                (Edit(call, _with_training(call)),),
                Applicability.UNSAFE,
            )
            if held.has_any:
                layers = ", ".join(f"`{layer}`" for layer in held.layers[:3])
                yield Violation(
                    call,
                    f"`{name}` is called without `training=True` in a GradientTape whose "
                    f"gradients are applied: it holds {layers}, which then run in inference "
                    "mode (no dropout, frozen batch-norm statistics) while it trains",
                    fix,
                    Severity.ERROR,
                )
            else:
                yield Violation(
                    call,
                    f"`{name}` is called without `training=True` in a GradientTape whose "
                    "gradients are applied: any Dropout or BatchNormalization in it runs in "
                    "inference mode while it trains",
                    fix,
                )
