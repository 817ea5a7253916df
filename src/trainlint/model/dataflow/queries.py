"""DataflowQueries: the part of :class:`trainlint.model.TrainingModel` that answers where values
go: graph tensors vs numbers, graph cuts and retention, carried totals, discarded results.

A mixin of the one model object: its methods read the core's parse results (scopes,
bindings, calls) through ``self``; see :mod:`trainlint.model` for the public queries.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import operand_arguments
from trainlint.model.dataflow.carryover import CarriedTotal, carried_totals
from trainlint.model.dataflow.detachment import GraphCuts
from trainlint.model.dataflow.discarded import OutOfPlaceDiscard, discarded_results
from trainlint.model.dataflow.graph import Dataflow
from trainlint.model.dataflow.results import (
    UnusedResult,
    own_method_returns_nothing,
    unused_result,
)
from trainlint.model.dataflow.retention import RetainedAppend, retained_appends
from trainlint.model.syntax.scopes import (
    Scope,
)

if TYPE_CHECKING:
    from trainlint.model.loops.event_types import Event


class DataflowQueries:
    @cached_property
    def dataflow(self) -> Dataflow:
        """Graph tensors vs numbers, reductions, uses of accumulators (see :mod:`.dataflow`)."""
        return Dataflow(self)

    @cached_property
    def graph_cuts(self) -> GraphCuts:
        """Whether backward targets still reach the model (see :mod:`.dataflow.detachment`)."""
        return GraphCuts(self)

    @cached_property
    def retained_appends(self) -> list[RetainedAppend]:
        """Appends that keep a graph per iteration alive (see :mod:`.dataflow.retention`)."""
        return retained_appends(self)

    @cached_property
    def carried_totals(self) -> list[CarriedTotal]:
        """Totals carried from one epoch into the next (see :mod:`.dataflow.carryover`)."""
        return carried_totals(self)

    @cached_property
    def discarded_results(self) -> list[OutOfPlaceDiscard]:
        """Statements discarding a tensor's or dataset's new value (see ``.discarded``)."""
        return discarded_results(self)

    def unused_result(self, call: cst.Call, scope: Scope) -> UnusedResult | None:
        """How the result of ``call`` is thrown away, or None (see :mod:`.dataflow.results`)."""
        return unused_result(self, call, scope)

    def own_method_returns_nothing(
        self, receiver: cst.BaseExpression, scope: Scope, method: str
    ) -> bool | None:
        """Whether ``receiver``'s class overrides ``method`` with one returning no value."""
        return own_method_returns_nothing(self, receiver, scope, method)

    def operand_arguments(
        self, event: Event, call: cst.Call, scope: Scope
    ) -> list[cst.BaseExpression]:
        """The arguments ``call`` (in ``scope``) passes for the helper parameters that an
        inlined accumulation ``event``'s operand is made from (see :mod:`.dataflow.calls`)."""
        return operand_arguments(self, event, call, scope)  # type: ignore[arg-type]
