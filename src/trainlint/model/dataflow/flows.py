"""What the loss tracer (:mod:`.lossflow`) answers: a value's reduction, the divisions that
apply to all of it, and the loss calls it came from; and how ``a + b`` combines two answers."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from trainlint.model.dataflow.lossforms import source_text
from trainlint.model.dataflow.reductions import Reduction


@dataclass(frozen=True)
class LossSource:
    """Where (part of) the loss is computed: the anchor for messages and findings."""

    node: cst.CSTNode
    label: str  # how the code names it: ``F.cross_entropy``, ``criterion``, ``outputs.loss``
    reduction: Reduction
    token_level: str | None = None  # why its denominator varies: "ignore_index", "mask", ...


@dataclass(frozen=True)
class Division:
    node: cst.CSTNode  # the dividing expression or statement
    divisor: cst.BaseExpression


@dataclass(frozen=True)
class Flow:
    reduction: Reduction = Reduction.UNKNOWN
    divisions: tuple[Division, ...] = ()  # divisions that apply to the whole value
    sources: tuple[LossSource, ...] = ()
    reciprocal: cst.BaseExpression | None = None  # ``1 / k``: multiplying by it divides by k

    def with_division(self, division: Division) -> Flow:
        return Flow(self.reduction, (*self.divisions, division), self.sources)


UNKNOWN_FLOW = Flow()
CONSTANT_FLOW = Flow(Reduction.CONSTANT)


def combine(flows: list[Flow]) -> Flow:
    """``a + b``: mean when the terms that carry a loss are means, divided when all are."""
    carrying = [f for f in flows if f.reduction is not Reduction.CONSTANT]
    if not carrying:
        return CONSTANT_FLOW
    kinds = {f.reduction for f in carrying}
    if Reduction.MEAN in kinds and Reduction.SUM not in kinds:
        reduction = Reduction.MEAN
    elif kinds == {Reduction.SUM} or kinds == {Reduction.SUM, Reduction.UNKNOWN}:
        reduction = Reduction.SUM
    elif len(kinds) == 1:
        reduction = kinds.pop()
    else:
        reduction = Reduction.UNKNOWN
    texts = [{source_text(d.divisor) for d in f.divisions} for f in carrying]
    common = set.intersection(*texts)
    divisions = tuple(d for d in carrying[0].divisions if source_text(d.divisor) in common)
    sources = tuple(s for f in carrying for s in f.sources)
    return Flow(reduction, divisions, sources)
