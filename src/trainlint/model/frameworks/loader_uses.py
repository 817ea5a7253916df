"""What a ``DataLoader`` is used for, beyond its arguments: whether any of it is training.

* :func:`only_inspected` -- every use of the loader is a loop of the file that does not train
  (it prints shapes, caches features, measures lengths) and nothing else receives the
  loader: its order cannot matter to any training;
* :func:`single_batch` -- the loader yields one batch: its dataset is a ``Subset`` of ``k``
  literal indices (``range(k)``) and ``batch_size`` is at least ``k``, or ``batch_size`` is
  the length of the dataset (or of the data it was built from): there is no order of batches
  for a shuffle to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import (
    bare_names,
    contains,
    dotted,
    keyword,
    literal,
    method_call,
    positional,
)
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.frameworks.data import LoaderSite
    from trainlint.model.syntax.scopes import LoopInfo

#: Calls that only iterate or measure a loader they are given (no training can hide there).
_READERS = {"enumerate", "tqdm", "iter", "next", "len", "zip", "print", "track"}
#: List and set methods that only collect what they are given.
_COLLECTING = {"append", "extend", "insert", "add"}
_BUILTINS = {
    *_READERS,
    "max",
    "min",
    "sum",
    "list",
    "tuple",
    "dict",
    "str",
    "float",
    "int",
    "sorted",
}


def only_inspected(model: TrainingModel, site: LoaderSite) -> bool:
    """Whether the loader is only iterated by loops of the file that do not train, and is
    handed to nothing else (a call, a return, an attribute)."""
    from trainlint.model.loops.loop_purpose import trains

    name = site.target
    if name is None or "." in name:
        return False  # an attribute is read by other methods the file may not show
    scope = site.scope
    # while this loader is the one bound: up to the next binding of the name
    later = [b.order for b in scope.bindings.get(name, []) if b.order > site.order]
    end = min(later, default=None)

    def current(order: int | None) -> bool:
        return order is not None and order > site.order and (end is None or order < end)

    loops = [
        loop
        for loop in model.data.loops_over(site)
        if loop.scope is not scope or current(loop.order)
    ]
    if not loops or any(trains(model, loop) or _hands_batches_on(model, loop) for loop in loops):
        return False
    if any(loop.scope is not scope for loop in loops):
        return False  # iterated in a helper given the loader: the helper's other callers
    for site_call in model.calls_in(scope):
        if not current(site_call.order):
            continue
        func = (dotted(site_call.node.func) or "").rsplit(".", 1)[-1]
        if func in _READERS:
            continue
        if any(dotted(a.value) == name for a in site_call.node.args):
            return False  # ``train(model, loader)``: it may train there
    for returned, order in zip(scope.returns, scope.return_orders, strict=False):
        if current(order) and name in bare_names(returned):
            return False
    for bindings in scope.bindings.values():
        for binding in bindings:
            if binding.from_iteration or not current(binding.order):
                continue  # ``for batch in loader``: the loop itself
            if binding.value is not None and dotted(binding.value) == name:
                return False  # ``self.loader = loader`` / an alias read elsewhere
    return True


def _hands_batches_on(model: TrainingModel, loop: LoopInfo) -> bool:
    """Whether the loop gives its batches to code that may train on them unseen: a call
    trainlint cannot follow (``trainer.step(batch)``, ``external_update(x, y)``), not the
    batch's own methods, a library function, a builtin, or a model (a forward or a model's
    method: the loop's own events say whether it back-propagates)."""
    node = loop.node
    if not isinstance(node, cst.For):
        return True
    targets = bare_names(node.target)
    for site in model.calls_in(loop.scope):
        call = site.node
        if not contains(node.body, call):
            continue
        if not any(bare_names(a.value) & targets for a in call.args):
            continue
        if site.qualified or (dotted(call.func) or "") in _BUILTINS:
            continue
        if model.dataflow.grad_disabled(call):
            continue  # under ``torch.no_grad()``: nothing there trains on the batch
        method = method_call(call)
        if method is not None and (bare_names(method[0]) & targets or method[1] in _COLLECTING):
            continue  # ``x.to(device)``, ``lengths.extend(...)``
        if model.role_of(method[0] if method else call.func, loop.scope) is Role.MODEL:
            continue
        if model.callee(call, loop.scope) is not None:
            continue  # a same-file helper: inlined into the loop's events
        return True
    return False


def single_batch(model: TrainingModel, site: LoaderSite) -> bool:
    """Whether the loader yields a single batch (see the module docstring)."""
    call = site.call
    dataset = keyword(call, "dataset") or positional(call, 0)
    size = keyword(call, "batch_size") or positional(call, 1)
    if dataset is None or size is None:
        return False
    literal_size = literal(size, None)
    if isinstance(literal_size, int) and not isinstance(literal_size, bool):
        count = _subset_count(model, dataset, site)
        return count is not None and count <= literal_size
    measured = _len_of(size)
    if measured is None:
        return False
    return measured in _dataset_names(model, dataset, site)


def _len_of(expr: cst.BaseExpression) -> str | None:
    """``d`` in ``len(d)``."""
    if isinstance(expr, cst.Call) and dotted(expr.func) == "len" and len(expr.args) == 1:
        return dotted(expr.args[0].value)
    return None


def _bound_value(
    model: TrainingModel, expr: cst.BaseExpression, site: LoaderSite
) -> cst.BaseExpression:
    name = dotted(expr)
    if name is None:
        return expr
    bindings = model.lookup(name, site.scope, site.order)
    if len(bindings) != 1 or bindings[0].value is None or bindings[0].unpack_index is not None:
        return expr
    return bindings[0].value


def _subset_count(
    model: TrainingModel, dataset: cst.BaseExpression, site: LoaderSite
) -> int | None:
    """``k`` for a dataset written ``Subset(ds, range(k))`` (directly or bound to a name)."""
    value = _bound_value(model, dataset, site)
    if not isinstance(value, cst.Call) or (dotted(value.func) or "").rsplit(".", 1)[-1] != "Subset":
        return None
    indices = keyword(value, "indices") or positional(value, 1)
    if isinstance(indices, (cst.List, cst.Tuple)):
        return len(indices.elements)
    if isinstance(indices, cst.Call) and dotted(indices.func) == "range" and len(indices.args) == 1:
        count = literal(indices.args[0].value, None)
        return count if isinstance(count, int) and not isinstance(count, bool) else None
    return None


def _dataset_names(model: TrainingModel, dataset: cst.BaseExpression, site: LoaderSite) -> set[str]:
    """The dataset's name and the names of the data its constructor was given
    (``InstructionDataset(sample_data, tokenizer)``: ``sample_data``, its first argument)."""
    found = {n for n in [dotted(dataset)] if n}
    value = _bound_value(model, dataset, site)
    if isinstance(value, cst.Call):
        first = positional(value, 0)
        if first is not None and dotted(first):
            found.add(dotted(first))  # type: ignore[arg-type]
    return found
