"""Averages over batches: what an accumulator is divided by, and where it is finalized.

:func:`divisor_kind` tells a number of batches (``len(loader)``, a counter ``+= 1`` per
batch, ``i + 1`` from ``enumerate``, ``len(losses)``) from a number of samples
(``len(loader.dataset)``, ``len(dataset)``, a counter ``+= x.size(0)``);
:func:`finalizers` finds the divisions or means that turn an accumulator (or a list) filled
in a loop into an average, after the loop and before the accumulator is reset.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.batches import batching_of
from trainlint.model.dataflow.reductions import is_size_like
from trainlint.model.dataflow.uses import own_nodes
from trainlint.model.loops.events import EventKind
from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    keyword,
    literal,
    method_call,
    positional,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model.dataflow.batches import Batching
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import LoopInfo, Scope


class Divisor(enum.Enum):
    BATCHES = "batches"
    SAMPLES = "samples"
    OTHER = "other"


@dataclass(frozen=True)
class Finalizer:
    node: cst.CSTNode  # the division, ``/=`` statement or mean call
    divisor: cst.BaseExpression | None  # None: a mean over the list's elements (its length)


_WRAPPING = {
    "torch.tensor", "torch.stack", "torch.Tensor", "torch.FloatTensor", "numpy.array",
    "numpy.asarray", "numpy.stack", "tensorflow.stack", "tensorflow.convert_to_tensor",
}  # fmt: skip
_MEANS = {
    "numpy.mean", "numpy.average", "numpy.nanmean", "statistics.mean", "statistics.fmean",
    "torch.mean", "tensorflow.reduce_mean", "tensorflow.math.reduce_mean",
}  # fmt: skip
_DATASET_NAME = re.compile(r"(dataset|_set|_ds)$", re.I)
_SAMPLE_COUNT = re.compile(
    r"^(n|num|nb|number_of|total)_?(samples|examples|train|test|val|items)$|dataset_size$", re.I
)
_BATCH_COUNT = re.compile(
    r"^(n|num|nb|number_of|total)_?(batch(es)?|steps|iters|iterations)$|steps_per_epoch$", re.I
)


# ---------------------------------------------------------------------- divisors
def counters(flow: Dataflow, loop: LoopInfo) -> dict[str, Divisor]:
    """Names incremented once per iteration of ``loop``: by one (batches) or by a batch size."""
    found: dict[str, Divisor] = {}
    for event in flow.model.iteration(loop):
        if event.kind is not EventKind.ACCUMULATE or event.loops or event.via or event.conditions:
            continue
        if not event.subject:
            continue
        if literal(event.operand, None) == 1:
            found[event.subject] = Divisor.BATCHES
        elif is_size_like(event.operand):
            found[event.subject] = Divisor.SAMPLES
    return found


def divisor_kind(
    flow: Dataflow,
    expr: cst.BaseExpression,
    scope: Scope,
    batches: Batching,
    counted: dict[str, Divisor],
    lists: frozenset[str] = frozenset(),
    depth: int = 0,
) -> Divisor:
    """Whether ``expr`` counts the batches or the samples ``batches`` produced."""
    if depth > 4:
        return Divisor.OTHER
    args = (scope, batches, counted, lists, depth + 1)
    if isinstance(expr, cst.Call):
        func = dotted(expr.func)
        inner = positional(expr, 0)
        if func == "len" and inner is not None:
            return _length_kind(flow, inner, scope, batches, lists)
        if func in ("float", "int", "max") and inner is not None:
            return divisor_kind(flow, inner, *args)
        return Divisor.OTHER
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
        name = dotted(expr.left)
        if name == batches.counter and literal(expr.right, None) == 1 - batches.counter_start:
            return Divisor.BATCHES
        return Divisor.OTHER
    name = dotted(expr)
    if name is None:
        return Divisor.OTHER
    if name in counted:
        return counted[name]
    if name == batches.counter and batches.counter_start == 1:
        return Divisor.BATCHES
    bindings = [b for b in flow.model.lookup(name, scope) if not b.from_iteration]
    plain = [b for b in bindings if not b.augmented]
    if len(plain) == 1 and len(bindings) == 1 and plain[0].value is not None:
        return divisor_kind(flow, plain[0].value, *args)
    last = name.rsplit(".", 1)[-1]
    if _BATCH_COUNT.search(last):
        return Divisor.BATCHES
    if _SAMPLE_COUNT.search(last):
        return Divisor.SAMPLES
    return Divisor.OTHER


def _length_kind(flow, inner, scope, batches: Batching, lists) -> Divisor:
    if isinstance(inner, cst.Call) and dotted(inner.func) == "list" and inner.args:
        inner = positional(inner, 0)
    name = dotted(inner)
    if name is None:
        return Divisor.OTHER
    if name in lists or (batches.name and name == batches.name):
        return Divisor.BATCHES
    if name.endswith(".dataset") or (batches.dataset and name == batches.dataset):
        return Divisor.SAMPLES
    value = flow.model.value_of(inner, scope)
    if value is not None and value.role is Role.LOADER:
        return Divisor.BATCHES
    if batching_of(flow, inner, inner, scope) is not None:
        return Divisor.BATCHES  # a batched tf.data pipeline: its length counts batches
    if value is not None and value.role is Role.DATASET:
        return Divisor.SAMPLES
    if _DATASET_NAME.search(name.rsplit(".", 1)[-1]):
        return Divisor.SAMPLES
    return Divisor.OTHER


# ---------------------------------------------------------------------- finalizers
def finalizers(flow: Dataflow, loop: LoopInfo, name: str, is_list: bool) -> list[Finalizer]:
    """Divisions (``name / d``, ``name /= d``) or means (``np.mean(name)``,
    ``sum(name) / d``) of an accumulator after ``loop``, up to the next reset of ``name``."""
    found: list[Finalizer] = []
    for node in _after_loop(loop, else_runs_after=True):
        if _resets(node, name):
            # ``total = (total / len(loader)).item()`` finalizes on its way to the reset
            inside_value = (
                [node.value, *descendants(node.value)] if isinstance(node, cst.Assign) else []
            )
            for inner in inside_value:
                finalizer = _finalizer(flow, inner, name, is_list)
                if finalizer is not None:
                    found.append(finalizer)
            break
        finalizer = _finalizer(flow, node, name, is_list)
        if finalizer is not None:
            found.append(finalizer)
    return found


def meter_finalizers(flow: Dataflow, loop: LoopInfo, receiver: str, averages) -> list[Finalizer]:
    """Reads of a meter's average after ``loop`` (``losses.avg``, ``meter.average()``), up to
    the next rebinding of the meter."""
    found: list[Finalizer] = []
    for node in _after_loop(loop, else_runs_after=False):
        method = method_call(node)
        if method is not None and method[1] == "reset" and dotted(method[0]) == receiver:
            break  # ``losses.reset()``
        if _resets(node, receiver):
            break
        if (
            isinstance(node, cst.Attribute)
            and dotted(node.value) == receiver
            and node.attr.value in averages
        ):
            parent = flow.parent(node)  # ``meter.average()``: the call is the read
            called = isinstance(parent, cst.Call) and parent.func is node
            found.append(Finalizer(parent if called else node, None))  # type: ignore[arg-type]
    return found


def _resets(node: cst.CSTNode, name: str) -> bool:
    if isinstance(node, cst.Assign):
        return any(dotted(t.target) == name for t in node.targets)
    method = method_call(node)
    return method is not None and method[1] == "clear" and dotted(method[0]) == name


def _is(flow: Dataflow, expr: cst.BaseExpression, name: str) -> bool:
    """``expr`` is the accumulator itself, perhaps converted (``total.item()``, ``float(t)``)."""
    if dotted(expr) == name:
        return True
    if isinstance(expr, cst.Call):
        method = method_call(expr)
        if method is not None and method[1] in ("item", "cpu", "numpy", "detach"):
            return _is(flow, method[0], name)
        if dotted(expr.func) == "float" and positional(expr, 0) is not None:
            return _is(flow, positional(expr, 0), name)  # type: ignore[arg-type]
    return False


def _list_of(flow: Dataflow, expr: cst.BaseExpression | None, name: str) -> bool:
    if expr is None:
        return False
    if dotted(expr) == name:
        return True
    if isinstance(expr, cst.Call):
        qualified = flow.model.imports.qualify(expr.func) or ""
        return qualified in _WRAPPING and _list_of(flow, positional(expr, 0), name)
    return False


def _finalizer(flow: Dataflow, node: cst.CSTNode, name: str, is_list: bool) -> Finalizer | None:
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Divide):
        left = node.left
        if not is_list and _is(flow, left, name):
            return Finalizer(node, node.right)
        summed = isinstance(left, cst.Call) and dotted(left.func) == "sum"
        if is_list and summed and _list_of(flow, positional(left, 0), name):  # type: ignore[union-attr]
            return Finalizer(node, node.right)
    divides = isinstance(node, cst.AugAssign) and isinstance(node.operator, cst.DivideAssign)
    if divides and not is_list and dotted(node.target) == name:  # type: ignore[union-attr]
        return Finalizer(node, node.value)  # type: ignore[union-attr]
    if is_list and isinstance(node, cst.Call):
        qualified = flow.model.imports.qualify(node.func) or ""
        first = positional(node, 0)
        whole = not any(keyword(node, k) is not None for k in ("weights", "axis", "dim"))
        if (
            qualified in _MEANS
            and whole
            and positional(node, 1) is None
            and _list_of(flow, first, name)
        ):
            return Finalizer(node, None)
        method = method_call(node)
        wrapped = method is not None and method[1] == "mean" and not node.args
        if wrapped and _list_of(flow, method[0], name) and dotted(method[0]) != name:  # type: ignore[index]
            return Finalizer(node, None)
    return None


def _after_loop(loop: LoopInfo, else_runs_after: bool) -> Iterator[cst.CSTNode]:
    """The nodes of the loop's scope that come after the loop, in order (with
    ``else_runs_after``, also its ``else:`` block: ``for ...: ... else: avg = total / n``)."""
    inside = {id(n) for n in own_nodes(loop.node)}
    orelse = getattr(loop.node, "orelse", None)
    if else_runs_after and orelse is not None:
        inside -= {id(n) for n in own_nodes(orelse)} | {id(orelse)}
    seen_loop = False
    for node in own_nodes(loop.scope.node):
        if node is loop.node:
            seen_loop = True
        elif seen_loop and id(node) not in inside:
            yield node
