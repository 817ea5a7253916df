"""The ordered events of one loop iteration, with the conditions and contexts they run under.

A loop's iteration is its body flattened in source order. Nested loops' events are included
and tagged with the loops they sit in; calls to same-file functions are replaced by the
callee's events (parameters renamed to the caller's arguments), a few levels deep.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_calls import classify_call
from trainlint.model.loops.event_types import (
    CLEARING,
    Condition,
    Event,
    EventKind,
    context_of,
    function_context,
)
from trainlint.model.loops.mode_switches import (
    MODE_SWITCHES,
    fold_switch,
    literal_arguments,
)
from trainlint.model.syntax.nodes import (
    child_nodes,
    descendants,
    dotted,
    ends_in_jump,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

__all__ = [
    "CLEARING",
    "Condition",
    "Event",
    "EventKind",
    "IterationBuilder",
    "context_of",
    "ends_in_jump",
    "function_context",
]


class IterationBuilder:
    """Flattens a block of statements into events."""

    max_depth = 3
    #: Whether a loop's own iteration is placed in the events around it instead of flattening
    #: its body again (see ``_reused_iteration``; off only to test that both agree).
    reuse_iterations = True

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        #: While a helper is inlined: (id(callee scope), parameter) -> (argument, caller scope),
        #: so that ``def clear(o): o.zero_grad()`` called as ``clear(adam)`` knows ``o``'s role.
        self._arguments: dict[tuple[int, str], tuple[cst.BaseExpression, Scope]] = {}
        self._written_in: dict[int, frozenset[int]] = {}
        #: The functions around the loop being flattened (see ``loop_events``).
        self._enclosing: frozenset[int] = frozenset()
        #: Whether a helper inlined into it is one of them (see ``_reused_iteration``).
        self.reentered = False

    # ------------------------------------------------------------------ entry points
    def loop_events(self, loop: LoopInfo) -> list[Event]:
        enclosing, current = set(), loop.scope
        while current is not None:
            enclosing.add(id(current.node))
            current = current.parent
        self._enclosing = frozenset(enclosing)
        contexts = function_context(self.model, loop.scope)
        return list(self._block(loop.body.body, loop.scope, (), (), contexts, (), ()))

    def function_events(self, scope: Scope, via: tuple[cst.Call, ...] = ()) -> list[Event]:
        if not isinstance(scope.node, cst.FunctionDef):
            return []
        contexts = function_context(self.model, scope)
        return list(self._block(scope.node.body.body, scope, (), (), contexts, via, ()))

    def statement_events(self, statements: Iterable[cst.CSTNode], scope: Scope) -> list[Event]:
        """The events of some statements of ``scope`` (a function's or the module's)."""
        contexts = function_context(self.model, scope)
        return list(self._block(statements, scope, (), (), contexts, (), ()))

    # ------------------------------------------------------------------ statements
    def _block(
        self,
        statements: Iterable[cst.CSTNode],
        scope: Scope,
        conditions: tuple[Condition, ...],
        loops: tuple[LoopInfo, ...],
        contexts: frozenset[str],
        via: tuple[cst.Call, ...],
        stack: tuple[Scope, ...],
    ) -> Iterator[Event]:
        for statement in statements:
            args = (scope, conditions, loops, contexts, via, stack)
            form = type(statement)  # not isinstance: see _calls_post_order
            if form is cst.SimpleStatementLine:
                for small in statement.body:
                    yield from self._small(small, *args)
            elif isinstance(statement, cst.BaseSmallStatement):
                # a one-line suite's body (``with amp.scale_loss(l, o) as s: s.backward()``)
                yield from self._small(statement, *args)
            elif form is cst.If:
                yield from self._expression(statement.test, *args)
                yield from self._if(statement, *args)
                if ends_in_jump(statement.body):
                    # ``if c: continue`` (or return/break/raise): the rest runs only when not c
                    conditions = conditions + (Condition(statement.test, negated=True),)
            elif form is cst.For or form is cst.While:
                header = statement.iter if isinstance(statement, cst.For) else statement.test
                yield from self._expression(header, *args)
                inner = self.model.loop_for(statement)
                inner_loops = loops + (inner,) if inner is not None else loops
                reused = self._reused_iteration(inner, scope, via, stack)
                if reused is not None:
                    for event in reused:
                        yield _placed(event, conditions, inner_loops, contexts)
                else:
                    yield from self._block(
                        statement.body.body, scope, conditions, inner_loops, contexts, via, stack
                    )
                if statement.orelse is not None:
                    yield from self._block(statement.orelse.body.body, *args)
            elif form is cst.With:
                opened = set(contexts)
                for item in statement.items:
                    yield from self._expression(item.item, *args)
                    kind = context_of(self.model, item.item)
                    if kind:
                        opened.add(kind)
                yield from self._block(
                    statement.body.body, scope, conditions, loops, frozenset(opened), via, stack
                )
            elif form is cst.Try:
                yield from self._block(statement.body.body, *args)
                for handler in statement.handlers:
                    yield from self._block(handler.body.body, *args)
                if statement.orelse is not None:
                    yield from self._block(statement.orelse.body.body, *args)
                if statement.finalbody is not None:
                    yield from self._block(statement.finalbody.body.body, *args)
            elif form is cst.Match:
                for case in statement.cases:
                    case_conditions = conditions + (Condition(statement.subject),)
                    yield from self._block(
                        case.body.body, scope, case_conditions, loops, contexts, via, stack
                    )

    def _reused_iteration(
        self, loop: LoopInfo | None, scope: Scope, via: tuple, stack: tuple
    ) -> list[Event] | None:
        """The events of ``loop``'s iteration, read once per model, when flattening its body
        here gives the same events under this block's conditions, loops and contexts: a loop of
        the function (or module) being flattened, not of a helper inlined into it (whose
        arguments count), whose iteration inlines no function around it (a helper's folded
        switches read every test of the helper: those around the loop too).

        Measured: every function's events (TL111) and every loop's (train steps) flattened the
        same loop bodies again, nested loops once per loop around them."""
        if loop is None or stack or via or loop.scope is not scope or not self.reuse_iterations:
            return None
        return self.model.reusable_iteration(loop)

    def _if(self, statement: cst.If, scope, conditions, loops, contexts, via, stack):
        yield from self._block(
            statement.body.body,
            scope,
            conditions + (Condition(statement.test),),
            loops,
            contexts,
            via,
            stack,
        )
        orelse = statement.orelse
        negated = conditions + (Condition(statement.test, negated=True),)
        if isinstance(orelse, cst.If):
            yield from self._expression(orelse.test, scope, negated, loops, contexts, via, stack)
            yield from self._if(orelse, scope, negated, loops, contexts, via, stack)
        elif isinstance(orelse, cst.Else):
            yield from self._block(orelse.body.body, scope, negated, loops, contexts, via, stack)

    def _small(self, small: cst.CSTNode, scope, conditions, loops, contexts, via, stack):
        args = (scope, conditions, loops, contexts, via, stack)
        make = self._maker(scope, conditions, loops, contexts, via)
        if isinstance(small, cst.Expr):
            yield from self._expression(small.value, *args)
        elif isinstance(small, cst.Assign):
            yield from self._expression(small.value, *args)
            for target in small.targets:
                name = dotted(target.target) or ""
                if (
                    name.endswith(".grad")
                    or isinstance(target.target, cst.Subscript)
                    and ((dotted(target.target.value) or "").endswith(".grad"))
                ):
                    none = isinstance(small.value, cst.Name) and small.value.value == "None"
                    yield make(EventKind.GRAD_CLEAR if none else EventKind.GRAD, small)
                elif name and self._self_reference(name, small.value):
                    operand = _other_operand(name, small.value)
                    yield make(EventKind.ACCUMULATE, small, subject=name, operand=operand)
        elif isinstance(small, cst.AugAssign):
            yield from self._expression(small.value, *args)
            target = dotted(small.target) or (
                dotted(small.target.value) if isinstance(small.target, cst.Subscript) else None
            )
            if isinstance(small.operator, (cst.AddAssign, cst.SubtractAssign)) and target:
                yield make(EventKind.ACCUMULATE, small, subject=target, operand=small.value)
        elif (
            isinstance(small, cst.AnnAssign)
            and small.value is not None
            or isinstance(small, cst.Return)
            and small.value is not None
        ):
            yield from self._expression(small.value, *args)

    @staticmethod
    def _self_reference(name: str, value: cst.BaseExpression) -> bool:
        return (
            isinstance(value, cst.BinaryOperation)
            and isinstance(value.operator, cst.Add)
            and name in (dotted(value.left), dotted(value.right))
        )

    # ------------------------------------------------------------------ expressions
    def _maker(self, scope, conditions, loops, contexts, via):
        def make(kind: EventKind, node: cst.CSTNode, **extra: object) -> Event:
            return Event(
                kind,
                node,
                scope,
                conditions=conditions,
                loops=loops,
                contexts=contexts,
                via=via,
                **extra,
            )

        return make

    def _expression(self, expression, scope, conditions, loops, contexts, via, stack):
        memo = self.model._post_orders
        entry = memo.get(id(expression))
        if entry is None or entry[0] is not expression:
            entry = memo[id(expression)] = (expression, _calls_post_order(expression))
        for call, branch in entry[1]:
            under = conditions + branch
            event = self._classify(call, scope, self._maker(scope, under, loops, contexts, via))
            if event is not None:
                yield event
                continue
            callee = self.model.callee(call, scope)
            if callee is not None and callee not in stack and len(stack) < self.max_depth:
                yield from self._inline(call, callee, scope, under, loops, contexts, via, stack)

    def _inline(self, call, callee, scope, conditions, loops, contexts, via, stack):
        if id(callee.node) in self._enclosing:
            self.reentered = True
        renames = self.model.argument_renames(call, callee)
        receiver = call.func.value if isinstance(call.func, cst.Attribute) else None
        if callee.cls is not None and dotted(receiver) not in (None, "self"):
            renames["self"] = dotted(receiver)  # ``meter.update(x)``: ``self.sum`` is ``meter.sum``
        body = callee.node.body.body if isinstance(callee.node, cst.FunctionDef) else ()
        inner_contexts = contexts | function_context(self.model, callee)
        bound = [(id(callee), p) for p in self._bind_arguments(call, callee, scope)]
        literals = literal_arguments(call, callee)
        for event in self._block(
            body, callee, conditions, loops, inner_contexts, via + (call,), stack + (callee,)
        ):
            if event.kind in MODE_SWITCHES and literals:
                folded = fold_switch(event, self._own_tests(callee), literals)
                if folded is None:
                    continue  # the branch this call's arguments never take
                event = folded
            subject = event.subject
            if subject is not None:
                root, dot, rest = subject.partition(".")
                if root in renames:
                    subject = renames[root] + dot + rest if renames[root] else None
            yield replace(event, subject=subject)
        for key in bound:
            self._arguments.pop(key, None)

    def _own_tests(self, callee: Scope) -> frozenset[int]:
        """The nodes written in ``callee``'s body: the tests a call's literals can fold (a
        deeper helper's tests are on its own parameters)."""
        key = id(callee.node)
        if key not in self._written_in:
            self._written_in[key] = frozenset(id(n) for n in descendants(callee.node))
        return self._written_in[key]

    def _bind_arguments(self, call: cst.Call, callee: Scope, scope: Scope) -> list[str]:
        params = list(callee.params)
        if callee.cls is not None and params and params[0] in ("self", "cls"):
            params = params[1:]
        bound: list[str] = []
        position = 0
        for arg in call.args:
            if arg.star:
                continue
            if arg.keyword is not None:
                name = arg.keyword.value
            elif position < len(params):
                name, position = params[position], position + 1
            else:
                continue
            self._arguments[(id(callee), name)] = (arg.value, scope)
            bound.append(name)
        return bound

    def _argument_role(self, name: str, scope: Scope, depth: int = 0) -> Role | None:
        """The role of the argument an inlined helper's parameter ``name`` was called with."""
        found = self._arguments.get((id(scope), name))
        if found is None or depth > self.max_depth:
            return None
        argument, caller = found
        role = self.model.role_of(argument, caller)
        if role is None and isinstance(argument, cst.Name):
            role = self._argument_role(argument.value, caller, depth + 1)
        return role

    def _classify(self, call: cst.Call, scope: Scope, make) -> Event | None:
        """The event ``call`` is, made by ``make`` (which adds the context it runs in).

        What the call is depends on the call and its scope alone, unless ``scope`` is a helper
        being inlined with its parameters bound to the caller's arguments (their roles count):
        so it is classified once per (call, scope) for every loop, function and helper call
        that reaches it (measured: loops nested in a function classify each call 2-3 times)."""
        key = id(scope)
        if any(bound == key for bound, _ in self._arguments):
            return classify_call(self.model, call, scope, make, self._argument_role)
        memo = self.model._classified
        entry = memo.get((id(call), key))
        if entry is None or entry[0] is not call or entry[1] is not scope:
            entry = memo[(id(call), key)] = (
                call,
                scope,
                classify_call(self.model, call, scope, _record, self._argument_role),
            )
        found = entry[2]
        if found is None:
            return None
        kind, node, extra = found
        return make(kind, node, **extra)


def _placed(
    event: Event,
    conditions: tuple[Condition, ...],
    loops: tuple[LoopInfo, ...],
    contexts: frozenset[str],
) -> Event:
    """An event of a loop's own iteration as the block around the loop sees it: under the
    block's conditions too, inside ``loops`` (the loop itself last), in the block's contexts."""
    return replace(
        event,
        conditions=conditions + event.conditions if conditions else event.conditions,
        loops=loops + event.loops,
        contexts=event.contexts if contexts <= event.contexts else contexts | event.contexts,
    )


def _record(kind: EventKind, node: cst.CSTNode, **extra: object) -> tuple:
    """A ``make`` for :meth:`IterationBuilder._classify`'s memo: what to make, not the event."""
    return kind, node, extra


def _other_operand(name: str, value: cst.BaseExpression) -> cst.BaseExpression | None:
    if isinstance(value, cst.BinaryOperation):
        return value.right if dotted(value.left) == name else value.left
    return None


#: Not entered by :func:`_calls_post_order` (their calls run later, if ever).
_DEFERRED = frozenset({cst.Lambda, cst.FunctionDef, cst.ClassDef})


def _calls_post_order(node: cst.CSTNode) -> list[tuple[cst.Call, tuple[Condition, ...]]]:
    """Calls in evaluation order (inner before outer), not entering lambdas or comprehensions,
    each with the tests of the conditional expressions (``a() if c else b()``) it runs under."""
    found: list[tuple[cst.Call, tuple[Condition, ...]]] = []

    # Classes tested with ``type(...) is`` (see :mod:`trainlint.model.syntax.nodes`): this
    # visits every node of every expression that events are read from.
    def visit(current: cst.CSTNode, conditions: tuple[Condition, ...]) -> None:
        kind = type(current)
        if kind in _DEFERRED:
            return
        if kind is cst.IfExp:
            visit(current.test, conditions)
            visit(current.body, conditions + (Condition(current.test),))
            visit(current.orelse, conditions + (Condition(current.test, negated=True),))
            return
        for child in child_nodes(current):
            visit(child, conditions)
        if kind is cst.Call:
            found.append((current, conditions))

    visit(node, ())
    return found
