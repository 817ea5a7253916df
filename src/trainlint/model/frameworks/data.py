"""Torch data pipelines: ``Dataset`` classes, ``DataLoader`` constructions, samplers.

:class:`DataPipelines` answers, for one file:

* which same-file classes are torch datasets (:meth:`~DataPipelines.dataset_class`): a class
  deriving from ``torch.utils.data.Dataset`` / ``IterableDataset`` or a torchvision dataset
  (through same-file bases), a class with ``__getitem__`` whose unresolved base is a project
  ``*Dataset``, or any class a ``DataLoader`` in the file is built over; and which of them are
  iterable (``IterableDataset``, or ``__iter__`` with no ``__getitem__``);
* every ``DataLoader(...)`` call (:attr:`~DataPipelines.loaders`) with its arguments read by
  keyword, position or through ``**kwargs`` the file builds, the name it is bound to, and the
  dataset it reads: the constructor call and same-file class behind the argument, through
  names, ``Subset``/``ConcatDataset``/``random_split`` and same-file factories, and through
  same-file callers when the loader is built in a helper from a parameter;
* where a loader is iterated (:meth:`~DataPipelines.loops_over`), also inside helpers that
  receive it as an argument; whether it is only inspected by loops that do not train, or
  yields a single batch (:mod:`.loader_uses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.batches import int_value
from trainlint.model.dataflow.keywords import keyword_through_kwargs
from trainlint.model.frameworks.loader_uses import only_inspected, single_batch
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import contains, dotted, literal, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, LoopInfo, Scope

#: ``DataLoader``'s parameters, by position.
_LOADER_PARAMS = (
    "dataset", "batch_size", "shuffle", "sampler", "batch_sampler", "num_workers",
    "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn",
    "multiprocessing_context", "generator",
)  # fmt: skip
_DATASET_BASES = ("torch.utils.data", "torchvision.datasets", "torch_geometric.data")
#: Calls whose result reads the samples of (one of) their dataset arguments.
_SUBSET_CALLS = {"Subset", "ConcatDataset", "random_split", "ChainDataset"}
_NOT_TORCH_LOADERS = ("tensorflow", "keras", "paddle", "mindspore", "jax", "mxnet", "oneflow")
_ITERATION_WRAPPERS = {"enumerate", "tqdm", "iter", "zip", "track", "prefetch", "auto"}


@dataclass(frozen=True, eq=False)
class DatasetClass:
    info: ClassInfo
    iterable: bool


@dataclass(frozen=True, eq=False)
class DatasetSource:
    """What a loader's ``dataset`` argument is: the constructor call, when seen."""

    expr: cst.BaseExpression
    scope: Scope
    call: cst.Call | None  # ``MyDataset(root, transform=...)``
    cls: DatasetClass | None  # the same-file class, when it is one
    qualified: str | None  # ``torchvision.datasets.CIFAR10`` for a library dataset
    names: tuple[str, ...]  # how the code names the data on the way (``train_set``)


@dataclass(frozen=True, eq=False)
class LoaderSite:
    call: cst.Call
    scope: Scope
    order: int
    target: str | None  # the name it is bound to: ``train_loader``, ``self.loader``
    #: Every ``**kwargs`` of the call was resolved to a dict the file builds.
    kwargs_seen: bool


#: Wrappers that hand back the same loader with its sampling kept: an unshuffled loader stays so.
_KEEPS_SAMPLING = frozenset({"prepare", "prepare_data_loader", "setup_dataloaders"})


