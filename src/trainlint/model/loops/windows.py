"""Accumulation guards and what happens around a window, once per epoch.

* :class:`GuardReader` reads a step's condition as a window boundary: ``(i + 1) % k == 0``,
  ``step % k == k - 1``, ``if i % k: continue`` (true *between* boundaries), a counter compared
  with ``k``, a flag assigned from one of these (``need_update = last or (i + 1) % k == 0``),
  ``accelerator.sync_gradients``; and whether it also fires on the last batch (a flush).
* :func:`epoch_start` finds gradients cleared at the start of each epoch around a window loop,
  whether the guard's counter runs across epochs, and whether the last partial window is
  stepped.
* :func:`scales_gradients` finds windows averaged on ``.grad`` instead of on the loss.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.events import CLEARING, Condition, Event, EventKind
from trainlint.model.syntax.nodes import descendants, dotted, literal, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.training import TrainStep
    from trainlint.model.syntax.scopes import LoopInfo, Scope


class WindowKind(enum.Enum):
    MODULO = "modulo"  # if (i + 1) % k == 0: opt.step()
    COUNTER = "counter"  # if accum_count == k: opt.step(); accum_count = 0
    INNER_LOOP = "inner_loop"  # for micro in chunks: backward() ... then step() after it
    ACCELERATE = "accelerate"  # with accelerator.accumulate(model): Accelerate decides


# ---------------------------------------------------------------------- guard shapes
@dataclass(frozen=True)
class GuardShape:
    """What a step's condition says about the window it closes."""

    kind: WindowKind
    test: cst.BaseExpression
    steps: cst.BaseExpression | None = None
    counter: str | None = None
    flushes_last: bool = False
    boundary: bool = True  # true exactly when a window closes (False: ``if i % k: ...``)


def _compares(test: cst.BaseExpression, *operators: type) -> bool:
    return isinstance(test, cst.Comparison) and any(
        isinstance(t.operator, operators) for t in test.comparisons
    )


def _bare(node: cst.BaseExpression) -> cst.BaseExpression:
    while getattr(node, "lpar", ()) and isinstance(node, cst.BaseExpression):
        node = node.with_changes(lpar=(), rpar=())
    return node


def modulo_operand(test: cst.CSTNode) -> cst.BaseExpression | None:
    """``k`` in a test like ``(i + 1) % k == 0``; ``None`` when there is no ``%``."""
    node = _modulo(test)
    return node.right if node is not None else None


def _modulo(test: cst.CSTNode) -> cst.BinaryOperation | None:
    for node in (test, *descendants(test)):
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Modulo):
            return node
    return None


def _names(node: cst.CSTNode) -> list[str]:
    """Dotted names in ``node``, outermost attribute chains only, in source order."""
    found: list[str] = []
    skip: set[int] = set()
    for child in (node, *descendants(node)):
        if id(child) in skip:
            continue
        if isinstance(child, (cst.Name, cst.Attribute)):
            name = dotted(child)
            if name:
                found.append(name)
                skip.update(id(d) for d in descendants(child))
    return found


def _mentions(node: cst.CSTNode, *words: str) -> bool:
    return any(w in n.lower() for n in _names(node) for w in words)


def _is_last_batch_test(node: cst.BaseExpression) -> bool:
    """``i + 1 == len(loader)``, ``batch_idx == last_idx``, ``is_last_batch``..."""
    node = _bare(node)
    if isinstance(node, cst.Comparison):
        has_len = any(
            isinstance(c, cst.Call) and dotted(c.func) == "len" for c in descendants(node)
        )
        return has_len or _mentions(node, "last", "num_batches", "steps_per_epoch", "total")
    return isinstance(node, (cst.Name, cst.Attribute)) and _mentions(node, "last", "final")


def _compares_to_one(node: cst.BaseExpression) -> bool:
    """``args.accum_steps > 1``: a configuration test, not a window boundary."""
    node = _bare(node)
    return isinstance(node, cst.Comparison) and any(
        literal(t.comparator, None) in (0, 1) for t in node.comparisons
    )


def _increments(events: list[Event]) -> set[str]:
    """Names increased by a constant in the loop (``count += 1``, ``n = n + 1``)."""
    found = set()
    for event in events:
        increment = event.kind is EventKind.ACCUMULATE and isinstance(event.operand, cst.Integer)
        if increment and event.subject:
            found.add(event.subject)
    return found


