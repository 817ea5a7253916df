"""The lattice of graph cuts: what the paths into an expression carry (see :mod:`.detachment`).

:class:`GraphTrace` says whether some path reaches the model's graph (``live``), whether some
path runs through code trainlint cannot read (``opaque``), and where the graph was cut or
``requires_grad`` forced onto a cut value. The constant sets name the calls that cut, combine
or make values without following them further.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

CUT_METHODS = {"item", "tolist", "numpy", "detach", "argmax", "argmin"}
CUT_BUILTINS = {"float", "int", "round", "bool"}
COMBINING_BUILTINS = {"sum", "max", "min", "abs", "zip", "enumerate", "list", "tuple", "reversed"}
NO_VALUE_BUILTINS = {"len", "range", "str", "repr", "isinstance", "print"}
REBUILDING_TORCH = {
    "torch.tensor", "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor",
    "torch.cuda.FloatTensor", "torch.from_numpy", "torch.argmax", "torch.argmin",
}  # fmt: skip
TORCH_FACTORIES = {
    "zeros", "ones", "empty", "full", "randn", "rand", "randint", "randperm", "arange",
    "linspace", "zeros_like", "ones_like", "empty_like", "full_like", "randn_like", "rand_like",
    "eye", "LongTensor", "ByteTensor", "BoolTensor", "IntTensor",
}  # fmt: skip
VARIABLE = {"torch.autograd.Variable", "torch.autograd.variable.Variable"}
PARAMETER = {"torch.nn.Parameter", "torch.nn.parameter.Parameter"}
PARAMETER_METHODS = {"parameters", "named_parameters", "weight", "bias"}
APPENDS = {"append", "extend", "insert"}
MAX_DEPTH = 6


@dataclass(frozen=True)
class GraphTrace:
    """What the paths into one expression carry."""

    live: bool = False  # some path reaches a forward or a leaf that requires grad on purpose
    opaque: bool = False  # some path runs through code trainlint cannot read
    cuts: tuple[cst.CSTNode, ...] = ()  # where a value holding the model's graph was cut
    forced: tuple[cst.CSTNode, ...] = ()  # requires_grad forced onto a cut value

    @property
    def detached(self) -> bool:
        """Every path from the model output is cut (and there is one)."""
        return not self.live and not self.opaque and bool(self.cuts or self.forced)

    @property
    def anchor(self) -> cst.CSTNode | None:
        """The hack when there is one, else the first cut."""
        if self.forced:
            return self.forced[0]
        return self.cuts[0] if self.cuts else None


DEAD = GraphTrace()
LIVE = GraphTrace(live=True)
OPAQUE = GraphTrace(opaque=True)


def combine(*traces: GraphTrace) -> GraphTrace:
    return GraphTrace(
        live=any(t.live for t in traces),
        opaque=any(t.opaque for t in traces),
        cuts=tuple(c for t in traces for c in t.cuts),
        forced=tuple(f for t in traces for f in t.forced),
    )


def cut(inner: GraphTrace, node: cst.CSTNode) -> GraphTrace:
    """``inner`` taken out of the graph at ``node``: recorded as a cut when it was live."""
    if inner.live:
        return GraphTrace(cuts=(node,) + inner.cuts)
    if inner.opaque:
        return DEAD  # cut either way, but nothing says the model's graph was in it
    return GraphTrace(cuts=inner.cuts, forced=inner.forced)


def forced(inner: GraphTrace, node: cst.CSTNode) -> GraphTrace:
    """``requires_grad`` switched on at ``node`` for a value that carried ``inner``."""
    if inner.live or inner.opaque:
        return inner  # ``x.requires_grad_()`` on an input kept for saliency
    if inner.cuts:
        return GraphTrace(cuts=inner.cuts, forced=(node,) + inner.forced)
    return LIVE  # a fresh leaf made to require grad: weights written by hand
