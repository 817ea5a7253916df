"""Learning-rate schedulers, as TL109 needs them.

Scheduler kinds (:func:`scheduler_of`: epoch-based, plateau, per-batch, other, custom, unknown,
read off the constructor and its horizon argument), schedulers never stepped, batch loops and
per-batch loss names. Helper parameters resolve through the helper's same-file call sites. The
event plumbing TL107-TL109 share is in :mod:`.event_plumbing`, grad scalers in :mod:`.scalers`.
"""

from __future__ import annotations

import enum
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_plumbing import receiver
from trainlint.model.loops.events import Event
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import (
    child_nodes,
    descendants,
    dotted,
    keyword,
    literal,
    method_call,
    positional,
)
from trainlint.model.syntax.scopes import argument_for
from trainlint.model.values.roles import Role, Value

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.training import TrainStep
    from trainlint.model.syntax.scopes import Binding, CallSite, LoopInfo, Scope


class ScheduleKind(enum.Enum):
    EPOCH = "epoch"  # meant to be stepped once per epoch
    PLATEAU = "plateau"  # ReduceLROnPlateau: once per epoch, with a validation metric
    PER_BATCH = "per_batch"  # meant to be stepped after every optimizer step
    OTHER = "other"  # a library scheduler whose cadence cannot be told (LambdaLR, ...)
    CUSTOM = "custom"  # a same-file or third-party class: its step() is its own business
    UNKNOWN = "unknown"  # only the name says it is a scheduler


@dataclass(frozen=True)
class SchedulerInfo:
    kind: ScheduleKind
    name: str = ""  # the constructor's short name (``StepLR``)
    call: cst.Call | None = None
    optimizer: str | None = None  # the optimizer it was built on, as the constructor names it


_TORCH_SCHEDULERS = "torch.optim.lr_scheduler"
_ALWAYS_PER_BATCH = {"OneCycleLR", "CyclicLR"}
_EPOCH_BY_DEFAULT = {"StepLR", "MultiStepLR", "ExponentialLR"}
_COSINE = {"CosineAnnealingLR", "CosineAnnealingWarmRestarts", "PolynomialLR"}
#: Words in a horizon argument that count optimizer steps rather than epochs.
_STEP_WORDS = re.compile(r"iter|steps|batch|update|warmup|n_?step|num_step|max_step")
#: Read-only uses of a scheduler: they do not step it.
_READ_ONLY = {"get_last_lr", "get_lr", "state_dict", "load_state_dict", "last_epoch", "base_lrs"}


# ---------------------------------------------------------------------- values
def resolve(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope, depth: int = 0
) -> Value | None:
    """``value_of``, and for a helper's parameter, the argument its same-file callers pass."""
    value = model.value_of(expr, scope)
    if value is not None and value.call is not None:
        return value
    name = dotted(expr)
    if name is None or name not in scope.params or depth > 2:
        return value
    for site in _facts(model).callers(scope):
        argument = argument_for(site.node, scope, name)
        found = resolve(model, argument, site.scope, depth + 1) if argument is not None else None
        if found is not None and found.call is not None:
            return found
    return value


class _Facts:
    """Per-model lookups built on first use: call orders, and each function's call sites."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self.orders = {id(site.node): site.order for site in model.calls}
        self._callers: dict[int, list[CallSite]] | None = None

    def callers(self, scope: Scope) -> list[CallSite]:
        if self._callers is None:
            self._callers = {}
            for site in self.model.calls:
                callee = self.model.callee(site.node, site.scope, external=False)
                if callee is not None:
                    self._callers.setdefault(id(callee), []).append(site)
        return self._callers.get(id(scope), [])


_FACTS: weakref.WeakKeyDictionary[TrainingModel, _Facts] = weakref.WeakKeyDictionary()


def _facts(model: TrainingModel) -> _Facts:
    found = _FACTS.get(model)
    if found is None:
        found = _FACTS[model] = _Facts(model)
    return found


def call_order(model: TrainingModel, call: cst.CSTNode) -> int | None:
    """Where a call sits in the model's visiting order (comparable with binding orders)."""
    return _facts(model).orders.get(id(call))


