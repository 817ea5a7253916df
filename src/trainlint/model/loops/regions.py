"""Evaluation regions vs train steps: what a loop is *for* (one loop: :mod:`.loop_purpose`).

A loop whose iteration back-propagates (directly or in a same-file helper), or that runs a TF 1
graph's training op (``sess.run([train_op, loss])``: ``runs_graph_train_op``), trains; a loop that
does not, and runs with gradients disabled, after ``model.eval()``, in a function named like an
evaluation (``validate``, ``evaluate``, ``test_epoch``), or over a loader named so
(``val_loader``), evaluates. Rules weigh findings by it: a mean of batch means in evaluation
code misreports the metric that picks checkpoints (TL202 warning); in a train step it is a
running loss printed for a progress bar (info).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.loops.events import IterationBuilder
from trainlint.model.loops.loop_purpose import EVAL_LOADER
from trainlint.model.syntax.nodes import dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope


# ---------------------------------------------------------------------- eval regions
class RegionKind(enum.Enum):
    LOADER = "loader"  # a loop over a loader named like val/valid/test/eval/dev
    FUNCTION = "function"  # a function named like validate/evaluate/test/predict
    AFTER_TRAINING = "after_training"  # model calls after the epoch's training loop


@dataclass(frozen=True, eq=False)
class EvalRegion:
    """Code that runs a model to evaluate it: no backward, no optimizer step."""

    kind: RegionKind
    node: cst.CSTNode  # the loop, the function, or the first statement after the train loop
    scope: Scope  # the function (or module) the region is written in; FUNCTION: itself
    events: tuple[Event, ...]  # what it does, same-file helpers inlined
    loop: LoopInfo | None = None
    #: AFTER_TRAINING: the train step it follows, and the last statement of the block.
    after: LoopInfo | None = None
    end: cst.CSTNode | None = None

    @property
    def last(self) -> cst.CSTNode:
        """The region's last statement (the loop itself, for a loop)."""
        return self.end if self.end is not None else self.node

    @property
    def last_jumps(self) -> bool:
        last = self.last
        return isinstance(last, cst.SimpleStatementLine) and isinstance(
            last.body[-1], (cst.Return, cst.Break, cst.Continue, cst.Raise)
        )

    def statements(self, model: TrainingModel) -> list[cst.CSTNode]:
        """The code the region is made of: its loop or function, or the statements from
        the first after the training loop to the block's last."""
        if self.end is None:
            return [self.node]
        block = model.dataflow.parent(self.node)
        body = list(getattr(block, "body", ()))
        if self.node not in body or self.end not in body:
            return [self.node]
        return body[body.index(self.node) : body.index(self.end) + 1]

    @property
    def forwards(self) -> list[Event]:
        return [e for e in self.events if e.kind is EventKind.FORWARD]

    def describe(self, model: TrainingModel) -> str:
        """How messages name the region."""
        if self.kind is RegionKind.FUNCTION:
            return f"`{self.scope.short_name}()`"
        if self.kind is RegionKind.LOADER and self.loop is not None:
            return f"the evaluation loop over `{model.text_of(self.loop.iter_expr)}`"
        line = model.line_of(self.after.node) if self.after is not None else 0
        return f"the code after the training loop at line {line}"

    @property
    def needs_gradients(self) -> bool:
        """``autograd.grad`` w.r.t. the inputs, ``.grad`` assignments: saliency, attacks."""
        return any(e.kind is EventKind.GRAD for e in self.events)


_REGION_FUNCTION = re.compile(
    r"(^|_)(eval|evaluate|evaluation|valid|validate|validation|val|test|testing|predict|"
    r"prediction|inference|infer)(_|$)",
    re.I,
)
#: Events that make code training code, not an evaluation.
_TRAINS = {EventKind.BACKWARD, EventKind.STEP, EventKind.ENGINE_STEP}
_TEST_FRAMEWORKS = ("pytest", "unittest")


