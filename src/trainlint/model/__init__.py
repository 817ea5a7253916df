"""The training-loop model: what every rule reads instead of raw syntax.

Built in one visitor pass (:mod:`trainlint.model.syntax.scopes`) plus lazy, cached queries:

* ``imports`` -- local names to qualified names (``nn`` -> ``torch.nn``);
* ``value_of(expr, scope)`` / ``role_of`` -- what a binding holds (:mod:`.values.resolve`);
  ``class_kind(info)`` -- what a same-file class is; ``is_known_module(expr, scope)`` --
  whether a value is known (not guessed by name) to be a torch module;
* ``iteration(loop)`` -- the ordered events of one loop iteration (:mod:`.events`), with
  same-file helpers inlined; ``function_events(scope)`` the same for a function body;
* ``anchor_of(event)`` -- where a finding about an event is shown: its node, or for another
  module's code (a stub node: an inherited ``train_step``) this file's call reaching it;
* ``train_steps`` -- loops that backward and step (:mod:`.training`); ``window_steps`` adds
  functions that run one accumulation window per call (micro-step loop, then the step);
* ``callee(call, scope)`` -- the same-file function a call runs (also ``obj.method(...)`` on an
  instance of a same-file class, see :mod:`.dataflow.objects`);
* ``is_framework_managed(scope)`` -- Lightning / HF Trainer code the framework drives;
* other modules of the project (when built with a ``project`` index, see :mod:`.summaries`):
  ``external_call(call, scope)`` -- the summary of what a call runs in another module (a
  function, a method of an instance, a forward, a constructor): its effects on its arguments
  (zeroes, steps, backwards, switches train/eval, accumulates into ``self``), whether it
  disables grad, what it returns (activation, loss reduction, role);
  ``instance_summary(expr, scope)`` -- the class of another module an object is an instance of
  (``is_module``, also through bases in third modules; ``final_activation``,
  ``has_dropout``/``has_batchnorm``, its meter facts); ``returned_summary(call, scope, index)``
  -- what such a call returns; ``callee`` and ``method(info, name)`` follow other modules'
  functions and base-class methods as stubs (the queries live in :mod:`.summaries.queries`);
  ``matched_to_own_keys(state, receiver, scope)`` -- a state dict filtered to the receiver's
  own ``state_dict()`` keys (:mod:`.values.state_dicts`);
* ``operand_arguments(event, call, scope)`` -- for an accumulation inlined from a helper
  (``meter.update(loss)`` running ``self.sum += val * n``), the arguments of ``call`` its
  operand is made from (``loss``): what a fix at the call converts (:mod:`.dataflow.calls`);
* ``unused_result(call, scope)`` -- how any call's result is thrown away (a bare statement, a
  name nobody reads; not ``_``, not a notebook cell's displayed last line), and
  ``own_method_returns_nothing(receiver, scope, method)`` -- an override that returns no value
  (:mod:`.dataflow.results`);
  ``matched_to_own_keys(state, receiver, scope)`` -- a state dict filtered to the receiver's
  own ``state_dict()`` keys (:mod:`.values.state_dicts`);
* ``carried_totals`` -- running totals, lists averaged whole, meters and metric objects made
  before an epoch loop, filled in its batch loop, read after it and never reset
  (:mod:`.dataflow.carryover`, objects in ``.carried_objects``, the epoch loop's restarts and
  reports in ``.epochs``);
* ``evidence.is_tensor(expr, scope, before)`` / ``evidence.is_dataset(...)`` -- whether a value
  is known (from what made it, never its name) to be a torch tensor / a ``tf.data`` dataset
  (:mod:`.values.evidence`); ``discarded_results`` -- expression statements that throw away
  the new tensor or dataset an out-of-place method returns (:mod:`.dataflow.discarded`);
* ``evidence.is_tensor(expr, scope, before)`` -- whether a value is known (from what made it,
  never its name) to be a torch tensor (:mod:`.values.evidence`); ``discarded_results`` --
  expression statements that throw away the new tensor or ``tf.data`` dataset an out-of-place
  method returns (:mod:`.dataflow.discarded`);
* ``discarded_result(call, scope)`` -- how a call's result is thrown away (a bare statement, a
  name nobody reads; not ``_``, not a notebook cell's displayed last line), and
  ``own_method_returns_nothing(receiver, scope, method)`` -- an override that returns no value
  (:mod:`.dataflow.results`);
* ``unregistered_attributes`` -- ``self.x = [...]`` of modules, ``self.w = torch.zeros(...,
  requires_grad=True)`` in torch modules, never registered (:mod:`.values.submodules`);
* ``tensor_kind(expr, scope, before)`` -- what a tensor holds (:mod:`.values.kinds`);
  ``random_draw(expr, scope, before)`` -- whether a value was made by a random draw
  (``torch.randn``, an in-place ``.normal_()``, a helper returning one), by provenance only
  (:mod:`.values.draws`);
  ``loss_calls`` -- every loss call and which argument is its input (torch criteria and
  ``F.*``; keras ``y_true, y_pred``; ``tf.nn.*_with_logits`` and TF 1 ``tf.losses.*`` by their
  ``logits=``/``predictions=``; ``LossCall.tensorflow`` tells TF losses from torch ones);
  ``softmax_applications`` -- every softmax in the file, with what it is applied to.

The object is :class:`TrainingModel` (:mod:`.core`: the parse results, lookups, callees,
positions); its queries by concept are mixins kept beside the code they front:
:mod:`.values.queries`, :mod:`.dataflow.queries`, :mod:`.loops.queries`,
:mod:`.frameworks.queries` (a new query goes into its concept's mixin, not into the core).

Sub-packages, by concept:

* :mod:`.syntax` -- libcst helpers (``nodes``), imports to qualified names (``names``), the one
  visitor pass that records scopes, classes, bindings, calls and loops (``scopes``),
  notebook and ``# %%`` cells (``cells``: top-level statements, a cell's displayed last line);
* :mod:`.values` -- what a value is: roles (``roles``) resolved from where a value was made
  (``resolve``), class kinds from bases resolved transitively (``types``: ``class_kind``),
  result slots of wrappers (``wrappers``: ``amp.initialize``, ``accelerator.prepare``,
  ``deepspeed.initialize``, DDP), bound-method aliases (``aliases``: ``bound_method``),
  ``isinstance`` narrowing (``isinstance_checks``, also in conditional expressions and
  ``and``/``or``), functions chosen from a list or dict of same-file functions (``factories``:
  ``for name, make in zip(NAMES, LOADERS): make(...)``), torch-module evidence (``modules``:
  ``is_known_module``); the tensor lattice (``kinds``: logits,
  probabilities, log-probabilities, ..., with producer, softmax axis, layer width and the kind
  an activation was applied to), its evaluation over expressions (``tensors``: bindings joined
  across ``if`` branches, tuple returns, same-file forwards), module structure (``layers``:
  what calling a layer or an ``nn.Sequential`` returns), loss calls and their inputs
  (``losses``), activations meeting losses and the edits that remove them (``activations``);
* :mod:`.loops` -- what one iteration does: events and their conditions (``events``,
  ``event_types``, ``placement``), train steps (``training``), accumulation windows (``windows``),
  gradient ownership (``gradients``: also parameter groups two optimizers share,
  ``shared_parameters``; what unseen code may clear or compute: ``unseen_code``), schedulers and
  scalers (the step-order rules' shared helpers: ``event_plumbing``), what a loop makes afresh
  (``creations``: optimizers built in loops, models re-made there), optimizers left with a replaced
  model's parameters (``stale_optimizers``: ``model.stale_optimizers``), graphs carried into the
  next iteration (``carried``: ``carried_states`` -- a hidden state a model returns and is fed back
  with no ``.detach()`` in a loop that back-propagates; ``carried_attributes`` -- the same through a
  module's ``self.hidden``, never reset in the loop; ``needless_retained_graphs`` --
  ``retain_graph=True`` on an iteration's only backward);
* :mod:`.dataflow` -- where values go: graph tensors vs numbers (``graph``, the lattice in
  ``facts``), where a value was made (``provenance``: under ``no_grad``, by a forward or a
  loss, a string; back-propagated values), helpers' expressions read at one call (``calls``),
  instances of same-file classes and meters (``objects``), loss definition chains
  (``lossflow``, its answers in ``flows``, ``lossforms``), reductions, accumulators and averages,
  batching (a call's keyword through ``**kwargs``: ``keywords``);
  ``graph_cuts`` -- whether a backward target still reaches the model's parameters or was cut
  on every path (``.item()``, ``.detach()``, ``torch.tensor(...)``, ``requires_grad`` forced
  onto a cut value): ``trace(expr, scope, before)``, ``detached_backwards()``
  (:mod:`.dataflow.detachment`); ``retained_appends`` -- appends of graph tensors to a list
  that outlives the iteration, in grad-enabled code, never back-propagated
  (:mod:`.dataflow.retention`);
* :mod:`.loops.loop_purpose` -- ``trains(model, loop)`` / ``evaluates(model, loop)`` (a
  helper's mode switch before the loop counts as the direct one; and
  ``runs_graph_train_op``: a TF 1 ``sess.run`` of a ``minimize`` op): what a loop
  is for (rules weigh findings by it); :mod:`.loops.regions` -- ``eval_regions``: loops over
  eval loaders, functions named like evaluations, model calls after a training loop, with no
  backward (TL401/TL402);
* :mod:`.frameworks` -- torch data pipelines (``data``: ``model.data`` lists Dataset classes,
  ``DataLoader`` calls with their arguments and datasets, the loops iterating them;
  ``data.only_inspected(site)`` / ``data.single_batch(site)`` -- a loader no training reads,
  or one that yields a single batch, :mod:`.frameworks.loader_uses`) and the NumPy random
  draws made in loader workers (``workers``);
* ``modes`` -- train/eval and grad mode at a point, through same-file callers and, when the
  mode is still unknown at a parameter, the calls of the function in other project modules
  (:mod:`.summaries.callers`, found by :mod:`trainlint.callers`); ``mode_at(scope, event)``
  for an event inlined from a helper (at its own call), ``call_grad_disabled(scope, call)``
  (:mod:`.loops.modes`); ``plain_function`` / ``samples_noise`` -- model calls with no mode to
  get wrong: a model written as a function, a generator sampled from a random draw (not a
  name) by a file whose mode events never switch it to eval (:mod:`.loops.mode_exemptions`);
  ``restoring`` -- eval switches a train step can be reached from without ``.train()``
  (``unrestored_switches``), and
  ``layers_switched`` (what they affect) (:mod:`.loops.restoring`); ``Mode.EITHER`` when a
  train and an eval switch sit on two branches of one test;
  :mod:`.loops.mode_switches` -- ``collective_receiver``: switches over a dict/list of models
  (``self._models[name].eval()``) that stand for every model; ``fold`` /
  ``literal_arguments``: a helper's tests folded on a call's literal arguments
  (``set_model_mode("eval")`` runs only its eval branch, ``m.train(mode == "train")``);
* :mod:`.loops.caller_flags` -- ``parameter_flag(condition, scope)``: a test on a parameter
  of the function (``if do_zero_grad:``), the caller's decision; ``runs_whenever_caller_allows``;
* ``module_structure`` -- which models hold Dropout/BatchNorm or read ``self.training``
  (:mod:`.values.mode_layers`);
* :mod:`.frameworks` (keras) -- TensorFlow / keras structure. ``keras.model_of(expr, scope)`` is
  the keras model an expression refers to (``Sequential([...])`` plus ``.add()`` calls, the
  functional ``Model(inputs, outputs)``, a same-file ``keras.Model`` subclass, an
  application), with its ``heads`` (the final layer of each output and what it holds:
  logits, probabilities, unknown), ``layers``, ``training_layers()`` and pretrained
  ``bases``; ``keras.compiles`` every ``compile()`` with its losses (kind, ``from_logits``,
  output key) and metrics. Keras layers and models called on tensors are read through it by
  the tensor analysis (``tensor_kind``). A notebook is one module, so a model built in one
  cell and compiled in another is one model. ``keras_layers.dense_output(imports, call)`` is
  what a keras ``Dense`` or TF 1's ``tf.layers.dense``/``fully_connected`` outputs (activation,
  literal width); ``keras_calls.keras_call_method(model, scope)`` the keras ``call()`` a scope
  is in, ``keras_calls.training_guarded(model, site, method)`` whether a call there runs only
  under the training flag (``if training:``, ``tf.cond(training, ...)``, a rate made from it;
  also torch's ``if self.training:``);
  ``keras_modes.of_callable(func, scope)`` -- the Dropout/BatchNorm (training-dependent
  layers) a keras model or layer holds, and whether all of it could be read
  (:mod:`.frameworks.keras_modes`);
* ``tapes`` -- ``tf.GradientTape`` blocks (:mod:`.frameworks.tapes`): ``tapes.tapes`` (each
  with its ``with`` blocks, ``persistent``, ``records(node)``), ``recorded_calls(tape)``,
  ``recording(node)``, ``gradients`` (``tape.gradient`` calls with target and sources),
  ``applied(gradient)`` (its result reaches ``apply_gradients``/``minimize``/a variable
  update, also in a same-file caller), ``kept_across_iterations(tape)`` (a persistent tape
  made in a loop and never deleted there), ``is_train_step_override(scope)``;
  ``tape_paths.outside_target(gradient)`` -- a target computed outside the tape's blocks;
  ``tape_paths.cut_on_path(gradient)`` -- the ``.numpy()``/NumPy/``float()``/
  ``tf.stop_gradient`` every path from the target passes through
  (:mod:`.frameworks.tape_paths`);
* ``distribution`` -- ``tf.distribute`` (:mod:`.frameworks.distribute`): ``runs`` (each
  ``strategy.run(fn, ...)`` with the step function it runs and whether the strategy has
  several replicas), ``scopes`` (``with strategy.scope():`` blocks), ``strategy_kind(expr,
  scope)``; ``replica_losses.per_replica_mean(target, scope, before)`` -- a
  ``tf.reduce_mean`` or default-reduction keras loss on a loss's definition chain that
  averages over one replica's batch (:mod:`.frameworks.replica_losses`);
* ``tfdata`` -- ``tf.data`` pipelines (:mod:`.frameworks.tfdata`): ``stages`` (every dataset
  method call of a tf.data pipeline, and the sources), ``pipeline(stage)`` (the stages before
  it, through method chains and rebinding of one variable, across notebook cells; from a
  tf.data/TFDS/keras source or an unknown origin), ``downstream``/``later`` (what is applied
  to a stage's result), ``open_batch(stage)`` (the batch a shuffle would reorder),
  ``random_draw(map_stage)`` (the random call a map function makes, :mod:`.tfdata_random`),
  ``frozen_by_cache(cache)`` (the random map or shuffle a ``cache()`` replays);
* ``trainable_changes`` -- ``X.trainable = v`` assignments (``changes``, with the object they
  concern, also through ``for layer in base.layers``) and the ``stale`` ones: after the
  latest ``compile()`` of a model that ``fit()``/``train_on_batch()`` trains, changing its
  weights' status, with no compile of another model after them (the GAN idiom)
  (:mod:`.frameworks.keras_trainable`).
"""

from __future__ import annotations

from trainlint.model.core import TrainingModel
from trainlint.model.dataflow.results import UnusedResult
from trainlint.model.loops.events import Condition, Event, EventKind
from trainlint.model.loops.training import Accumulation, TrainStep, WindowKind
from trainlint.model.summaries.queries import External
from trainlint.model.summaries.types import ClassSummary, FunctionSummary, Returned
from trainlint.model.syntax.scopes import Binding, CallSite, ClassInfo, LoopInfo, Scope
from trainlint.model.values.losses import LossCall, LossFamily
from trainlint.model.values.roles import Role, Value
from trainlint.model.values.tensors import Activation, TensorKind
from trainlint.model.values.types import ClassKind

__all__ = [
    "LossCall",
    "LossFamily",
    "Activation",
    "TensorKind",
    "Accumulation",
    "TrainStep",
    "WindowKind",
    "Binding",
    "ClassSummary",
    "External",
    "FunctionSummary",
    "Returned",
    "CallSite",
    "ClassInfo",
    "ClassKind",
    "Condition",
    "UnusedResult",
    "Event",
    "EventKind",
    "LoopInfo",
    "Role",
    "Scope",
    "TrainingModel",
    "Value",
]
