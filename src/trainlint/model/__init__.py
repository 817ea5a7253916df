"""The training-loop model: what every rule reads instead of raw syntax.

Built in one visitor pass (:mod:`trainlint.model.syntax.scopes`) plus lazy, cached queries:

* ``imports`` -- local names to qualified names (``nn`` -> ``torch.nn``);
* ``value_of(expr, scope)`` / ``role_of`` -- what a binding holds (:mod:`.values.resolve`);
  ``class_kind(info)`` -- what a same-file class is; ``is_known_module(expr, scope)`` --
  whether a value is known (not guessed by name) to be a torch module;
* ``iteration(loop)`` -- the ordered events of one loop iteration (:mod:`.events`), with
  same-file helpers inlined; ``function_events(scope)`` the same for a function body;
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
  ``loss_calls`` -- every loss call and which argument is its input (torch criteria and
  ``F.*``; keras ``y_true, y_pred``; ``tf.nn.*_with_logits`` and TF 1 ``tf.losses.*`` by their
  ``logits=``/``predictions=``; ``LossCall.tensorflow`` tells TF losses from torch ones);
  ``softmax_applications`` -- every softmax in the file, with what it is applied to.

Sub-packages, by concept:

* :mod:`.syntax` -- libcst helpers (``nodes``), imports to qualified names (``names``), the one
  visitor pass that records scopes, classes, bindings, calls and loops (``scopes``),
  notebook and ``# %%`` cells (``cells``: top-level statements, a cell's displayed last line);
* :mod:`.values` -- what a value is: roles (``roles``) resolved from where a value was made
  (``resolve``), class kinds from bases resolved transitively (``types``: ``class_kind``),
  result slots of wrappers (``wrappers``: ``amp.initialize``, ``accelerator.prepare``,
  ``deepspeed.initialize``, DDP), bound-method aliases (``aliases``: ``bound_method``),
  ``isinstance`` narrowing (``isinstance_checks``), torch-module evidence (``modules``:
  ``is_known_module``); the tensor lattice (``kinds``: logits,
  probabilities, log-probabilities, ..., with producer, softmax axis, layer width and the kind
  an activation was applied to), its evaluation over expressions (``tensors``: bindings joined
  across ``if`` branches, tuple returns, same-file forwards), module structure (``layers``:
  what calling a layer or an ``nn.Sequential`` returns), loss calls and their inputs
  (``losses``), activations meeting losses and the edits that remove them (``activations``);
* :mod:`.loops` -- what one iteration does: events and their conditions (``events``,
  ``event_types``, ``placement``), train steps (``training``), accumulation windows
  (``windows``), gradient ownership (``gradients``), schedulers and scalers, what a loop makes
  afresh (``creations``: optimizers built in loops, models re-made there), optimizers left
  with a replaced model's parameters (``stale_optimizers``: ``model.stale_optimizers``),
  graphs carried into the next iteration (``carried``: ``carried_states`` -- a hidden state
  a model returns and is fed back with no ``.detach()`` in a loop that back-propagates;
  afresh (``creations``: optimizers built in loops, models re-made there), graphs carried
  into the next iteration (``carried``: ``carried_states`` -- a hidden state a model returns
  and is fed back with no ``.detach()`` in a loop that back-propagates; ``carried_attributes``
  -- the same through a module's ``self.hidden``, never reset in the loop;
  ``needless_retained_graphs`` -- ``retain_graph=True`` on an iteration's only backward);
* :mod:`.dataflow` -- where values go: graph tensors vs numbers (``graph``, the lattice in
  ``facts``), where a value was made (``provenance``: under ``no_grad``, by a forward or a
  loss, a string; back-propagated values), helpers' expressions read at one call (``calls``),
  instances of same-file classes and meters (``objects``), loss definition chains
  (``lossflow``, ``lossforms``), reductions, accumulators and averages, batching;
  ``graph_cuts`` -- whether a backward target still reaches the model's parameters or was cut
  on every path (``.item()``, ``.detach()``, ``torch.tensor(...)``, ``requires_grad`` forced
  onto a cut value): ``trace(expr, scope, before)``, ``detached_backwards()``
  (:mod:`.dataflow.detachment`); ``retained_appends`` -- appends of graph tensors to a list
  that outlives the iteration, in grad-enabled code, never back-propagated
  (:mod:`.dataflow.retention`);
* :mod:`.loops.regions` -- ``trains(model, loop)`` / ``evaluates(model, loop)`` (and
  ``runs_graph_train_op``: a TF 1 ``sess.run`` of a ``minimize`` op): what a loop
  is for (rules weigh findings by it); ``eval_regions`` -- loops over eval loaders, functions
  named like evaluations, model calls after a training loop, with no backward (TL401/TL402);
* :mod:`.frameworks` -- torch data pipelines (``data``: ``model.data`` lists Dataset classes,
  ``DataLoader`` calls with their arguments and datasets, the loops iterating them) and the
  NumPy random draws made in loader workers (``workers``);
* ``modes`` -- train/eval and grad mode at a point, through same-file callers
  (:mod:`.loops.modes`); ``restoring`` -- eval switches a train step can be reached from
  without ``.train()`` (``unrestored_switches``), and ``layers_switched`` (what they affect)
  (:mod:`.loops.restoring`); ``Mode.EITHER`` when a train and an eval switch sit on two
  branches of one test;
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
  under the training flag (``if training:``, ``tf.cond(training, ...)``, a rate made from it);
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

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange

from trainlint.model.dataflow.carryover import CarriedTotal, carried_totals
from trainlint.model.dataflow.detachment import GraphCuts
from trainlint.model.dataflow.discarded import OutOfPlaceDiscard, discarded_results
from trainlint.model.dataflow.graph import Dataflow
from trainlint.model.dataflow.objects import method_of_instance
from trainlint.model.dataflow.results import (
    UnusedResult,
    own_method_returns_nothing,
    unused_result,
)
from trainlint.model.dataflow.retention import RetainedAppend, retained_appends
from trainlint.model.frameworks.data import DataPipelines
from trainlint.model.frameworks.distribute import Distribution
from trainlint.model.frameworks.keras_models import KerasModels
from trainlint.model.frameworks.keras_modes import KerasModes
from trainlint.model.frameworks.keras_trainable import TrainableChanges
from trainlint.model.frameworks.replica_losses import ReplicaLosses
from trainlint.model.frameworks.tape_paths import TapePaths
from trainlint.model.frameworks.tapes import Tapes
from trainlint.model.frameworks.tfdata import TfDataPipelines
from trainlint.model.loops.carried import (
    CarriedAttribute,
    CarriedState,
    RetainedBackward,
    carried_attributes,
    carried_states,
    needless_retained_graphs,
)
from trainlint.model.loops.creations import Creations
from trainlint.model.loops.events import Condition, Event, EventKind, IterationBuilder
from trainlint.model.loops.modes import ModeAnalysis
from trainlint.model.loops.regions import EvalRegion, eval_regions
from trainlint.model.loops.restoring import TrainModeRestoring
from trainlint.model.loops.stale_optimizers import StaleOptimizer, stale_optimizers
from trainlint.model.loops.training import (
    Accumulation,
    TrainStep,
    WindowKind,
    per_call_steps,
    train_steps,
)
from trainlint.model.summaries.queries import (
    External,
    SummarySource,
    external_call,
    external_callee,
    inherited_method,
    instance_summary,
    returned_of,
)
from trainlint.model.summaries.stubs import Stubs
from trainlint.model.summaries.types import ClassSummary, FunctionSummary, Returned
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import (
    Binding,
    CallSite,
    ClassInfo,
    LoopInfo,
    Scope,
    ScopeBuilder,
)
from trainlint.model.values.activations import SoftmaxApplication, softmax_applications
from trainlint.model.values.aliases import bound_method
from trainlint.model.values.evidence import Evidence
from trainlint.model.values.losses import LossCall, LossFamily, loss_calls
from trainlint.model.values.mode_layers import ModuleStructure
from trainlint.model.values.modules import is_known_module
from trainlint.model.values.resolve import ValueResolver
from trainlint.model.values.roles import Role, Value
from trainlint.model.values.state_dicts import matched_to_own_keys
from trainlint.model.values.submodules import UnregisteredAttribute, unregistered_attributes
from trainlint.model.values.tensors import Activation, TensorAnalysis, TensorKind
from trainlint.model.values.types import ClassKind, ClassKinds
from trainlint.positions import positions

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

_LIGHTNING_BASES = ("LightningModule",)
_HF_TRAINER_BASES = ("Trainer", "Seq2SeqTrainer")


class TrainingModel:
    """Everything rules need to know about one file."""

    def __init__(
        self,
        module: cst.Module,
        path: Path | str = "<string>",
        text: str = "",
        project: SummarySource | None = None,
    ) -> None:
        self.module = module
        #: The project index as this file sees it (None: same-file knowledge only).
        self.project = project
        self.path = Path(path)
        self.text = text or module.code
        builder = ScopeBuilder(module)
        builder.walk(module)
        self.imports = builder.imports
        self.module_scope = builder.module_scope
        self.scopes = builder.scopes
        self.classes = builder.classes
        self.loops = builder.loops
        self.calls = builder.calls
        self.expression_statements = builder.expression_statements
        self._order_of = builder.order_of
        self._loops_by_node = {id(loop.node): loop for loop in self.loops}
        self._iterations: dict[int, list[Event]] = {}
        self._function_events: dict[int, list[Event]] = {}

    @classmethod
    def from_source(
        cls, text: str, path: Path | str = "<string>", project: SummarySource | None = None
    ) -> TrainingModel:
        return cls(cst.parse_module(text), path, text, project)

    # ------------------------------------------------------------------ structure
    def loop_for(self, node: cst.CSTNode) -> LoopInfo | None:
        return self._loops_by_node.get(id(node))

    def register_loop(self, loop: LoopInfo) -> None:
        """A loop of a stub (another module's function, see :mod:`.summaries.stubs`)."""
        self._loops_by_node[id(loop.node)] = loop

    @cached_property
    def stubs(self) -> Stubs:
        """Other modules' definitions as stubs the model follows like its own helpers."""
        return Stubs(self)

    def order_of(self, node: cst.CSTNode) -> int | None:
        return self._order_of.get(id(node))

    def iteration(self, loop: LoopInfo) -> list[Event]:
        """The events of one iteration of ``loop`` (nested loops and helpers included)."""
        key = id(loop.node)
        if key not in self._iterations:
            self._iterations[key] = IterationBuilder(self).loop_events(loop)
        return self._iterations[key]

    def function_events(self, scope: Scope) -> list[Event]:
        key = id(scope.node)
        if key not in self._function_events:
            self._function_events[key] = IterationBuilder(self).function_events(scope)
        return self._function_events[key]

    def enclosing_loops(self, loop: LoopInfo) -> list[LoopInfo]:
        found, current = [], loop.parent
        while current is not None:
            found.append(current)
            current = current.parent
        return found

    # ------------------------------------------------------------------ classes
    def class_bases(self, info: ClassInfo, seen: frozenset[str] = frozenset()) -> set[str]:
        """Every base, transitively through same-file classes, as written or qualified."""
        found: set[str] = set()
        for base in info.bases:
            found.add(base)
            short = base.rsplit(".", 1)[-1]
            local = self.classes.get(base) or self.classes.get(short)
            if local is not None and local.name not in seen and local is not info:
                found |= self.class_bases(local, seen | {info.name})
        return found

    @cached_property
    def class_kinds(self) -> ClassKinds:
        return ClassKinds(self)

    def class_kind(self, info: ClassInfo) -> ClassKind:
        """What a same-file class is, from its bases resolved transitively (see ``.types``)."""
        return self.class_kinds.kind_of(info)

    def is_torch_module_class(self, info: ClassInfo) -> bool:
        """A class known to derive from ``torch.nn.Module`` (Lightning modules included)."""
        return self.class_kind(info).is_torch_module

    def is_module_class(self, info: ClassInfo) -> bool:
        """A model class of any framework; for bases trainlint cannot see, one named so."""
        kind = self.class_kind(info)
        if kind is not ClassKind.UNKNOWN:
            return kind.is_torch_module or kind is ClassKind.KERAS_MODEL
        return any(
            b.endswith(("Module", "Model", "PreTrainedModel", "LightningModule"))
            for b in self.class_bases(info)
        )

    def is_lightning_class(self, info: ClassInfo | None) -> bool:
        return info is not None and any(
            b.rsplit(".", 1)[-1] in _LIGHTNING_BASES for b in self.class_bases(info)
        )

    def is_hf_trainer_class(self, info: ClassInfo | None) -> bool:
        if info is None:
            return False
        return any(
            b.rsplit(".", 1)[-1] in _HF_TRAINER_BASES
            and (b.startswith("transformers") or "." not in b)
            for b in self.class_bases(info)
        )

    def uses_manual_optimization(self, info: ClassInfo) -> bool:
        for bindings in (info.attributes.get("automatic_optimization", []),):
            for binding in bindings:
                if isinstance(binding.value, cst.Name) and binding.value.value == "False":
                    return True
        value = info.class_assignments.get("automatic_optimization")
        return isinstance(value, cst.Name) and value.value == "False"

    def is_framework_managed(self, scope: Scope) -> bool:
        """Code whose optimization loop a framework runs (Lightning, HF Trainer)."""
        cls = scope.cls
        if self.is_hf_trainer_class(cls):
            return True
        if self.is_lightning_class(cls):
            return not self.uses_manual_optimization(cls)  # type: ignore[arg-type]
        return False

    # ------------------------------------------------------------------ functions
    def callee(self, call: cst.Call, scope: Scope, external: bool = True) -> Scope | None:
        """The function or method ``call`` runs, if it can be told statically: same-file, or
        (``external``) the stub of another project module's (see :mod:`.summaries.stubs`).
        Maps of a function's same-file callers pass ``external=False``: they need no other
        module, and asking would summarize every imported function the file calls."""
        func = call.func
        if isinstance(func, cst.Name):
            current: Scope | None = scope
            while current is not None:
                found = current.functions.get(func.value)
                if found is not None:
                    return found
                current = current.parent
            found = method_of_instance(self, call, scope, external=False)
            if found is not None:
                return found
            return external_callee(self, call, scope) if external else None
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and scope.cls is not None
        ):
            return self.method(scope.cls, func.attr.value)
        found = method_of_instance(self, call, scope, external)  # ``meter.update(loss)``
        if found is not None or not external:
            return found
        return external_callee(self, call, scope)

    def external_call(self, call: cst.Call, scope: Scope) -> External | None:
        """What ``call`` runs in another module of the project (see :mod:`.summaries`)."""
        return external_call(self, call, scope) if self.project is not None else None

    def instance_summary(
        self, expr: cst.BaseExpression | None, scope: Scope
    ) -> ClassSummary | None:
        """The class of another project module ``expr`` is an instance of."""
        return instance_summary(self, expr, scope) if self.project is not None else None

    def returned_summary(
        self, call: cst.Call, scope: Scope, index: int | None = None
    ) -> Returned | None:
        """What a call into another module returns: activation, loss reduction, role."""
        return returned_of(self, call, scope, index) if self.project is not None else None

    def method(self, info: ClassInfo, name: str) -> Scope | None:
        found = info.methods.get(name)
        if found is not None:
            return found
        for base in info.bases:
            local = self.classes.get(base.rsplit(".", 1)[-1])
            if local is not None and local is not info:
                found = local.methods.get(name)
                if found is not None:
                    return found
        return inherited_method(self, info, name)  # a base class of another project module

    def argument_renames(self, call: cst.Call, callee: Scope) -> dict[str, str | None]:
        """Callee parameter -> the caller's name for the argument (None when not a name)."""
        params = list(callee.params)
        if callee.cls is not None and params and params[0] in ("self", "cls"):
            params = params[1:]
        renames: dict[str, str | None] = {}
        position = 0
        for arg in call.args:
            if arg.star:
                continue
            if arg.keyword is not None:
                renames[arg.keyword.value] = dotted(arg.value)
            elif position < len(params):
                renames[params[position]] = dotted(arg.value)
                position += 1
        return {k: v for k, v in renames.items() if k != v}

    # ------------------------------------------------------------------ values and roles
    def lookup(self, name: str, scope: Scope, before: int | None = None) -> list[Binding]:
        """Bindings of ``name`` visible from ``scope`` (latest first)."""
        if name.startswith("self.") and scope.cls is not None:
            bindings = list(scope.cls.attributes.get(name[len("self.") :], []))
            bindings += scope.bindings.get(name, [])
        else:
            bindings = []
            current: Scope | None = scope
            owner: Scope | None = None
            while current is not None and not bindings:
                bindings = list(current.bindings.get(name, []))
                owner = current
                current = current.parent
            if before is not None and owner is not None and name in owner.params:
                # used before any rebinding: the parameter itself, not the later value
                # (``loss = bce(pred, y); pred = torch.sigmoid(pred)``)
                return sorted(
                    (b for b in bindings if b.order < before), key=lambda b: b.order, reverse=True
                )
        if before is not None:
            earlier = [b for b in bindings if b.order < before]
            bindings = earlier or bindings
        return sorted(bindings, key=lambda b: b.order, reverse=True)

    def role_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Role | None:
        value = self.value_of(expr, scope)
        return value.role if value is not None else None

    def value_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Value | None:
        """What ``expr`` holds in ``scope``: its role, and the call that made it."""
        return self.values.value_of(expr, scope)

    def value_of_call(self, call: cst.Call, scope: Scope, index: int | None) -> Value | None:
        """What ``call`` returns (result slot ``index`` for tuple-returning wrappers)."""
        return self.values.value_of_call(call, scope, index)

    def bound_method(self, call: cst.Call, scope: Scope) -> tuple[cst.BaseExpression, str] | None:
        """``(receiver, method)`` for ``call``, also through ``step = optimizer.step``."""
        return bound_method(self, call, scope)

    def unused_result(self, call: cst.Call, scope: Scope) -> UnusedResult | None:
        """How the result of ``call`` is thrown away, or None (see :mod:`.dataflow.results`)."""
        return unused_result(self, call, scope)

    def own_method_returns_nothing(
        self, receiver: cst.BaseExpression, scope: Scope, method: str
    ) -> bool | None:
        """Whether ``receiver``'s class overrides ``method`` with one returning no value."""
        return own_method_returns_nothing(self, receiver, scope, method)

    def matched_to_own_keys(
        self, state: cst.BaseExpression | None, receiver: cst.BaseExpression, scope: Scope
    ) -> bool:
        """Whether ``state`` keeps only keys of ``receiver``'s own ``state_dict()``."""
        return matched_to_own_keys(self, state, receiver, scope)

    def is_known_module(self, expr: cst.BaseExpression, scope: Scope) -> bool:
        """Whether ``expr`` is known (not guessed from its name) to be a torch module."""
        return is_known_module(self, expr, scope)

    @cached_property
    def evidence(self) -> Evidence:
        """``is_tensor(expr, scope, before)``: known, not named (see ``.values.evidence``)."""
        return Evidence(self)

    @cached_property
    def discarded_results(self) -> list[OutOfPlaceDiscard]:
        """Statements discarding a tensor's or dataset's new value (see ``.discarded``)."""
        return discarded_results(self)

    @cached_property
    def unregistered_attributes(self) -> list[UnregisteredAttribute]:
        """Modules/grad tensors a torch module holds unregistered (see ``.submodules``)."""
        return unregistered_attributes(self)

    @cached_property
    def values(self) -> ValueResolver:
        return ValueResolver(self)

    @cached_property
    def tensors(self) -> TensorAnalysis:
        """What tensors hold: logits, probabilities, ... (see :mod:`.tensors`)."""
        return TensorAnalysis(self)

    def tensor_kind(
        self, expr: cst.BaseExpression | None, scope: Scope, before: int | None = None
    ) -> TensorKind:
        return self.tensors.kind_of(expr, scope, before)

    @cached_property
    def keras(self) -> KerasModels:
        """Keras model structure: layers, heads and their activations (see :mod:`.frameworks`)."""
        return KerasModels(self)

    @cached_property
    def keras_modes(self) -> KerasModes:
        """Keras models and layers holding Dropout/BatchNorm (:mod:`.frameworks.keras_modes`)."""
        return KerasModes(self)

    @cached_property
    def tapes(self) -> Tapes:
        """``tf.GradientTape`` blocks and their gradients (see :mod:`.frameworks.tapes`)."""
        return Tapes(self)

    @cached_property
    def trainable_changes(self) -> TrainableChanges:
        """``X.trainable = ...`` and the ones no later compile() makes visit fit()."""
        return TrainableChanges(self)

    @cached_property
    def tfdata(self) -> TfDataPipelines:
        """``tf.data`` pipelines: stages, their order, sources (see :mod:`.frameworks.tfdata`)."""
        return TfDataPipelines(self)

    @cached_property
    def tape_paths(self) -> TapePaths:
        """Gradient targets computed outside their tape or cut from it (``.tape_paths``)."""
        return TapePaths(self)

    @cached_property
    def distribution(self) -> Distribution:
        """``tf.distribute`` strategies and their replica steps (``.frameworks.distribute``)."""
        return Distribution(self)

    @cached_property
    def replica_losses(self) -> ReplicaLosses:
        """Per-replica means on a replica step's loss (``.frameworks.replica_losses``)."""
        return ReplicaLosses(self)

    @cached_property
    def loss_calls(self) -> list[LossCall]:
        """Every loss call, its family and prediction argument (see :mod:`.losses`)."""
        return loss_calls(self)

    @cached_property
    def softmax_applications(self) -> list[SoftmaxApplication]:
        """Every softmax/log-softmax applied or stacked in the file (see :mod:`.activations`)."""
        return list(softmax_applications(self))

    @cached_property
    def positions(self) -> Mapping[cst.CSTNode, CodeRange]:
        """Source positions; computed on first use only (most files never need them).

        Same ranges as libcst's PositionProvider, about 3x cheaper (see trainlint.positions).
        """
        return positions(self.module)

    def text_of(self, node: cst.CSTNode | None) -> str:
        """The source code of ``node`` as written (empty for ``None``), for messages and fixes."""
        return self.module.code_for_node(node) if node is not None else ""

    def line_of(self, node: cst.CSTNode) -> int:
        """The 1-based line where ``node`` starts (0 when unknown)."""
        found = self.positions.get(node)
        return found.start.line if found is not None else 0  # 0: a stub's (another module's)

    def where(self, node: cst.CSTNode) -> str:
        """``line N``, or for a stub's node (another module's code) where it comes from."""
        line = self.line_of(node)
        if line:
            return f"line {line}"
        origin = self.stubs.origin(node)
        return f"in `{origin}`" if origin else "line 0"

    @cached_property
    def model_classes(self) -> dict[str, ClassInfo]:
        return {n: c for n, c in self.classes.items() if self.is_module_class(c)}

    @cached_property
    def train_steps(self) -> list[TrainStep]:
        """Innermost loops that run backward and step (see :mod:`.training`)."""
        return train_steps(self)

    @cached_property
    def window_steps(self) -> list[TrainStep]:
        """``train_steps`` plus functions running one window per call (``per_call`` set)."""
        return self.train_steps + per_call_steps(self, self.train_steps)

    def calls_in(self, scope: Scope) -> list[CallSite]:
        """The call sites written directly in ``scope`` (not in functions nested in it)."""
        return self._calls_by_scope.get(id(scope.node), [])

    def calls_in_class(self, info: ClassInfo) -> list[CallSite]:
        """The call sites written in the methods of ``info``."""
        return self._calls_by_class.get(id(info.node), [])

    @cached_property
    def _calls_by_class(self) -> dict[int, list[CallSite]]:
        found: dict[int, list[CallSite]] = {}
        for site in self.calls:
            if site.scope.cls is not None:
                found.setdefault(id(site.scope.cls.node), []).append(site)
        return found

    @cached_property
    def _calls_by_scope(self) -> dict[int, list[CallSite]]:
        found: dict[int, list[CallSite]] = {}
        for site in self.calls:
            found.setdefault(id(site.scope.node), []).append(site)
        return found

    @cached_property
    def creations(self) -> Creations:
        """Optimizers made in loops and what they train (see :mod:`.loops.creations`)."""
        return Creations(self)

    @cached_property
    def stale_optimizers(self) -> list[StaleOptimizer]:
        """Optimizers whose model is replaced before they train (see ``.stale_optimizers``)."""
        return stale_optimizers(self)

    @cached_property
    def data(self) -> DataPipelines:
        """Dataset classes, DataLoader calls and what they read (see :mod:`.frameworks.data`)."""
        return DataPipelines(self)

    @cached_property
    def eval_regions(self) -> list[EvalRegion]:
        """Code that runs a model to evaluate it (see :mod:`.loops.regions`)."""
        return eval_regions(self)

    @cached_property
    def modes(self) -> ModeAnalysis:
        """Train/eval and grad mode along functions and loops (see :mod:`.loops.modes`)."""
        return ModeAnalysis(self)

    @cached_property
    def restoring(self) -> TrainModeRestoring:
        """Eval switches a train step is reached from again without ``.train()`` (see
        :mod:`.loops.restoring`)."""
        return TrainModeRestoring(self)

    @cached_property
    def module_structure(self) -> ModuleStructure:
        """Which models hold mode-dependent layers (see :mod:`.values.modules`)."""
        return ModuleStructure(self)

    @cached_property
    def carried_states(self) -> list[CarriedState]:
        """Model states fed back next iteration with their graph (see :mod:`.loops.carried`)."""
        return carried_states(self)

    @cached_property
    def carried_attributes(self) -> list[CarriedAttribute]:
        """Modules keeping ``self.hidden`` across calls in a back-propagating loop, never
        reset there (see :mod:`.loops.carried`)."""
        return carried_attributes(self)

    @cached_property
    def needless_retained_graphs(self) -> list[RetainedBackward]:
        """``retain_graph=True`` on the only backward of each iteration (:mod:`.loops.carried`)."""
        return needless_retained_graphs(self)

    @cached_property
    def retained_appends(self) -> list[RetainedAppend]:
        """Appends that keep a graph per iteration alive (see :mod:`.dataflow.retention`)."""
        return retained_appends(self)

    @cached_property
    def graph_cuts(self) -> GraphCuts:
        """Whether backward targets still reach the model (see :mod:`.dataflow.detachment`)."""
        return GraphCuts(self)

    @cached_property
    def carried_totals(self) -> list[CarriedTotal]:
        """Totals carried from one epoch into the next (see :mod:`.dataflow.carryover`)."""
        return carried_totals(self)

    @cached_property
    def dataflow(self) -> Dataflow:
        """Graph tensors vs numbers, reductions, uses of accumulators (see :mod:`.dataflow`)."""
        return Dataflow(self)