# ---------------------------------------------------------------------- schedulers
def scheduler_of(model: TrainingModel, event: Event) -> SchedulerInfo:
    """The kind of scheduler a ``SCHEDULER_STEP`` event steps."""
    expr = receiver(event)
    value = resolve(model, expr, event.scope)
    if value is not None and value.call is not None:
        found = classify_scheduler(value)
        if _alternatives(model, expr, event.scope) - {found.kind}:
            # ``StepLR`` in one branch, ``OneCycleLR`` in another: the cadence is the config's
            return SchedulerInfo(ScheduleKind.OTHER, found.name, found.call, found.optimizer)
        return found
    for binding in model.lookup(dotted(expr) or "", event.scope):
        if isinstance(binding.value, cst.Call) and not binding.augmented:
            own = _own_scheduler_class(model, binding.value)
            if own is not None:
                return SchedulerInfo(ScheduleKind.CUSTOM, own, binding.value)
    return SchedulerInfo(ScheduleKind.UNKNOWN)


def _alternatives(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope
) -> set[ScheduleKind]:
    """Kinds of every scheduler constructor bound to the same name (a project's own class
    counts as CUSTOM: ``utils.PolyLR(opt, total_iters)`` in one branch, ``StepLR`` in the
    other, both stepped at the one place the loop steps ``scheduler``)."""
    bindings = model.lookup(dotted(expr) or "", scope)
    kinds = {classify_scheduler(value).kind for value, _ in _constructors(model, bindings, scope)}
    for binding in bindings:
        value = binding.value
        if binding.augmented or binding.unpack_index is not None:
            continue
        if isinstance(value, cst.Call) and _own_scheduler_class(model, value):
            kinds.add(ScheduleKind.CUSTOM)
    return kinds


def _constructors(
    model: TrainingModel, bindings: list[Binding], scope: Scope
) -> Iterator[tuple[Value, Binding]]:
    """Library scheduler constructions among ``bindings`` (plain ``name = Ctor(...)`` only)."""
    for binding in bindings:
        value = binding.value
        if not isinstance(value, cst.Call) or binding.unpack_index is not None:
            continue
        if binding.augmented or binding.from_iteration:
            continue
        found = model.value_of(value, scope)
        if found is not None and found.role is Role.SCHEDULER and found.call is value:
            yield found, binding


def _own_scheduler_class(model: TrainingModel, call: cst.Call) -> str | None:
    """A same-file or third-party scheduler class (timm's take ``step(epoch)``), by name."""
    name = dotted(call.func) or ""
    qualified = model.imports.qualify(call.func) or ""
    if name in model.classes:
        return name
    if is_under(qualified, "torch", "transformers"):
        return None
    is_class = name.rsplit(".", 1)[-1][:1].isupper()  # ``WarmupLR`` from the project itself
    return (qualified or name) if is_class or is_under(qualified, "timm") else None


def classify_scheduler(value: Value) -> SchedulerInfo:
    call, name = value.call, value.short_kind
    optimizer = None
    if call is not None:
        optimizer = dotted(keyword(call, "optimizer") or positional(call, 0))
    make = lambda kind: SchedulerInfo(kind, name, call, optimizer)  # noqa: E731
    if value.role is not Role.SCHEDULER:
        return make(ScheduleKind.UNKNOWN)
    if not is_under(value.kind, _TORCH_SCHEDULERS):
        if is_under(value.kind, "transformers"):
            return make(ScheduleKind.PER_BATCH)  # get_*_schedule_with_warmup: total steps
        return make(ScheduleKind.CUSTOM)
    if name == "ReduceLROnPlateau":
        return make(ScheduleKind.PLATEAU)
    if name in _ALWAYS_PER_BATCH:
        return make(ScheduleKind.PER_BATCH)
    if name in _EPOCH_BY_DEFAULT or name in _COSINE:
        horizon = _horizon(name, call) if call is not None else None
        if horizon is None:
            return make(ScheduleKind.EPOCH if name in _EPOCH_BY_DEFAULT else ScheduleKind.OTHER)
        return make(horizon)
    return make(ScheduleKind.OTHER)


