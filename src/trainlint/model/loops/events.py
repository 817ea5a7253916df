"""The ordered events of one loop iteration, with the conditions and contexts they run under.

A loop's iteration is its body flattened in source order. Nested loops' events are included
and tagged with the loops they sit in; calls to same-file functions are replaced by the
callee's events (parameters renamed to the caller's arguments), a few levels deep.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import libcst as cst

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
    collective_receiver,
    fold_switch,
    literal_arguments,
    mode_switch,
    wrapper_switch,
)
from trainlint.model.syntax.nodes import (
    child_nodes,
    descendants,
    dotted,
    ends_in_jump,
    method_call,
    positional,
)
from trainlint.model.values.modules import constructs_module
from trainlint.model.values.roles import Role, is_closure_step

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

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        #: While a helper is inlined: (id(callee scope), parameter) -> (argument, caller scope),
        #: so that ``def clear(o): o.zero_grad()`` called as ``clear(adam)`` knows ``o``'s role.
        self._arguments: dict[tuple[int, str], tuple[cst.BaseExpression, Scope]] = {}
        self._written_in: dict[int, frozenset[int]] = {}

    # ------------------------------------------------------------------ entry points
    def loop_events(self, loop: LoopInfo) -> list[Event]:
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
            return self._classified(call, scope, make)
        memo = self.model._classified
        entry = memo.get((id(call), key))
        if entry is None or entry[0] is not call or entry[1] is not scope:
            entry = memo[(id(call), key)] = (call, scope, self._classified(call, scope, _record))
        found = entry[2]
        if found is None:
            return None
        kind, node, extra = found
        return make(kind, node, **extra)

    def _classified(self, call: cst.Call, scope: Scope, make) -> Event | None:
        model = self.model
        qualified = model.imports.qualify(call.func) or ""
        method = model.bound_method(call, scope)  # also ``step = optimizer.step; step()``
        if qualified in ("torch.autograd.backward",):
            return make(EventKind.BACKWARD, call, operand=positional(call, 0))
        if qualified in ("torch.autograd.grad",):
            return make(EventKind.GRAD, call)
        if qualified.startswith("torch.nn.utils.clip_grad"):
            return make(EventKind.CLIP, call)
        if method is None:
            value = model.value_of(call.func, scope)
            if value is not None and value.role is Role.MODEL:
                if value.call is None and constructs_module(model, call, scope):
                    return None  # ``Model(envs)``: a class given as a parameter, instantiated
                return make(EventKind.FORWARD, call, subject=dotted(call.func))
            return None
        receiver, name = method
        make = functools.partial(make, method=name)
        subject = dotted(receiver)
        role = model.role_of(receiver, scope)
        if role is None and isinstance(receiver, cst.Name):
            role = self._argument_role(receiver.value, scope)
        if name == "backward":
            if role in (Role.ACCELERATOR, Role.ENGINE) or subject in ("self", "fabric"):
                return make(EventKind.BACKWARD, call, operand=positional(call, 0), managed=True)
            inner = method_call(receiver)
            if inner is not None and inner[1] == "scale" and isinstance(receiver, cst.Call):
                return make(
                    EventKind.BACKWARD,
                    call,
                    operand=positional(receiver, 0),
                    scaled_by=dotted(inner[0]),
                )
            if role is Role.OPTIMIZER and positional(call, 0) is not None:
                # apex ``FP16_Optimizer`` / DeepSpeed's optimizer: ``optimizer.backward(loss)``
                return make(EventKind.BACKWARD, call, operand=positional(call, 0))
            if role is Role.OBJECT:
                return None  # a plain class's own ``backward`` (its body is inlined instead)
            if role is None or role is not Role.MODEL:
                return make(EventKind.BACKWARD, call, operand=receiver)
        if name == "manual_backward":
            return make(EventKind.BACKWARD, call, operand=positional(call, 0), managed=True)
        if name == "step":
            if role is Role.OPTIMIZER:
                return make(EventKind.STEP, call, subject=subject, closure=is_closure_step(call))
            if role is Role.SCALER:
                return make(
                    EventKind.STEP, call, subject=dotted(positional(call, 0)), scaled_by=subject
                )
            if role is Role.SCHEDULER:
                return make(EventKind.SCHEDULER_STEP, call, subject=subject)
            if role is Role.ENGINE:
                return make(EventKind.ENGINE_STEP, call, subject=subject)
            return None
        if name == "zero_grad":
            if role is Role.OPTIMIZER:
                return make(EventKind.ZERO_GRAD, call, subject=subject)
            if role in (Role.MODEL, None) or subject == "self":
                return make(EventKind.MODEL_ZERO_GRAD, call, subject=subject)
            if role is Role.ENGINE:
                return make(EventKind.MODEL_ZERO_GRAD, call, subject=subject)
            return None
        if name in ("zero_", "detach_") and (subject or "").endswith(".grad"):
            return make(EventKind.GRAD_CLEAR, call, subject=subject)
        if name in ("zero_",) and (subject or "").endswith(".grad.data"):
            return make(EventKind.GRAD_CLEAR, call, subject=subject)
        if name == "unscale_" and role is Role.SCALER:
            return make(
                EventKind.UNSCALE, call, subject=dotted(positional(call, 0)), scaled_by=subject
            )
        if name == "update" and role is Role.SCALER:
            return make(EventKind.SCALER_UPDATE, call, subject=subject)
        if name in ("clip_grad_norm_", "clip_grad_value_"):
            managed = role in (Role.ACCELERATOR, Role.ENGINE) or subject == "fabric"
            return make(EventKind.CLIP, call, subject=subject, managed=managed)
        if name in ("eval", "train"):
            collective = role in (None, Role.MODEL) and collective_receiver(receiver, scope)
            # ``self.eval()`` in a method of an ``nn.Module`` subclass (``def predict(self,
            # x): self.eval(); ...``): a switch of the instance the caller names
            own = subject == "self" and scope.cls is not None
            own = own and model.is_torch_module_class(scope.cls)  # type: ignore[arg-type]
            if role is Role.MODEL or collective or own:
                return mode_switch(call, name, None if collective else subject, make)
            if role is None:
                found = wrapper_switch(model, call, receiver, name, scope, make)
                if found is not None:
                    return found
        if name == "apply_gradients" or (name == "minimize" and role is Role.OPTIMIZER):
            return make(EventKind.STEP, call, subject=subject)
        if name == "gradient" and role is Role.TAPE:
            return make(EventKind.BACKWARD, call, operand=positional(call, 0), subject=subject)
        if name in ("append", "extend") and subject:
            return make(EventKind.APPEND, call, subject=subject, operand=positional(call, 0))
        if role is Role.MODEL and name in ("forward", "__call__"):
            return make(EventKind.FORWARD, call, subject=subject)
        if role is Role.MODEL and name not in ("parameters", "named_parameters", "state_dict"):
            return None
        if subject == "self" and scope.cls is not None and name in scope.cls.methods:
            return None  # ``self.restore_model(it)``: the class's own method, named like a model
        value = model.value_of(call.func, scope) if name not in ("item",) else None
        if value is not None and value.role is Role.MODEL:
            return make(EventKind.FORWARD, call, subject=dotted(call.func))
        return None


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
