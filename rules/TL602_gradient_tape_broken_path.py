from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.tapes import Tape, TapeGradient
from trainlint.rule import Violation

_FIX_INSIDE = Fix(
    "compute the loss inside the tape's `with` block, with TensorFlow ops",
    "with tf.GradientTape() as tape:\n    loss = ...  # every op from the model output to the loss",
)
_FIX_CUT = Fix(
    "keep the path in TensorFlow: use `tf.*` ops instead of `.numpy()`/NumPy/`float()`, and "
    "convert only for logging, after `tape.gradient`",
)
_FIX_DELETE = Fix(
    "drop the reference once the gradients are taken",
    "del tape  # after the last tape.gradient(...)",
)


class GradientTapeBrokenPath(Rule):
    """`tape.gradient` cannot reach the loss: it was computed outside the tape, or cut from it.

    ## What it does
    Reads every `tf.GradientTape` (`with tf.GradientTape() as tape:`, also a tape bound first
    and entered later with `with tape:`) and each `tape.gradient(target, sources)` on it, and
    flags:

    * a target computed outside the tape's `with` blocks: its latest binding before the
      gradient call is an operation that runs after (or before) the block, e.g. the loss
      reduced with `tf.reduce_mean` after the `with`, or `loss += reg` there; also a target
      written as an expression in a gradient call outside the block
      (`tape.gradient(loss_fn(y, p), vars)`). A plain rename or unpacking is fine;
    * a path the tape cannot follow: every way from the target back to the model (keras
      models and layers, variables, the sources, watched tensors) passes through `.numpy()`,
      a NumPy function, `float()`/`int()` or `tf.stop_gradient` inside the tape. The anchor
      is that cut;
    * a `persistent=True` tape made on every iteration of a loop and never deleted there
      (`del tape`), anchored at its last gradient call.

    Stays silent on a cut of one operand only (a stopped teacher output beside a live
    student output), on targets that are attributes (`self.loss`), and on targets whose
    binding lies in another function.

    ## Why is this bad?
    A tape differentiates only the TensorFlow operations it recorded while its `with` block
    was open. An operation run outside it, or a value converted to NumPy or a Python float,
    is not on the tape: `tape.gradient` returns `None` for every variable, and
    `apply_gradients` then fails with "No gradients provided" or, with gradients filtered,
    silently trains nothing. A persistent tape keeps all its intermediate tensors until it
    is garbage collected: made anew on every iteration and never deleted, each one holds its
    graph into the next iteration and memory use doubles.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
    loss = tf.reduce_mean(loss_fn(y, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    ```

    ## Use instead
    ```python
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(loss_fn(y, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    ```
    """

    code = "TL602"
    name = "gradient-tape-broken-path"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = ("GradientTape",)
    block_triggers = triggers
    summary = "`tape.gradient`'s target is computed outside the tape or cut from it."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        tapes = model.tapes
        for gradient in tapes.gradients:
            found = self._gradient(model, gradient)
            if found is not None:
                yield found
        for tape in tapes.tapes:
            yield from self._persistent(model, tape)

    def _gradient(self, model: TrainingModel, gradient: TapeGradient) -> Violation | None:
        paths = model.tape_paths
        tape_name = gradient.tape.name or "the tape"
        target = model.text_of(gradient.target)
        outside = paths.outside_target(gradient)
        if outside is not None:
            where = (
                f"at {model.where(outside.node)}" if outside.binding is not None else "in the call"
            )
            return Violation(
                gradient.call,
                f"`{target}` is computed outside the `with` block of `{tape_name}` ({where}): "
                "the tape did not record that operation, so the gradients are None",
                _FIX_INSIDE,
            )
        cut = paths.cut_on_path(gradient)
        if cut is not None:
            return Violation(
                cut.node,
                f"{cut.how} takes `{target}` out of TensorFlow inside `{tape_name}`: the tape "
                f"cannot differentiate through it, so `{tape_name}.gradient` returns None",
                _FIX_CUT,
            )
        return None

    def _persistent(self, model: TrainingModel, tape: Tape) -> Iterator[Violation]:
        loop = model.tapes.kept_across_iterations(tape)
        if loop is None:
            return
        calls = [g.call for g in model.tapes.gradients_of(tape)]
        anchor = calls[-1] if calls else tape.constructor
        yield Violation(
            anchor,
            f"`{tape.name}` is a persistent tape made on every iteration of the loop at "
            f"{model.where(loop.node)} and never deleted: each one keeps its recorded "
            "tensors alive into the next iteration",
            _FIX_DELETE,
        )