class GuardReader:
    """Reads window shapes off step conditions (one loop's events give the counters)."""

    def __init__(self, model: TrainingModel, events: list[Event]) -> None:
        self.model = model
        self.incremented = _increments(events)

    def shape(self, condition: Condition, scope: Scope) -> GuardShape | None:
        test, negated = _bare(condition.test), condition.negated
        while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            test, negated = _bare(test.expression), not negated
        return self._shape(test, negated, scope, depth=0)

    def _shape(
        self, test: cst.BaseExpression, negated: bool, scope: Scope, depth: int
    ) -> GuardShape | None:
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            return self._shape(_bare(test.expression), not negated, scope, depth)
        if isinstance(test, cst.BooleanOperation):
            return self._boolean(test, negated, scope, depth)
        modulo = _modulo(test)
        if modulo is not None:
            counter = self._counter(modulo.left)
            if test is modulo:  # ``if i % k:`` is true *between* boundaries
                boundary = negated
            else:
                boundary = not negated ^ _compares(test, cst.NotEqual, cst.GreaterThan)
            return GuardShape(WindowKind.MODULO, test, modulo.right, counter, boundary=boundary)
        name = dotted(test) or ""
        if name.endswith("sync_gradients"):
            return GuardShape(WindowKind.ACCELERATE, test, boundary=not negated)
        if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
            left = dotted(_bare(test.left))
            if left in self.incremented:
                right = test.comparisons[0].comparator
                boundary = not negated ^ _compares(
                    test, cst.NotEqual, cst.LessThan, cst.LessThanEqual
                )
                return GuardShape(WindowKind.COUNTER, test, right, left, boundary=boundary)
        if isinstance(test, (cst.Name, cst.Attribute)) and depth < 2:
            flag = self._flag_value(test, scope)
            if flag is not None:
                found = self._shape(_bare(flag), negated, scope, depth + 1)
                if found is not None:
                    return found
        if _mentions(test, "accum") and not _compares_to_one(test):
            counter = self._counter(test)
            return GuardShape(WindowKind.COUNTER, test, counter=counter, boundary=not negated)
        return None

    def _boolean(
        self, test: cst.BooleanOperation, negated: bool, scope: Scope, depth: int
    ) -> GuardShape | None:
        parts = [_bare(test.left), _bare(test.right)]
        shapes = [self._shape(p, negated, scope, depth) for p in parts]
        found = [s for s in shapes if s is not None]
        if not found:
            return None
        first = found[0]
        either = isinstance(test.operator, cst.Or) and not negated
        others = [p for p, s in zip(parts, shapes, strict=True) if s is None]
        flush = first.flushes_last or (either and any(_is_last_batch_test(p) for p in others))
        return GuardShape(first.kind, test, first.steps, first.counter, flush, first.boundary)

    def _flag_value(self, test: cst.BaseExpression, scope: Scope) -> cst.BaseExpression | None:
        """``need_update`` -> the expression it was last assigned (a boolean flag)."""
        name = dotted(test)
        if not name:
            return None
        for binding in self.model.lookup(name, scope):
            plain = binding.augmented is None and binding.unpack_index is None
            if plain and not binding.from_iteration and binding.value:
                return binding.value
        return None

    def _counter(self, node: cst.BaseExpression) -> str | None:
        names = _names(node)
        for name in names:
            if name in self.incremented:
                return name
        return names[0] if names else None


# ---------------------------------------------------------------------- window facts
def is_window_condition(
    model: TrainingModel, condition: Condition, scope: Scope, events: list[Event]
) -> bool:
    """Whether ``condition`` marks window boundaries (a modulo, counter or accumulation flag)."""
    if GuardReader(model, events).shape(condition, scope) is not None:
        return True
    return _mentions(condition.test, "accum", "update", "sync")


@dataclass(frozen=True)
class EpochStart:
    """What happens around a window loop once per epoch (see :func:`epoch_start`)."""

    clears: tuple[Event, ...]  # gradients cleared before the window loop, every epoch
    counter_runs_across: bool  # the guard's counter is not restarted each epoch
    flushed: bool  # the last partial window is stepped (guard alternative or a step after)


def _inside(node: cst.CSTNode) -> set[int]:
    return {id(n) for n in descendants(node)}


def _runs_loop(events: list[Event], loop: LoopInfo) -> bool:
    return any(any(lp is loop for lp in e.loops) for e in events)


def _around(model: TrainingModel, loop: LoopInfo) -> tuple[list[Event], set[int], list[str]]:
    """Events once per epoch around ``loop``: its enclosing loop's, else its function's."""
    enclosing = [loop.parent] if loop.parent is not None else []
    enclosing += [
        other
        for other in model.loops
        if other is not loop and other is not loop.parent and other.scope is not loop.scope
    ]
    for other in enclosing:
        events = model.iteration(other)
        if _runs_loop(events, loop):
            targets = _names(other.node.target) if isinstance(other.node, cst.For) else []
            return events, _inside(other.node), targets
    return model.function_events(loop.scope), set(), []


