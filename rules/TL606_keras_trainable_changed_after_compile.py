from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import method_call
from trainlint.rule import Violation

_FIX = Fix(
    "set `trainable` before `compile()`, or compile again after changing it",
    "base.trainable = True\nmodel.compile(optimizer=..., loss=...)  # then fit",
)


class KerasTrainableChangedAfterCompile(Rule):
    """`trainable` is changed after `compile()` and the model is fitted without recompiling.

    ## What it does
    Reads, for each `fit()` / `fit_generator()` / `train_on_batch()` of a keras model, the
    statements before it in order (also around loops, across the cells of a notebook, and
    from a class's `__init__` into its other methods):
    the latest `compile()` of that model, then every `X.trainable = ...` where `X` is the
    model, a layer or a base model in it (`base.trainable = True`, `for layer in
    base.layers[:100]: layer.trainable = False`). It flags the first such change that sets a
    value other than the one the object had when the model was compiled.

    Stays silent on the GAN idiom -- `discriminator.trainable = False` followed by compiling
    the combined model, while the discriminator trains as it was compiled -- and on anything
    that may compile another model after the change (a same-file function that compiles,
    another module's function given the changed model); on changes undone before the fit
    (toggling in a GAN loop); on fine-tuning that compiles again before fitting; and on
    custom `GradientTape` loops, which read `trainable_variables` at every step.

    ## Why is this bad?
    `compile()` fixes which weights `fit()` updates. Unfreezing a base model after compiling
    leaves it frozen: "fine-tuning" trains only the head, and the accuracy gain never
    comes. Freezing the discriminator after compiling the combined GAN lets the generator's
    step update the discriminator as well.

    ## Example
    ```python
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(train_ds, epochs=10)
    base_model.trainable = True
    model.fit(train_ds, epochs=10)
    ```

    ## Use instead
    ```python
    base_model.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="binary_crossentropy")
    model.fit(train_ds, epochs=10)
    ```
    """

    code = "TL606"
    name = "keras-trainable-changed-after-compile"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = (".trainable",)
    block_triggers = triggers
    summary = "`trainable` is changed after `compile()`; `fit()` trains as compiled."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        for stale in model.trainable_changes.stale:
            change = stale.change
            fit = method_call(stale.fit.node)
            fitted = model.text_of(fit[0]) if fit is not None else "the model"
            method = fit[1] if fit is not None else "fit"
            yield Violation(
                change.node,
                f"`{change.key}` is set after `{fitted}.compile()` "
                f"({model.where(stale.compiled.node)}) and `{fitted}.{method}()` "
                f"({model.where(stale.fit.node)}) runs without compiling again: it trains "
                "with the weights frozen or unfrozen as they were at compile time",
                _FIX,
            )
