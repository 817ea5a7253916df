"""How a loop splits its data into batches, and whether every batch has the same size.

:func:`batching` reads a loop's iterable: a torch ``DataLoader`` (``batch_size``,
``drop_last``, its dataset and that dataset's size when literal; a loader passed in as a
parameter is resolved through same-file callers; one made by a factory taken from a list or
dict of same-file factories is each factory's loader), a ``tf.data`` pipeline (``.batch(n,
drop_remainder=...)``, ``.repeat()`` before batching; a parameter, through same-file callers
too), or slicing by ``range(0, N, step)``.
It says whether every batch has the same size -- ``drop_last``, or sizes statically known to
divide evenly -- or the last one can be smaller. :func:`rows_of` reads literal sizes
(``torch.randn(100, 4)``, ``TensorDataset(...)``, ``np.zeros((50, 3))``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.keywords import keyword_through_kwargs, passes_kwargs
from trainlint.model.syntax.nodes import (
    dotted,
    keyword,
    literal,
    method_call,
    positional,
)
from trainlint.model.values.factories import chosen_functions
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.syntax.scopes import LoopInfo, Scope


@dataclass(frozen=True)
class Batching:
    kind: str  # "loader", "tf.data" or "range"
    source: cst.BaseExpression  # the loader / dataset / range call, wrappers removed
    name: str | None  # how the code names it: ``train_loader``
    dataset: str | None  # what holds the samples: the loader's dataset, the sliced array
    batch_size: int | None
    samples: int | None
    counter: str | None  # the ``enumerate`` index bound by the loop
    counter_start: int
    full: bool  # every batch has the same size
    why: str  # for messages: why the last batch can (not) be smaller
    #: Whether the loader's construction was seen (``False``: a parameter nobody in the file
    #: passes, ``DataLoader(ds, **kwargs)`` with ``kwargs`` unknown): a weaker finding.
    visible: bool = True


_WRAPPERS = {"tqdm", "track", "progress_bar", "iter", "auto", "notebook"}
_ARRAY_FACTORIES = {
    "torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty", "torch.full",
    "numpy.zeros", "numpy.ones", "numpy.empty", "numpy.full", "numpy.random.randn",
    "numpy.random.rand", "tensorflow.zeros", "tensorflow.ones", "tensorflow.random.normal",
    "tensorflow.random.uniform",
}  # fmt: skip
_SIZED_BY_KEYWORD = {"numpy.random.normal", "numpy.random.uniform", "numpy.random.randint"}
_KEEP_ROWS = {"float", "double", "to", "cuda", "cpu", "astype", "long", "view", "reshape"}


def int_value(flow: Dataflow, expr: cst.BaseExpression | None, scope: Scope) -> int | None:
    """A literal int, or a name bound once to one (``BATCH_SIZE = 64``)."""
    found = literal(expr, None)
    if isinstance(found, int) and not isinstance(found, bool):
        return found
    name = dotted(expr)
    if name is None:
        return None
    bindings = [b for b in flow.model.lookup(name, scope) if not b.from_iteration]
    if len(bindings) == 1 and not bindings[0].augmented and bindings[0].unpack_index is None:
        found = literal(bindings[0].value, None)
        if isinstance(found, int) and not isinstance(found, bool):
            return found
    return None


def rows_of(flow: Dataflow, expr: cst.BaseExpression | None, scope: Scope, depth: int = 0):
    """The number of rows of an array or dataset built from literal sizes (``None``: unknown)."""
    if expr is None or depth > 6:
        return None
    if isinstance(expr, (cst.Tuple, cst.List)) and expr.elements:
        return rows_of(flow, expr.elements[0].value, scope, depth + 1)
    if isinstance(expr, (cst.Name, cst.Attribute)):
        name = dotted(expr) or ""
        bindings = [b for b in flow.model.lookup(name, scope) if not b.from_iteration]
        if len(bindings) == 1 and not bindings[0].augmented and bindings[0].unpack_index is None:
            return rows_of(flow, bindings[0].value, scope, depth + 1)
        return None
    if not isinstance(expr, cst.Call):
        return None
    qualified = flow.model.imports.qualify(expr.func) or ""
    first = positional(expr, 0)
    if qualified.endswith("TensorDataset"):
        return rows_of(flow, first, scope, depth + 1)
    if qualified in _ARRAY_FACTORIES:
        shape = keyword(expr, "size") or keyword(expr, "shape") or first
        if isinstance(shape, (cst.Tuple, cst.List)) and shape.elements:
            shape = shape.elements[0].value
        return int_value(flow, shape, scope)
    if qualified in _SIZED_BY_KEYWORD or qualified == "torch.randint":
        shape = keyword(expr, "size")
        if shape is None and qualified == "torch.randint":
            shape = positional(expr, 2) or positional(expr, 1)
        if isinstance(shape, (cst.Tuple, cst.List)) and shape.elements:
            shape = shape.elements[0].value
        return int_value(flow, shape, scope)
    if qualified in ("torch.arange", "numpy.arange") and len(expr.args) <= 2:
        start, stop = (0, first) if len(expr.args) == 1 else (first, positional(expr, 1))
        low = int_value(flow, start, scope) if not isinstance(start, int) else start
        high = int_value(flow, stop, scope)
        return high - low if low is not None and high is not None else None
    method = method_call(expr)
    if method is not None and method[1] in _KEEP_ROWS:
        return rows_of(flow, method[0], scope, depth + 1)
    return None


# ---------------------------------------------------------------------- batching
def batching(flow: Dataflow, loop: LoopInfo) -> Batching | None:
    """How ``loop`` batches its data, when it iterates a loader, a tf.data pipeline or
    ``range(start, stop, step)`` slices; ``None`` for any other loop."""
    if not isinstance(loop.node, cst.For):
        return None
    return batching_of(flow, loop.node.iter, loop.node.target, loop.scope)


def batching_of(
    flow: Dataflow, iterable: cst.BaseExpression, target: cst.BaseExpression, scope: Scope
) -> Batching | None:
    source, counter, start = _unwrap(iterable, target)
    if isinstance(source, cst.Call) and dotted(source.func) == "range":
        return _range_batching(flow, source, counter, start, scope)
    value = flow.model.value_of(source, scope)
    if value is not None and value.role is Role.LOADER:
        return _loader_batching(flow, source, counter, start, scope)
    return _tf_batching(flow, source, counter, start, scope)


def _unwrap(
    iterable: cst.BaseExpression, target: cst.BaseExpression
) -> tuple[cst.BaseExpression, str | None, int]:
    counter, start = None, 0
    while isinstance(iterable, cst.Call) and positional(iterable, 0) is not None:
        name = dotted(iterable.func) or ""
        last = name.rsplit(".", 1)[-1]
        if last == "enumerate":
            if isinstance(target, cst.Tuple) and target.elements:
                counter = dotted(target.elements[0].value)
            given = keyword(iterable, "start") or positional(iterable, 1)
            start = literal(given, 0) if given is not None else 0
        elif last not in _WRAPPERS:
            break
        iterable = positional(iterable, 0)  # type: ignore[assignment]
    return iterable, counter, start if isinstance(start, int) else 0


def _range_batching(flow, call, counter, start, scope) -> Batching | None:
    if len(call.args) != 3:
        return None
    first, stop, step = (positional(call, i) for i in range(3))
    low, size = int_value(flow, first, scope), int_value(flow, step, scope)
    total, sliced = int_value(flow, stop, scope), None
    length = stop
    if isinstance(stop, cst.Call) and dotted(stop.func) == "len":
        sliced = dotted(positional(stop, 0))
        total = rows_of(flow, positional(stop, 0), scope)
    elif isinstance(stop, cst.Subscript) and (dotted(stop.value) or "").endswith(".shape"):
        sliced = (dotted(stop.value) or "")[: -len(".shape")]
        total = rows_of(flow, stop.value.value, scope)  # type: ignore[attr-defined]
    full = None not in (low, size, total) and (total - low) % size == 0  # type: ignore[operator]
    text = cst.Module([]).code_for_node(length) if length is not None else "N"
    why = (
        f"{total - low} rows in steps of {size}"  # type: ignore[operator]
        if None not in (low, size, total)
        else f"`{text}` need not be a multiple of the step, so the last slice can be smaller"
    )
    return Batching("range", call, None, sliced, size, total, counter, start, full, why)


def _loader_batching(flow, source, counter, start, scope) -> Batching:
    name = dotted(source)
    built = _loader_calls(flow, source, scope)
    if not built:
        why = (
            f"`{name or 'the loader'}` is built elsewhere and, unless it sets `drop_last=True`, "
            "its last batch is smaller"
        )
        return Batching(
            "loader", source, name, None, None, None, counter, start, False, why, visible=False
        )
    full, why, dataset, size, samples, visible = True, "", None, None, None, True
    for call, caller in built:
        given, seen = keyword_through_kwargs(flow, call, "drop_last", caller)
        drop_last = literal(given, None)
        if drop_last is None and isinstance(given, cst.Name):
            drop_last = _set_true_somewhere(flow, given.value, caller)
        visible = visible and seen
        dataset_expr = keyword(call, "dataset") or positional(call, 0)
        dataset = dotted(dataset_expr)
        size_expr, sized = keyword_through_kwargs(flow, call, "batch_size", caller)
        size_expr = size_expr or positional(call, 1)
        sampled = keyword_through_kwargs(flow, call, "batch_sampler", caller)[0] is not None
        unsized = size_expr is None and not sampled and sized and not passes_kwargs(call)
        size = 1 if unsized else int_value(flow, size_expr, caller)
        samples = rows_of(flow, dataset_expr, caller)
        if drop_last is True or size == 1:
            why = why or ("`drop_last=True`" if drop_last is True else "batches of one sample")
            continue
        if size and samples and samples % size == 0:
            why = why or f"{samples} samples in batches of {size}"
            continue
        full = False
        if size and samples:
            why = f"{samples} samples in batches of {size} leave a last batch of {samples % size}"
        else:
            why = "the loader does not set `drop_last=True`, so its last batch can be smaller"
            if name:
                why = f"`{name}` does not set `drop_last=True`, so its last batch can be smaller"
            if not visible:
                why = (
                    f"`{name or 'the loader'}` is built from keyword arguments trainlint cannot "
                    "see and, unless they set `drop_last=True`, its last batch is smaller"
                )
        break
    return Batching(
        "loader", source, name, dataset, size, samples, counter, start, full, why, visible
    )


def _set_true_somewhere(flow: Dataflow, name: str, scope: Scope) -> bool | None:
    """``drop_last=drop_last`` where a loader factory sets ``drop_last = True`` for some
    splits: which split this loader reads is the caller's argument, so it may drop its last
    batch (True); None when no binding of the name sets it."""
    values = {literal(b.value, None) for b in flow.model.lookup(name, scope) if not b.augmented}
    return True if True in values else None


def _loader_calls(flow, source, scope) -> list[tuple[cst.Call, Scope]]:
    """The ``DataLoader(...)`` calls a loader expression stands for (through callers)."""
    model = flow.model
    made = _from_factories(flow, source, scope)
    if made is not None:
        return made
    value = model.value_of(source, scope)
    if value is not None and value.call is not None:
        # read the call where it is written (``_, loader = self._get_data("val")``: in the
        # factory, whose locals its arguments name)
        written = flow.call_sites().get(id(value.call), (scope,))[0]
        return [(value.call, written)] if value.kind.endswith("DataLoader") else []
    name = dotted(source)
    if not name or name not in scope.params:
        return []
    found = []
    for argument, caller in flow.arguments_for(name, scope):
        made = _from_factories(flow, argument, caller)
        if made is not None:
            found += made
            continue
        passed = model.value_of(argument, caller)
        if passed is None or passed.call is None or not passed.kind.endswith("DataLoader"):
            return []
        found.append((passed.call, flow.call_sites().get(id(passed.call), (caller,))[0]))
    return found


def _from_factories(flow, expr, scope) -> list[tuple[cst.Call, Scope]] | None:
    """``loader = make(...)`` with ``make`` taken from a list or dict of same-file factories
    (``values.factories``): the ``DataLoader(...)`` each of them returns; ``[]`` when one
    returns something else, ``None`` when ``expr`` is not made that way."""
    model = flow.model
    call = expr if isinstance(expr, cst.Call) else None
    name = dotted(expr)
    bindings = model.lookup(name, scope) if name else []
    if call is None and len(bindings) == 1 and isinstance(bindings[0].value, cst.Call):
        binding = bindings[0]
        if binding.augmented or binding.from_iteration or binding.unpack_index is not None:
            return None
        call, scope = binding.value, binding.scope or scope
    if call is None:
        return None
    functions = chosen_functions(model, call, scope)
    if not functions:
        return None
    found = []
    for function in functions:
        values = [model.value_of(r, function) for r in function.returns]
        calls = [v.call for v in values if v is not None and v.call is not None]
        if not calls or len(calls) != len(values):
            return []
        if not all((model.imports.qualify(c.func) or "").endswith("DataLoader") for c in calls):
            return []
        found += [(c, function) for c in calls]
    return found


def _tf_batching(flow, source, counter, start, scope, depth: int = 0) -> Batching | None:
    """A ``tf.data`` chain: ``Dataset.from_tensor_slices(...)...batch(n)``; a parameter is the
    chain every same-file caller passes (they must agree on whether batches are full)."""
    model = flow.model
    name = dotted(source)
    if name and name in scope.params and flow.binding_before(name, scope, None) is None:
        if depth > 3:
            return None
        passed = [
            _tf_batching(flow, argument, counter, start, caller, depth + 1)
            for argument, caller in flow.arguments_for(name, scope)
        ]
        if not passed or any(p is None for p in passed) or len({p.full for p in passed}) != 1:
            return None
        found = passed[0]
        return Batching(
            found.kind, source, name, found.dataset, found.batch_size, found.samples,
            counter, start, found.full, found.why,
        )  # fmt: skip
    operations: list[cst.Call] = []
    current: cst.BaseExpression | None = source
    before: int | None = None
    root = None
    for _ in range(30):
        if isinstance(current, (cst.Name, cst.Attribute)):
            binding = flow.binding_before(dotted(current) or "", scope, before)
            if binding is None or binding.from_iteration or binding.unpack_index is not None:
                break
            current, before = binding.value, binding.order
            continue
        if not isinstance(current, cst.Call):
            break
        qualified = model.imports.qualify(current.func) or ""
        if qualified.startswith("tensorflow.data.Dataset."):
            root = current
            break
        method = method_call(current)
        if method is None:
            break
        operations.append(current)
        current = method[0]
    if root is None:
        return None
    batches = [op for op in operations if method_call(op)[1] in ("batch", "padded_batch")]  # type: ignore[index]
    if not batches:
        return None
    batch = batches[-1]  # innermost (first applied) batch op is the last collected
    repeats = any(
        method_call(op)[1] == "repeat" and operations.index(op) > operations.index(batch)  # type: ignore[index]
        for op in operations
    )
    size = int_value(flow, keyword(batch, "batch_size") or positional(batch, 0), scope)
    arrays = positional(root, 0)
    samples = rows_of(flow, arrays, scope)
    dataset = dotted(arrays.elements[0].value) if isinstance(arrays, cst.Tuple) else dotted(arrays)
    drop = literal(keyword(batch, "drop_remainder"), None) is True
    even = size is not None and samples is not None and samples % size == 0
    full = drop or repeats or even
    if drop:
        why = "`drop_remainder=True`"
    elif repeats:
        why = "the data repeats before batching, so every batch is full"
    elif size and samples:
        why = f"{samples} samples in batches of {size}"
    else:
        why = "`.batch()` without `drop_remainder=True` leaves a smaller last batch"
    name = dotted(source)
    return Batching("tf.data", source, name, dataset, size, samples, counter, start, full, why)