def eval_regions(model: TrainingModel) -> list[EvalRegion]:
    """Every eval region of the file: functions first, then loops over eval loaders outside
    them, then model calls after a training loop that no other region covers."""
    if not model.imports.imports("torch"):
        return []
    found: list[EvalRegion] = []
    functions: set[int] = set()
    for scope in model.scopes:
        if scope.is_module or not _REGION_FUNCTION.search(scope.short_name):
            continue
        if _framework_or_module_method(model, scope) or _test_case(model, scope):
            continue
        events = tuple(model.function_events(scope))
        if _smoke_check(model, scope, events):
            continue
        if _is_evaluation(events) and not _feeds_backward(model, scope):
            found.append(EvalRegion(RegionKind.FUNCTION, scope.node, scope, events))
            functions.add(id(scope.node))
    for loop in model.loops:
        if _inside(loop.scope, functions) or _framework_or_module_method(model, loop.scope):
            continue
        if _in_test_case(model, loop.scope):
            continue  # ``for layer in test_layers:`` in a unit test is no evaluation either
        if not _over_eval_loader(loop) or _outer_eval_loop(loop):
            continue
        events = tuple(model.iteration(loop))
        if _is_evaluation(events):
            found.append(EvalRegion(RegionKind.LOADER, loop.node, loop.scope, events, loop))
    covered = {id(e.node) for region in found for e in region.forwards}
    for step in model.train_steps:
        current: LoopInfo | None = step.loop
        while current is not None and current.scope is step.loop.scope:
            region = _after_training(model, current, covered, functions)
            if region is not None:
                found.append(region)
                covered |= {id(e.node) for e in region.forwards}
            current = current.parent
    return found


def _inside(scope: Scope | None, functions: set[int]) -> bool:
    while scope is not None:
        if id(scope.node) in functions:
            return True
        scope = scope.parent
    return False


def _is_evaluation(events: tuple[Event, ...]) -> bool:
    kinds = {e.kind for e in events}
    return EventKind.FORWARD in kinds and not kinds & _TRAINS


def _feeds_backward(model: TrainingModel, scope: Scope) -> bool:
    """A same-file call of ``scope`` whose result is back-propagated: ``proba =
    predict_proba(model, x)`` in a train step is part of training, not an evaluation."""
    flow = model.dataflow
    for site in model.calls:
        if model.callee(site.node, site.scope) is not scope:
            continue
        current = flow.parent(site.node)
        while current is not None and not isinstance(current, cst.SimpleStatementLine):
            called = method_call(current)
            if called is not None and called[1] == "backward":
                return True
            if isinstance(current, cst.Assign):
                for target in current.targets:
                    for name in _bound_names(target.target):
                        if flow.uses(name, site.scope).backward:
                            return True
            current = flow.parent(current)
    return False


def _bound_names(target: cst.BaseExpression) -> list[str]:
    """The names an assignment target binds: ``action, log_prob = sample(policy, s)`` binds
    both."""
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _bound_names(e.value)]
    name = dotted(target)
    return [name] if name else []


def _framework_or_module_method(model: TrainingModel, scope: Scope) -> bool:
    """Lightning ``validation_step`` / HF Trainer ``evaluate`` (the framework switches modes
    and disables gradients), an HF ``Pipeline`` subclass (the pipeline factory loads its model
    in eval mode and runs it without gradients), and methods of an ``nn.Module`` itself
    (``def predict(self, x)``: its caller chooses the mode)."""
    cls = scope.cls
    if cls is None:
        return False
    managed = model.is_lightning_class(cls) or model.is_hf_trainer_class(cls)
    pipeline = any(
        b.startswith("transformers.") and b.endswith("Pipeline") for b in model.class_bases(cls)
    )
    return managed or pipeline or model.is_module_class(cls)


def _test_case(model: TrainingModel, scope: Scope) -> bool:
    """A unit test or its helper (``def test_forward_shape():``, ``def _test_distrib(...)``
    in a test module), not an evaluation."""
    if "test" not in scope.short_name.lower():
        return False
    path = model.path
    # ``tests.py`` (plural) holds tests; a ``test.py`` is often a project's evaluation script
    in_tests = (
        path.stem.startswith("test_")
        or path.stem.endswith("_test")
        or path.stem == "tests"
        or "tests" in path.parts
    )
    if in_tests or any(model.imports.imports(name) for name in _TEST_FRAMEWORKS):
        return in_tests or scope.short_name.startswith("test_")
    return False


def _in_test_case(model: TrainingModel, scope: Scope | None) -> bool:
    while scope is not None and not scope.is_module:
        if _test_case(model, scope):
            return True
        scope = scope.parent
    return False


