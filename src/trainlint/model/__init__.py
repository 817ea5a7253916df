"""The training-loop model: what every rule reads instead of raw syntax.

Built in one visitor pass (:mod:`trainlint.model.syntax.scopes`) plus lazy, cached queries:

* ``imports`` -- local names to qualified names (``nn`` -> ``torch.nn``);
* ``value_of(expr, scope)`` / ``role_of`` -- what a binding holds (:mod:`.roles`);
* ``iteration(loop)`` -- the ordered events of one loop iteration (:mod:`.events`), with
  same-file helpers inlined; ``function_events(scope)`` the same for a function body;
* ``train_steps`` -- loops that backward and step (:mod:`.training`); ``window_steps`` adds
  functions that run one accumulation window per call (micro-step loop, then the step);
* ``callee(call, scope)`` -- the same-file function a call runs (also ``obj.method(...)`` on an
  instance of a same-file class, see :mod:`.dataflow.objects`);
* ``is_framework_managed(scope)`` -- Lightning / HF Trainer code the framework drives.

Sub-packages, by concept:

* :mod:`.syntax` -- libcst helpers (``nodes``), imports to qualified names (``names``), the one
  visitor pass that records scopes, classes, bindings, calls and loops (``scopes``);
* :mod:`.values` -- what a value is: roles (``roles``), the tensor lattice (``tensors``), loss
  calls and their inputs (``losses``);
* :mod:`.loops` -- what one iteration does: events and their conditions (``events``,
  ``event_types``, ``placement``), train steps (``training``), accumulation windows
  (``windows``), gradient ownership (``gradients``), schedulers and scalers;
* :mod:`.dataflow` -- where values go: graph tensors vs numbers (``graph``, the lattice in
  ``facts``), where a value was made (``provenance``: under ``no_grad``, by a forward or a
  loss, a string; back-propagated values), helpers' expressions read at one call (``calls``),
  instances of same-file classes and meters (``objects``), loss definition chains
  (``lossflow``, ``lossforms``), reductions, accumulators and averages, batching;
* :mod:`.loops.regions` -- ``trains(model, loop)`` / ``evaluates(model, loop)``: what a loop
  is for (rules weigh findings by it);
* :mod:`.frameworks` -- TensorFlow / keras structure. ``keras.model_of(expr, scope)`` is the
  keras model an expression refers to (``Sequential([...])`` plus ``.add()`` calls, the
  functional ``Model(inputs, outputs)``, a same-file ``keras.Model`` subclass, an
  application), with its ``heads`` (the final layer of each output and what it holds:
  logits, probabilities, unknown), ``layers``, ``training_layers()`` and pretrained
  ``bases``; ``keras.compiles`` every ``compile()`` with its losses (kind, ``from_logits``,
  output key) and metrics. Keras layers and models called on tensors are read through it by
  the tensor analysis (``tensor_kind``). A notebook is one module, so a model built in one
  cell and compiled in another is one model.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange

from trainlint.model.dataflow.graph import Dataflow
from trainlint.model.dataflow.objects import method_of_instance
from trainlint.model.frameworks.keras_models import KerasModels
from trainlint.model.loops.events import Condition, Event, EventKind, IterationBuilder
from trainlint.model.loops.training import (
    Accumulation,
    TrainStep,
    WindowKind,
    per_call_steps,
    train_steps,
)
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import (
    Binding,
    CallSite,
    ClassInfo,
    LoopInfo,
    Scope,
    ScopeBuilder,
)
from trainlint.model.values.losses import LossCall, LossFamily, loss_calls
from trainlint.model.values.roles import (
    Role,
    Value,
    classify_constructor,
    pass_through_argument,
    role_from_annotation,
    role_from_name,
)
from trainlint.model.values.tensors import Activation, TensorAnalysis, TensorKind
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
    "CallSite",
    "ClassInfo",
    "Condition",
    "Event",
    "EventKind",
    "LoopInfo",
    "Role",
    "Scope",
    "TrainingModel",
    "Value",
]

_MODULE_BASES = ("torch.nn.Module", "torch.nn.modules.module.Module")
_LIGHTNING_BASES = ("LightningModule",)
_HF_TRAINER_BASES = ("Trainer", "Seq2SeqTrainer")


class TrainingModel:
    """Everything rules need to know about one file."""

    def __init__(self, module: cst.Module, path: Path | str = "<string>", text: str = "") -> None:
        self.module = module
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
        self._values: dict[tuple[int, int], Value | None] = {}
        self._resolving: set[tuple[int, int]] = set()
        # Cached by id(): keep each looked-up node alive so a freed temporary (a node made by
        # ``cst.parse_expression``) cannot hand its id, and its cached value, to another node.
        self._pinned: list[cst.CSTNode] = []

    @classmethod
    def from_source(cls, text: str, path: Path | str = "<string>") -> TrainingModel:
        return cls(cst.parse_module(text), path, text)

    # ------------------------------------------------------------------ structure
    def loop_for(self, node: cst.CSTNode) -> LoopInfo | None:
        return self._loops_by_node.get(id(node))

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

    def is_module_class(self, info: ClassInfo) -> bool:
        bases = self.class_bases(info)
        return any(
            b in _MODULE_BASES
            or b.endswith(("Module", "Model", "PreTrainedModel", "LightningModule"))
            or b in ("nn.Module",)
            for b in bases
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
    def callee(self, call: cst.Call, scope: Scope) -> Scope | None:
        """The same-file function or method ``call`` runs, if it can be told statically."""
        func = call.func
        if isinstance(func, cst.Name):
            current: Scope | None = scope
            while current is not None:
                found = current.functions.get(func.value)
                if found is not None:
                    return found
                current = current.parent
            return None
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and scope.cls is not None
        ):
            return self.method(scope.cls, func.attr.value)
        return method_of_instance(self, call, scope)  # ``meter.update(loss)``, same-file class

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
        return None

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
            while current is not None and not bindings:
                bindings = list(current.bindings.get(name, []))
                current = current.parent
        if before is not None:
            earlier = [b for b in bindings if b.order < before]
            bindings = earlier or bindings
        return sorted(bindings, key=lambda b: b.order, reverse=True)

    def role_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Role | None:
        value = self.value_of(expr, scope)
        return value.role if value is not None else None

    def value_of(self, expr: cst.BaseExpression | None, scope: Scope) -> Value | None:
        if expr is None:
            return None
        key = (id(expr), id(scope))
        if key in self._values:
            return self._values[key]
        if key in self._resolving:
            return None
        self._resolving.add(key)
        try:
            value = self._resolve(expr, scope)
        finally:
            self._resolving.discard(key)
        self._values[key] = value
        self._pinned.append(expr)
        return value

    def _resolve(self, expr: cst.BaseExpression, scope: Scope) -> Value | None:
        if isinstance(expr, cst.Call):
            return self._value_of_call(expr, scope, None)
        name = dotted(expr)
        if name is None:
            return None
        for binding in self.lookup(name, scope):
            if binding.augmented or binding.from_iteration or binding.value is None:
                continue
            value = self._value_of_binding(binding, binding.scope or scope)
            if value is not None:
                return value
        if name in scope.annotations:
            role = role_from_annotation(scope.annotations[name])
            if role is not None:
                return Value(role)
        if self.imports.qualify_dotted(name):
            return None  # a library attribute (``torch.optim``), not a variable
        role = role_from_name(name)
        return Value(role) if role is not None else None

    def _value_of_binding(self, binding: Binding, scope: Scope) -> Value | None:
        value = binding.value
        if binding.unpack_index is not None:
            if isinstance(value, (cst.Tuple, cst.List)):
                elements = value.elements
                if binding.unpack_index < len(elements):
                    return self.value_of(elements[binding.unpack_index].value, scope)
                return None
            if isinstance(value, cst.Call):
                return self._value_of_call(value, scope, binding.unpack_index)
            return None
        if isinstance(value, cst.Call):
            return self._value_of_call(value, scope, None)
        if isinstance(value, (cst.Name, cst.Attribute)) and dotted(value) != binding.target:
            return self.value_of(value, scope)
        return None

    def _value_of_call(self, call: cst.Call, scope: Scope, index: int | None) -> Value | None:
        qualified = self.imports.qualify(call.func)
        if qualified == "deepspeed.initialize":
            return Value(Role.ENGINE, qualified, call) if index in (None, 0) else None
        if qualified:
            found = classify_constructor(qualified, call)
            if found is not None:
                return found
        inner = pass_through_argument(call, qualified, index)
        if inner is not None:
            return self.value_of(inner, scope)
        name = dotted(call.func)
        if name and name in self.classes and self.is_module_class(self.classes[name]):
            return Value(Role.MODEL, name, call)
        callee = self.callee(call, scope)
        if callee is not None:
            for returned in callee.returns:
                if index is not None and isinstance(returned, cst.Tuple):
                    if index < len(returned.elements):
                        returned = returned.elements[index].value
                    else:
                        continue
                value = self.value_of(returned, callee)
                if value is not None:
                    return value
        return None

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
    def loss_calls(self) -> list[LossCall]:
        """Every loss call, its family and prediction argument (see :mod:`.losses`)."""
        return loss_calls(self)

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
        return found.start.line if found is not None else 0

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

    @cached_property
    def dataflow(self) -> Dataflow:
        """Graph tensors vs numbers, reductions, uses of accumulators (see :mod:`.dataflow`)."""
        return Dataflow(self)