class DataPipelines:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    # ------------------------------------------------------------------ datasets
    @cached_property
    def _loader_dataset_classes(self) -> set[str]:
        """Same-file classes instantiated directly as a DataLoader's dataset (duck typing)."""
        found = set()
        for site in self.loaders:
            arg = self.argument(site, "dataset")[0]
            if isinstance(arg, cst.Call) and dotted(arg.func) in self.model.classes:
                found.add(dotted(arg.func) or "")
        return found

    def dataset_class(self, info: ClassInfo | None) -> DatasetClass | None:
        if info is None:
            return None
        return self._datasets.get(info.name)

    @cached_property
    def _datasets(self) -> dict[str, DatasetClass]:
        found: dict[str, DatasetClass] = {}
        for name, info in self.model.classes.items():
            bases = self.model.class_bases(info)
            torch_base = any(is_under(b, *_DATASET_BASES) for b in bases)
            item = self.model.method(info, "__getitem__") is not None
            project_base = item and any(
                b.rsplit(".", 1)[-1].endswith("Dataset") and not is_under(b, "tensorflow")
                for b in bases
            )
            if not (torch_base or project_base or name in self._loader_dataset_classes):
                continue
            iterable = any(b.rsplit(".", 1)[-1] == "IterableDataset" for b in bases) or (
                not item and self.model.method(info, "__iter__") is not None
            )
            found[name] = DatasetClass(info, iterable)
        return found

    @property
    def datasets(self) -> list[DatasetClass]:
        return list(self._datasets.values())

    def dataset_source(
        self, expr: cst.BaseExpression | None, scope: Scope, depth: int = 0
    ) -> list[DatasetSource]:
        """What ``expr`` (a loader's dataset argument) stands for; several through callers."""
        if expr is None or depth > 6:
            return []
        return self._source(expr, scope, (), depth)

    def _source(self, expr, scope, names: tuple[str, ...], depth: int) -> list[DatasetSource]:
        model = self.model
        if depth > 6:
            return []
        if isinstance(expr, cst.Subscript):  # ``datasets["train"]``, ``splits[0]``
            key = expr.slice[0].slice if expr.slice else None
            text = literal(getattr(key, "value", None), None)
            extra = (text,) if isinstance(text, str) else ()
            return self._source(expr.value, scope, names + extra, depth + 1) or [
                DatasetSource(expr, scope, None, None, None, names + extra)
            ]
        if isinstance(expr, cst.Call):
            qualified = model.imports.qualify(expr.func)
            short = (dotted(expr.func) or "").rsplit(".", 1)[-1]
            if short in _SUBSET_CALLS and expr.args:
                inner = expr.args[0].value
                if isinstance(inner, (cst.List, cst.Tuple)) and inner.elements:
                    inner = inner.elements[0].value
                return self._source(inner, scope, names, depth + 1)
            info = model.classes.get(dotted(expr.func) or "")
            if info is not None:
                return [DatasetSource(expr, scope, expr, self.dataset_class(info), None, names)]
            callee = model.callee(expr, scope)
            if callee is not None and callee.returns:
                found = []
                for returned in callee.returns:
                    found += self._source(returned, callee, names, depth + 1)
                if found:
                    return found
            return [DatasetSource(expr, scope, expr, None, qualified, names)]
        name = dotted(expr)
        if name is None:
            return []
        names = names + (name,)
        bindings = [b for b in model.lookup(name, scope) if not b.augmented]
        if bindings and bindings[0].value is not None and not bindings[0].from_iteration:
            binding = bindings[0]
            value = binding.value
            index = binding.unpack_index
            if isinstance(value, (cst.Tuple, cst.List)) and index is not None:
                value = value.elements[index].value if index < len(value.elements) else None
            if binding.unpack_index is not None and isinstance(value, cst.Call):
                short = (dotted(value.func) or "").rsplit(".", 1)[-1]
                if short == "random_split" and value.args:
                    value = value.args[0].value  # each split reads the same dataset
            return self._source(value, binding.scope or scope, names, depth + 1)
        if name in scope.params:
            found = []
            for argument, caller in model.dataflow.arguments_for(name, scope):
                found += self._source(argument, caller, names, depth + 1)
            if found:
                return found
        return [DatasetSource(expr, scope, None, None, None, names)]

    # ------------------------------------------------------------------ loaders
    @cached_property
    def loaders(self) -> list[LoaderSite]:
        targets: dict[int, str] = {}
        for scope in self.model.scopes:
            for name, bindings in scope.bindings.items():
                for binding in bindings:
                    value = binding.value
                    if not isinstance(value, cst.Call) or binding.unpack_index is not None:
                        continue
                    targets.setdefault(id(value), name)
                    # ``dl = tqdm(DataLoader(...))``: iterating ``dl`` iterates the loader
                    while _wraps_iteration(value):
                        value = value.args[0].value  # type: ignore[union-attr]
                        targets.setdefault(id(value), name)
        found = []
        for site in self.model.calls:
            qualified = site.qualified or ""
            if not qualified.endswith("DataLoader") or qualified.split(".", 1)[0] in (
                _NOT_TORCH_LOADERS
            ):
                continue
            if qualified.rsplit(".", 1)[-1] != "DataLoader":
                continue
            seen = keyword_through_kwargs(self.model.dataflow, site.node, "", site.scope)[1]
            found.append(
                LoaderSite(site.node, site.scope, site.order, targets.get(id(site.node)), seen)
            )
        return found

    def argument(self, site: LoaderSite, name: str) -> tuple[cst.BaseExpression | None, bool]:
        """The argument ``site`` passes for ``name`` and whether the call was fully seen
        (``False``: absent here, but an unresolved ``**kwargs`` may carry it)."""
        found, seen = keyword_through_kwargs(self.model.dataflow, site.call, name, site.scope)
        if found is None and name in _LOADER_PARAMS:
            found = positional(site.call, _LOADER_PARAMS.index(name))
        return found, seen or found is not None

    def runs_workers(self, site: LoaderSite) -> bool | None:
        """Whether the loader runs worker processes: ``num_workers`` other than a literal 0
        (or a name bound once to one); ``None`` when an unresolved ``**kwargs`` may set it."""
        workers, seen = self.argument(site, "num_workers")
        if workers is None:
            return False if seen else None
        return int_value(self.model.dataflow, workers, site.scope) != 0

    def sources_of(self, site: LoaderSite) -> list[DatasetSource]:
        return self.dataset_source(self.argument(site, "dataset")[0], site.scope)

    def loaders_over(self, dataset: DatasetClass) -> list[LoaderSite]:
        return [
            site for site in self.loaders if any(s.cls is dataset for s in self.sources_of(site))
        ]

    # ------------------------------------------------------------------ iteration
    def loops_over(self, site: LoaderSite) -> list[LoopInfo]:
        """Loops that iterate the loader ``site`` builds (through helpers given it)."""
        if site.target is None:
            return []
        found = []
        for loop in self.model.loops:
            name = _iterated_name(loop.iter_expr)
            if name is None:
                continue
            here = loop.scope is site.scope or name.startswith("self.")
            if (name == site.target and here) or (
                name in loop.scope.params
                and any(
                    dotted(argument) == site.target
                    for argument, _ in self.model.dataflow.arguments_for(name, loop.scope)
                )
            ):
                found.append(loop)
        return found

    def repeated(self, loop: LoopInfo, depth: int = 0) -> bool:
        """Whether ``loop`` runs more than once per run: nested in another loop, or in a
        function some loop of the file calls (``for epoch ...: train_one_epoch(loader)``)."""
        if loop.parent is not None:
            return True
        return self._called_in_loop(loop.scope, depth)

    def _called_in_loop(self, scope: Scope, depth: int) -> bool:
        if scope.is_module or depth > 3:
            return False
        for site in self.model.calls:
            if self.model.callee(site.node, site.scope) is not scope:
                continue
            for loop in self.model.loops:
                if loop.scope is site.scope and contains(loop.node.body, site.node):
                    return True
            if self._called_in_loop(site.scope, depth + 1):
                return True
        return False

    def only_inspected(self, site: LoaderSite) -> bool:
        """Iterated only by loops that do not train, and given to nothing else (see
        :mod:`.loader_uses`)."""
        return only_inspected(self.model, site)

    def single_batch(self, site: LoaderSite) -> bool:
        """The loader yields one batch: no order of batches to shuffle (:mod:`.loader_uses`)."""
        return single_batch(self.model, site)

    def replaced_later(self, site: LoaderSite) -> bool:
        """Whether the loader is later replaced by what a call given it returns
        (``model, opt, train_loader = privacy_engine.make_private(data_loader=train_loader)``
        re-samples it by Poisson sampling): how that loader samples is not this call's.
        Wrappers that keep the loader's sampling (``accelerator.prepare``) do not count."""
        if site.target is None:
            return False
        for binding in site.scope.bindings.get(site.target, []):
            value = binding.value
            if binding.order <= site.order or not isinstance(value, cst.Call):
                continue
            method = value.func.attr.value if isinstance(value.func, cst.Attribute) else None
            if method in _KEEPS_SAMPLING:
                continue
            if any(self.model.text_of(arg.value) == site.target for arg in value.args):
                return True
        return False

    def sampler(self, site: LoaderSite) -> tuple[cst.BaseExpression | None, cst.Call | None]:
        """The ``sampler=`` (or ``batch_sampler=``) a loader is given, and the call that made
        it when the file shows one (``DistributedSampler(train_set)``)."""
        for name in ("sampler", "batch_sampler"):
            expr = self.argument(site, name)[0]
            if expr is None or literal(expr, 0) is None:
                continue
            return expr, self._made_by(expr, site.scope)
        return None, None

    def _made_by(self, expr: cst.BaseExpression, scope: Scope, depth: int = 0) -> cst.Call | None:
        if isinstance(expr, cst.Call) or depth > 3:
            return expr if isinstance(expr, cst.Call) else None
        name = dotted(expr)
        if name is None:
            return None
        bindings = [b for b in self.model.lookup(name, scope) if not b.augmented]
        if bindings and bindings[0].value is not None and not bindings[0].from_iteration:
            return self._made_by(bindings[0].value, bindings[0].scope or scope, depth + 1)
        return None


def _wraps_iteration(expr: cst.BaseExpression) -> bool:
    """``tqdm(x, ...)`` / ``enumerate(x)``: a call that iterates its first argument."""
    if not isinstance(expr, cst.Call) or not expr.args or expr.args[0].keyword is not None:
        return False
    return (dotted(expr.func) or "").rsplit(".", 1)[-1] in _ITERATION_WRAPPERS


def _iterated_name(expr: cst.BaseExpression | None) -> str | None:
    """``loader`` in ``for x in loader``, ``enumerate(loader)``, ``tqdm(enumerate(loader))``."""
    while isinstance(expr, cst.Call):
        short = (dotted(expr.func) or "").rsplit(".", 1)[-1]
        if short not in _ITERATION_WRAPPERS or not expr.args:
            return None
        expr = expr.args[0].value
    return dotted(expr)