def _smoke_check(model: TrainingModel, scope: Scope, events: tuple[Event, ...]) -> bool:
    """``def test(): net = ResNet18(); print(net(torch.randn(1, 3, 32, 32)).size())`` beside a
    model's definition: a freshly built, untrained model run to check shapes, with no loop
    over data (``for c in range(n)`` steps a decoder) and no weights loaded; also a function
    the script calls only before it trains, on the models it has just built. Their mode and
    gradients do not matter."""
    if any(loop.scope is scope and not _counts_steps(loop) for loop in model.loops):
        return False
    forwards = [e for e in events if e.kind is EventKind.FORWARD]
    if not forwards or any(e.via for e in forwards):
        return False
    before_training = _called_only_before_training(model, scope)
    for event in forwards:
        subject = event.subject
        if not subject or "." in subject:
            return False
        made = [b for b in scope.bindings.get(subject, []) if isinstance(b.value, cst.Call)]
        if not made and before_training and subject not in scope.bindings:
            made = [
                b
                for b in model.module_scope.bindings.get(subject, [])
                if isinstance(b.value, cst.Call)
            ]
        if not made:
            return False
    loads = ("load_state_dict", "load", "from_pretrained", "load_checkpoint")
    return not any(
        site.scope is scope and (method_call(site.node) or (None, ""))[1] in loads
        for site in model.calls
    )


def _counts_steps(loop: LoopInfo) -> bool:
    """``for c in range(len(target)):``: a loop over positions, not over a dataset."""
    iterable = loop.iter_expr
    return isinstance(iterable, cst.Call) and dotted(iterable.func) == "range"


def _called_only_before_training(model: TrainingModel, scope: Scope) -> bool:
    """Every same-file call of ``scope`` is top-level script code that runs before the
    script's first train step."""
    callers = model.modes.callers(scope)
    starts = [s.loop.order for s in model.train_steps if s.loop.scope.is_module]
    if not callers or not starts:
        return False
    orders = {id(site.node): site.order for site in model.calls}
    return all(
        caller.is_module and orders.get(id(call), max(starts)) < min(starts)
        for call, caller in callers
    )


def _loader_name(loop: LoopInfo) -> str:
    iterable = loop.iter_expr
    while isinstance(iterable, cst.Call) and iterable.args:  # ``tqdm(val_loader)``
        iterable = iterable.args[0].value
    if isinstance(iterable, cst.Subscript):  # ``loaders["val"]``
        key = iterable.slice[0].slice if iterable.slice else None
        if isinstance(key, cst.Index) and isinstance(key.value, cst.SimpleString):
            return str(key.value.evaluated_value)
        iterable = iterable.value
    return (dotted(iterable) or "").rsplit(".", 1)[-1]


def _over_eval_loader(loop: LoopInfo) -> bool:
    name = _loader_name(loop)
    return bool(name) and bool(EVAL_LOADER.search(name))


def _outer_eval_loop(loop: LoopInfo) -> bool:
    """An enclosing loop of the same function is already the region."""
    parent = loop.parent
    while parent is not None:
        if _over_eval_loader(parent):
            return True
        parent = parent.parent
    return False


def _after_training(
    model: TrainingModel, train: LoopInfo, covered: set[int], functions: set[int]
) -> EvalRegion | None:
    """Model calls in the statements after ``train`` in its block, with no backward there:
    ``for epoch: (for batch in loader: ...step()) ; acc = (model(x_val).argmax(1) == y).mean()``.
    """
    parent = model.dataflow.parent(train.node)
    if not isinstance(parent, cst.IndentedBlock) and not isinstance(parent, cst.Module):
        return None
    statements = list(parent.body)
    if train.node not in statements:
        return None
    rest = statements[statements.index(train.node) + 1 :]
    if not rest or _inside(train.scope, functions):
        return None
    events = tuple(IterationBuilder(model).statement_events(rest, train.scope))
    if not _is_evaluation(events):
        return None
    forwards = [e for e in events if e.kind is EventKind.FORWARD]
    if all(id(e.node) in covered for e in forwards):
        return None
    return EvalRegion(
        RegionKind.AFTER_TRAINING,
        rest[0],
        train.scope,
        events,
        train.parent,
        after=train,
        end=rest[-1],
    )
