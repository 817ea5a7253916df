from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.distribute import ReplicaRun
from trainlint.rule import Violation
from trainlint.slicing import calling

_FIX = Fix(
    "reduce per example, then average over the global batch",
    "loss_object = keras.losses.SparseCategoricalCrossentropy(reduction='none')\n"
    "loss = tf.nn.compute_average_loss(loss_object(y, logits), "
    "global_batch_size=GLOBAL_BATCH_SIZE)",
)


class DistributedLossNotGloballyAveraged(Rule):
    """A `strategy.run` step averages its loss per replica instead of over the global batch.

    ## What it does
    Finds the step functions a `tf.distribute` strategy runs once per replica
    (`strategy.run(train_step, args=...)`, also `experimental_run_v2`, through
    `tf.function(...)` and `functools.partial(...)`), for strategies with several replicas
    (`MirroredStrategy`, `TPUStrategy`, `MultiWorkerMirroredStrategy`,
    `CentralStorageStrategy`, `ParameterServerStrategy`, or a name used as a strategy whose
    kind cannot be seen). In each `GradientTape` of such a step whose gradients are applied,
    it follows the loss given to `tape.gradient` back through its bindings, arithmetic,
    TensorFlow ops and same-file helpers, and flags a `tf.reduce_mean` (or `keras.ops.mean`)
    over the whole batch, or a call of a keras loss object built with the default reduction
    (`SUM_OVER_BATCH_SIZE`/`AUTO`).

    Stays silent on `tf.nn.compute_average_loss(...)`, on losses built with
    `reduction=NONE`/`SUM` and scaled by the code, on a loss divided by something that is
    not a literal (`/ strategy.num_replicas_in_sync`, `/ GLOBAL_BATCH_SIZE`), on means over
    one axis of each example (`axis=-1`), on steps that average the gradients themselves
    (`ctx.all_reduce(tf.distribute.ReduceOp.MEAN, grads)`), on `OneDeviceStrategy`, and on
    `fit()`.

    ## Why is this bad?
    Each replica computes the mean over its own slice of the batch, and `apply_gradients`
    in replica context sums the gradients of all replicas. With N replicas the update is N
    times too large: the effective learning rate depends on the number of devices, and a
    model tuned on one GPU diverges on eight.

    ## Example
    ```python
    loss_object = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_object(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    strategy.run(train_step, args=(x, y))
    ```

    ## Use instead
    ```python
    loss_object = tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=tf.keras.losses.Reduction.NONE)

    def train_step(x, y):
        with tf.GradientTape() as tape:
            per_example = loss_object(y, model(x, training=True))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        ...
    ```
    """

    code = "TL607"
    name = "distributed-loss-not-globally-averaged"
    severity = Severity.WARNING
    frameworks = ("tf",)
    triggers = ("distribute", "strategy")
    # ``strategy.run(fn)`` (or its experimental spellings) in this file: the step is a same-file
    # function, reached from there
    block_triggers = (calling("run", "experimental_run", "experimental_run_v2"),)
    summary = "A `strategy.run` step's loss is a per-replica mean, not a global-batch average."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        reported: set[int] = set()
        for run in model.distribution.runs:
            for violation in self._step(model, run):
                if id(violation.node) not in reported:
                    reported.add(id(violation.node))
                    yield violation

    def _step(self, model: TrainingModel, run: ReplicaRun) -> Iterator[Violation]:
        tapes = model.tapes
        if model.distribution.averages_gradients(run.step):
            return
        for gradient in tapes.gradients:
            if gradient.tape.scope is not run.step or gradient.target is None:
                continue
            if not tapes.applied(gradient):
                continue
            found = model.replica_losses.per_replica_mean(
                gradient.target, gradient.site.scope, gradient.site.order
            )
            if found is None:
                continue
            built = (
                f" (built at {model.where(found.constructor)} with the default reduction)"
                if found.constructor is not None
                else ""
            )
            strategy = model.text_of(run.strategy)
            yield Violation(
                found.node,
                f"{found.how}{built} averages the loss over this replica's examples only, "
                f"but `{strategy}.run` runs `{run.step.short_name}` on every replica and "
                "the gradients are summed across replicas: the update is scaled by the "
                "number of replicas",
                _FIX,
            )