def epoch_start(model: TrainingModel, step: TrainStep) -> EpochStart | None:
    """Clearing at the start of each epoch around a guarded window loop, and its context."""
    accumulation = step.accumulation
    if accumulation is None or accumulation.kind not in (WindowKind.MODULO, WindowKind.COUNTER):
        return None
    loop = step.loop
    events, epoch_nodes, epoch_targets = _around(model, loop)
    inside_loop = [i for i, e in enumerate(events) if any(lp is loop for lp in e.loops)]
    if not inside_loop:
        return None
    first, last = inside_loop[0], inside_loop[-1]
    clears = tuple(
        e for e in events[:first] if e.kind in CLEARING and not any(lp is loop for lp in e.loops)
    )
    stepped = set(accumulation.optimizers)
    flushed = accumulation.flushes_last or any(
        e.kind is EventKind.STEP and (e.subject in stepped or not e.subject)
        for e in events[last + 1 :]
    )
    across = _counter_runs_across(model, step, epoch_nodes, epoch_targets)
    return EpochStart(clears, across, flushed)


def _counter_runs_across(
    model: TrainingModel, step: TrainStep, epoch_nodes: set[int], epoch_targets: list[str]
) -> bool:
    counter = step.accumulation.counter if step.accumulation else None
    if not counter:
        return False
    loop = step.loop
    loop_nodes = _inside(loop.node)
    bindings = model.lookup(counter, loop.scope)
    if any(b.from_iteration and b.statement is loop.node for b in bindings):
        return False  # ``for i, batch in enumerate(loader)``: restarts with the loop
    inside = [b for b in bindings if id(b.statement) in loop_nodes and b.augmented is None]
    for binding in inside:
        if binding.value is not None and set(_names(binding.value)) & set(epoch_targets):
            return True  # ``it = epoch * len(loader) + i``
    if counter not in _increments(step.events):
        return False
    same_function = bool(epoch_nodes) and id(loop.node) in epoch_nodes
    resets = []
    for binding in bindings:
        if binding.augmented is not None or id(binding.statement) in loop_nodes:
            continue
        if id(binding.statement) in epoch_nodes:
            resets.append(binding)  # ``seen = 0`` at the top of the epoch loop
        elif not same_function and getattr(binding, "scope", loop.scope) is loop.scope:
            resets.append(binding)  # a local of the function that runs one epoch
    if counter in loop.scope.params and not any(
        counter in _names(returned) for returned in loop.scope.returns
    ):
        return False  # a parameter the function never hands back restarts with each call
    return not resets


_GRAD_SCALING_METHODS = ("mul_", "div_")


def scales_gradients(model: TrainingModel, step: TrainStep) -> bool:
    """Whether the loop scales gradients in place (``p.grad /= k``, ``p.grad.data.mul_(1 / k)``,
    ``torch._foreach_div_(grads, k)``): the window is averaged on ``.grad``, not on the loss."""
    bodies: list[cst.CSTNode] = [step.loop.node]
    seen: set[int] = set()
    for body in bodies:
        for node in descendants(body):
            if _scales_grad(model, node):
                return True
            if isinstance(node, cst.Call) and len(bodies) < 8:
                callee = model.callee(node, step.loop.scope)
                if callee is not None and id(callee.node) not in seen:
                    seen.add(id(callee.node))
                    bodies.append(callee.node)
    return False


def _scales_grad(model: TrainingModel, node: cst.CSTNode) -> bool:
    if isinstance(node, cst.Call):
        called = method_call(node)
        if called is not None and called[1] in _GRAD_SCALING_METHODS:
            receiver = dotted(called[0]) or ""
            return receiver.endswith((".grad", ".grad.data"))
        qualified = model.imports.qualify(node.func) or ""
        return qualified in ("torch._foreach_mul_", "torch._foreach_div_")
    if isinstance(node, cst.AugAssign):
        target = dotted(node.target) or ""
        return target.endswith(".grad") and isinstance(
            node.operator, (cst.DivideAssign, cst.MultiplyAssign)
        )
    if isinstance(node, cst.Assign) and isinstance(node.value, cst.BinaryOperation):
        targets = [dotted(t.target) or "" for t in node.targets]
        return any(t.endswith(".grad") for t in targets) and isinstance(
            node.value.operator, (cst.Divide, cst.Multiply)
        )
    return False