def _horizon(name: str, call: cst.Call) -> ScheduleKind | None:
    """What the arguments that set a schedule's horizon count: epochs or optimizer steps."""
    if name == "StepLR":
        expr = keyword(call, "step_size") or positional(call, 1)
        threshold = 1000  # a decay every 1000+ "epochs" only makes sense counted in steps
    elif name == "MultiStepLR":
        expr = keyword(call, "milestones") or positional(call, 1)
        threshold = 1000
    elif name == "ExponentialLR":
        gamma = literal(keyword(call, "gamma") or positional(call, 1), None)
        tiny = isinstance(gamma, float) and gamma >= 0.999
        return ScheduleKind.PER_BATCH if tiny else None
    else:
        expr = keyword(call, "T_max") or keyword(call, "T_0") or keyword(call, "total_iters")
        expr = expr or positional(call, 1)
        threshold = 1000
    if expr is None:
        return None
    names = [n.lower() for n in _names(expr)]
    if any(_counts_steps(n) for n in names) or _calls_len(expr):
        return ScheduleKind.PER_BATCH
    numbers = [literal(n, None) for n in (expr, *descendants(expr))]
    if any(isinstance(n, int) and n >= threshold for n in numbers):
        return ScheduleKind.PER_BATCH
    if name in _COSINE:
        return ScheduleKind.EPOCH if any("epoch" in n for n in names) else None
    return ScheduleKind.EPOCH


def _counts_steps(name: str) -> bool:
    """``total_steps``, ``max_iters``, ``steps_per_epoch`` -- but not ``warmup_epochs``."""
    return "per_epoch" in name or (_STEP_WORDS.search(name) is not None and "epoch" not in name)


def _names(node: cst.CSTNode) -> list[str]:
    found = [
        dotted(n) for n in (node, *descendants(node)) if isinstance(n, (cst.Name, cst.Attribute))
    ]
    return [n for n in found if n]


def _calls_len(node: cst.CSTNode) -> bool:
    return any(
        isinstance(n, cst.Call) and dotted(n.func) == "len" for n in (node, *descendants(node))
    )


# ---------------------------------------------------------------------- never stepped
def unstepped_schedulers(model: TrainingModel) -> list[tuple[cst.Call, str]]:
    """Library schedulers bound to a name that nothing ever steps, passes on or returns.

    Conservative on purpose: any use of the name other than reading it (``get_last_lr()``,
    ``state_dict()``) counts as a possible step, and so does the same name anywhere in the file.
    """
    constructed: list[tuple[cst.Call, str]] = []
    for scope in model.scopes:
        for target, bindings in scope.bindings.items():
            for value, _ in _constructors(model, bindings, scope):
                if classify_scheduler(value).kind is ScheduleKind.CUSTOM:
                    continue
                if target.startswith("self.") and _inherits_from_elsewhere(model, scope):
                    continue  # a base class defined in another file may step ``self.x``
                constructed.append((value.call, target))  # type: ignore[arg-type]
    if not constructed:
        return []
    used = _non_reading_uses(model.module, {t.rsplit(".", 1)[-1] for _, t in constructed})
    return [(call, t) for call, t in constructed if t.rsplit(".", 1)[-1] not in used]


def _inherits_from_elsewhere(model: TrainingModel, scope: Scope) -> bool:
    if scope.cls is None:
        return False
    bases = model.class_bases(scope.cls)
    local = {b for b in bases if b.rsplit(".", 1)[-1] in model.classes}
    return any(not _is_plain_base(b) for b in bases - local)


