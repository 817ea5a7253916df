"""The lattice of what a value holds: a graph tensor, a plain tensor, a number, unknown.

:class:`Fact` is what :class:`~.graph.Dataflow` computes for an expression; :func:`join`
combines the facts of the values an expression is computed from. The constant sets name the
methods, builtins and attributes whose result is known without following the value further.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import libcst as cst


class Holds(enum.Enum):
    GRAPH = "graph"  # a tensor that keeps its autograd graph alive
    TENSOR = "tensor"  # a tensor without a graph: detached, integer, boolean
    NUMBER = "number"  # a python / numpy number or list
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Fact:
    """What an expression holds, and the call the graph comes from (for messages)."""

    holds: Holds
    origin: cst.CSTNode | None = None
    #: A tensor that would hold a graph, but was made with gradients disabled (provenance).
    no_grad: bool = False


def without_graph(fact: Fact) -> Fact:
    """``fact`` for a value made with gradients disabled: a graph tensor becomes a plain one."""
    if fact.holds is Holds.GRAPH:
        return Fact(Holds.TENSOR, fact.origin, no_grad=True)
    return fact


UNKNOWN = Fact(Holds.UNKNOWN)
NUMBER = Fact(Holds.NUMBER)
TENSOR = Fact(Holds.TENSOR)

TO_NUMBER_METHODS = {"item", "tolist", "numpy", "size", "dim", "numel", "nelement"}
DETACHING_METHODS = {
    "detach", "argmax", "argmin", "argsort", "eq", "ne", "lt", "le", "gt", "ge", "long", "int",
    "bool", "byte", "sign", "nonzero", "isnan", "isinf", "isfinite", "new_zeros", "new_ones",
    "new_empty", "new_tensor", "new_full",
}  # fmt: skip
TO_NUMBER_BUILTINS = {"float", "int", "round", "bool", "len", "str", "repr", "format"}
TORCH_NO_GRAPH = {
    "tensor", "argmax", "argmin", "argsort", "eq", "ne", "lt", "le", "gt", "ge", "numel",
    "zeros", "ones", "empty", "full", "randn", "rand", "randint", "randperm", "arange",
    "linspace", "zeros_like", "ones_like", "empty_like", "full_like", "randn_like", "rand_like",
    "isnan", "isinf", "isfinite", "sign", "no_grad", "inference_mode",
}  # fmt: skip
NO_GRAPH_ATTRIBUTES = {"data", "grad"}
NUMBER_ATTRIBUTES = {"shape", "ndim", "dtype", "device", "requires_grad", "is_cuda", "is_leaf"}
TUPLE_REDUCTIONS = {"max", "min", "topk", "sort", "kthvalue", "mode", "median"}
NOT_FORWARD = {
    "parameters", "named_parameters", "state_dict", "load_state_dict", "train", "eval", "to",
    "cuda", "cpu", "zero_grad", "modules", "children", "apply", "generate", "named_modules",
    "buffers", "requires_grad_", "half", "float", "double",
}  # fmt: skip


def join(*facts: Fact) -> Fact:
    """The fact about a value computed from several: any graph makes a graph."""
    for fact in facts:
        if fact.holds is Holds.GRAPH:
            return fact
    if any(f.holds is Holds.UNKNOWN for f in facts) or not facts:
        return UNKNOWN
    for fact in facts:
        if fact.no_grad:
            return fact
    if any(f.holds is Holds.TENSOR for f in facts):
        return TENSOR
    return NUMBER


#: What a summary's ``Returned`` says that makes a graph tensor (see ``model.summaries``).
_GRAPH_REDUCTIONS = ("mean", "sum", "none")
_GRAPH_ACTIVATIONS = ("logits", "probabilities", "log-probabilities", "non-negative")


def external_fact(returned: object, call: cst.Call) -> Fact:
    """The fact of a call into another module, from its summary's ``Returned``: a loss or a
    layer's output is a graph tensor (a plain one when the function disables grad)."""
    reduction = getattr(returned, "reduction", "unknown")
    if reduction in _GRAPH_REDUCTIONS or getattr(returned, "activation", "") in _GRAPH_ACTIVATIONS:
        fact = Fact(Holds.GRAPH, call)
        return without_graph(fact) if getattr(returned, "graph", None) is False else fact
    if reduction == "constant":
        return Fact(Holds.NUMBER)
    return UNKNOWN
