"""``tf.distribute``: strategies, their scopes, and the step functions ``strategy.run`` runs.

A strategy is a value built by ``tf.distribute.MirroredStrategy(...)``, ``TPUStrategy``,
``MultiWorkerMirroredStrategy``, ``CentralStorageStrategy`` or ``ParameterServerStrategy``
(also their ``experimental`` spellings, a same-file function returning one, any branch of an
``if`` choosing one); ``OneDeviceStrategy`` has one replica and is none of them. A name that
is not bound visibly but is used as ``with strategy.scope():`` or as the receiver of
``strategy.run(fn, ...)`` counts as a strategy whose replica count is unknown.

``strategy.run(fn, args=...)`` (also ``experimental_run_v2`` / ``experimental_run``) runs ``fn``
once per replica: ``fn`` is a same-file function or method, also through ``tf.function(fn)``
and ``functools.partial(fn, ...)``. Gradients applied in replica context are summed across
replicas, so a step function's loss must be scaled to the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import argument, descendants, dotted, method_call

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope

_MULTI_REPLICA = {
    "MirroredStrategy",
    "TPUStrategy",
    "MultiWorkerMirroredStrategy",
    "CentralStorageStrategy",
    "ParameterServerStrategy",
}
_RUN_METHODS = ("run", "experimental_run_v2", "experimental_run")
_WRAPPERS = {"tensorflow.function", "functools.partial"}


@dataclass(frozen=True)
class ReplicaRun:
    """``strategy.run(fn, ...)``: the call, the strategy as written, the function run."""

    call: cst.Call
    strategy: cst.BaseExpression
    step: Scope
    #: True: a known multi-replica strategy; None: a strategy whose kind cannot be told.
    multi_replica: bool | None


class Distribution:
    """``TrainingModel.distribution``: strategies and replica step functions of one file."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    @cached_property
    def runs(self) -> list[ReplicaRun]:
        """Every ``strategy.run(fn, ...)`` whose strategy is not a one-device one."""
        if "distribute" not in self.model.text and "strategy" not in self.model.text:
            return []
        found = []
        for site in self.model.calls:
            method = method_call(site.node)
            if method is None or method[1] not in _RUN_METHODS:
                continue
            receiver = method[0]
            kind = self.strategy_kind(receiver, site.scope, site.order)
            if kind is False:
                continue
            fn = argument(site.node, 0, "fn")
            step = self._function(fn, site.scope, site.order) if fn is not None else None
            if step is not None:
                found.append(ReplicaRun(site.node, receiver, step, kind))
        return found

    def averages_gradients(self, step: Scope) -> bool:
        """Whether ``step`` all-reduces something with ``ReduceOp.MEAN`` itself (gradients
        averaged by hand: the loss may stay a per-replica mean)."""
        for site in self.model.calls_in(step):
            method = method_call(site.node)
            if method is None or method[1] not in ("all_reduce", "batch_reduce_to", "reduce"):
                continue
            if any((dotted(a.value) or "").endswith("ReduceOp.MEAN") for a in site.node.args):
                return True
        return False

    @cached_property
    def scopes(self) -> list[tuple[cst.With, cst.BaseExpression]]:
        """``with strategy.scope():`` blocks and the strategy each opens."""
        found = []
        for node in descendants(self.model.module):
            if isinstance(node, cst.With):
                for item in node.items:
                    method = method_call(item.item)
                    if method is not None and method[1] == "scope":
                        found.append((node, method[0]))
        return found

    def strategy_kind(
        self, expr: cst.BaseExpression, scope: Scope, before: int | None = None
    ) -> bool | None:
        """True for a multi-replica strategy, False for none (or a one-device one), None for
        a strategy of unknown kind (known only by use: ``.scope()``, ``.run(...)``)."""
        name = dotted(expr)
        if name is None:
            return False
        kinds = self._constructed_kinds(name, scope, before, 0)
        if kinds:
            if True in kinds:
                return True
            return None if None in kinds else False
        if "strategy" in name.rsplit(".", 1)[-1].lower() and self._used_as_strategy(name):
            return None
        return False

    def _constructed_kinds(
        self, name: str, scope: Scope, before: int | None, depth: int
    ) -> set[bool | None]:
        kinds: set[bool | None] = set()
        if depth > 3:
            return kinds
        for binding in self.model.lookup(name, scope, before):
            value = binding.value
            if isinstance(value, cst.Call):
                kinds.add(self._call_kind(value, binding.scope or scope, depth))
            elif value is not None and dotted(value) is not None and dotted(value) != name:
                inner = dotted(value) or ""
                where = binding.scope or scope
                kinds |= self._constructed_kinds(inner, where, binding.order, depth + 1)
        return kinds

    def _call_kind(self, call: cst.Call, scope: Scope, depth: int) -> bool | None:
        qualified = self.model.imports.qualify(call.func) or ""
        if is_under(qualified, "tensorflow.distribute"):
            last = qualified.rsplit(".", 1)[-1]
            if last in _MULTI_REPLICA:
                return True
            return None if last == "get_strategy" else False
        callee = self.model.callee(call, scope, external=False)
        if callee is None or depth > 3:
            return False
        kinds = {self._returned_kind(r, callee, depth) for r in callee.returns}
        if True in kinds:
            return True
        return None if None in kinds else False

    def _returned_kind(self, expr: cst.BaseExpression, scope: Scope, depth: int) -> bool | None:
        if isinstance(expr, cst.Call):
            return self._call_kind(expr, scope, depth + 1)
        name = dotted(expr)
        if name is None:
            return False
        kinds = self._constructed_kinds(name, scope, None, depth + 1)
        if True in kinds:
            return True
        return None if None in kinds else False

    def _used_as_strategy(self, name: str) -> bool:
        if any(dotted(strategy) == name for _, strategy in self.scopes):
            return True
        return any(
            (method := method_call(site.node)) is not None
            and method[1] in _RUN_METHODS
            and dotted(method[0]) == name
            and site.node.args
            for site in self.model.calls
        )

    def _function(
        self, fn: cst.BaseExpression, scope: Scope, before: int | None, depth: int = 0
    ) -> Scope | None:
        """The same-file function ``fn`` names (through ``tf.function``/``partial``)."""
        if depth > 3:
            return None
        if isinstance(fn, cst.Call):
            qualified = self.model.imports.qualify(fn.func) or ""
            if qualified in _WRAPPERS and fn.args:
                return self._function(fn.args[0].value, scope, before, depth + 1)
            return None
        name = dotted(fn)
        if name is None:
            return None
        if name.startswith("self.") and scope.cls is not None and name.count(".") == 1:
            return self.model.method(scope.cls, name[len("self.") :])
        current: Scope | None = scope
        while current is not None:
            if name in current.functions and name not in current.bindings:
                return current.functions[name]
            bindings = current.bindings.get(name)
            if bindings:
                latest = max(bindings, key=lambda b: b.order)
                if latest.value is None:
                    return None
                return self._function(latest.value, current, latest.order, depth + 1)
            current = current.parent
        return None