def _is_plain_base(base: str) -> bool:
    return base in ("object", "") or base.rsplit(".", 1)[-1] in ("Module", "ABC")


def _non_reading_uses(module: cst.Module, wanted: set[str]) -> set[str]:
    """Names in ``wanted`` used other than as an assignment target or a read-only attribute."""
    used: set[str] = set()

    def visit(node: cst.CSTNode, parent: cst.CSTNode | None) -> None:
        if isinstance(node, cst.AssignTarget):
            if isinstance(node.target, cst.Attribute):
                visit(node.target.value, node.target)  # ``self.x = ...`` binds ``x``
            elif not isinstance(node.target, cst.Name):
                visit(node.target, node)
            return
        name = node.attr.value if isinstance(node, cst.Attribute) else None
        name = node.value if isinstance(node, cst.Name) else name
        read = isinstance(parent, cst.Attribute) and parent.attr.value in _READ_ONLY
        if name in wanted and not (read and parent.value is node):  # type: ignore[union-attr]
            used.add(name)
        if isinstance(node, cst.Attribute):
            visit(node.value, node)
        elif not isinstance(node, cst.Name):
            for child in child_nodes(node):
                visit(child, node)

    visit(module, None)
    return used


# ---------------------------------------------------------------------- train steps
def is_batch_loop(model: TrainingModel, step: TrainStep) -> bool:
    """Whether a train step's loop runs once per batch (not once per epoch or iteration)."""
    from trainlint.model.loops.training import WindowKind

    loop = step.loop
    over_loader = _iterates_loader(model, loop)
    accumulation = step.accumulation
    if accumulation is not None and accumulation.kind is WindowKind.INNER_LOOP:
        return over_loader and not accumulation.whole_epoch
    if over_loader:
        return True
    target = loop.node.target if isinstance(loop.node, cst.For) else None
    header = [*_names(target)] if target is not None else []
    header += _names(loop.iter_expr) if loop.iter_expr is not None else []
    if any("epoch" in name.lower() for name in header):
        return False
    return loop.parent is not None


def _iterates_loader(model: TrainingModel, loop: LoopInfo) -> bool:
    source = loop.iter_expr
    if source is None:
        return False
    for node in (source, *descendants(source)):
        if isinstance(node, (cst.Name, cst.Attribute)):
            name = dotted(node) or ""
            if "loader" in name.lower() or model.role_of(node, loop.scope) is Role.LOADER:
                return True
    return False


def loss_root(expr: cst.BaseExpression | None) -> str | None:
    """``loss`` in ``loss``, ``loss.item()``, ``float(loss)``, ``loss.detach().cpu()``."""
    while expr is not None:
        if isinstance(expr, (cst.Name, cst.Attribute)):
            name = dotted(expr)
            return name[: -len(".data")] if name and name.endswith(".data") else name
        if isinstance(expr, cst.Call):
            found = method_call(expr)
            if found is not None and found[1] in ("item", "detach", "cpu", "mean", "sum"):
                expr = found[0]
            elif dotted(expr.func) in ("float",) and expr.args:
                expr = expr.args[0].value
            else:
                return None
        elif isinstance(expr, cst.BinaryOperation):
            expr = expr.left
        else:
            return None
    return None


def batch_loss_names(model: TrainingModel, step: TrainStep) -> set[str]:
    """Names that hold one batch's training loss in ``step``'s loop: what backward runs on,
    and plain copies of it made in the loop (``batch_loss = loss.item()``)."""
    names = {
        root
        for event in step.backwards
        if event.scope is step.loop.scope and (root := loss_root(event.operand)) is not None
    }
    inside = {id(n) for n in descendants(step.loop.node)}
    for target, bindings in step.loop.scope.bindings.items():
        for binding in bindings:
            if binding.augmented or binding.value is None or id(binding.statement) not in inside:
                continue
            if loss_root(binding.value) in names:
                names.add(target)
    return names
