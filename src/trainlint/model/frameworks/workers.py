"""NumPy random draws made in DataLoader worker processes, and whether the workers reseed them.

A ``Dataset``'s item methods (``__getitem__``, ``__getitems__``, ``__iter__``, ``__next__``)
run in the loader's worker processes. :func:`numpy_draws` finds the NumPy draws they make,
directly or in what they call in the file: ``self`` methods, same-file functions, instances
of same-file classes (``self.augment(img)`` with ``self.augment = RandomCrop(...)``, also
inside a ``Compose([...])`` or passed to the dataset's constructor). Each draw is one of:

* ``GLOBAL``: NumPy's global RNG (``np.random.rand()``). PyTorch < 1.9 did not reseed it per
  worker, so every forked worker repeated the parent's stream; since 1.9 the worker loop seeds
  it from the loader's base seed, so this is a finding only for older PyTorch.
* ``STATE``: a generator object made once (``self.rng = np.random.RandomState(0)`` in
  ``__init__``, a module-level ``default_rng()``) and copied into every worker: on every
  PyTorch version the workers draw the same numbers, and, because workers are re-created
  from the parent's unchanged copy, the same numbers again every epoch.

Not draws: a generator made in the item method itself (per item, ``default_rng(seed)``), and
global draws in an item method that reseeds NumPy (``np.random.seed(...)``) first.
:func:`worker_reseeding` reads a loader's ``worker_init_fn``: whether it reseeds the global
RNG, and whether it can reach the dataset's own generator (``get_worker_info().dataset``).
:func:`imported_draws`: the draws of Dataset classes of other project modules a loader of
this file iterates, read from their class summaries (``ClassSummary.numpy_draws``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.objects import instance_class
from trainlint.model.summaries.queries import class_summary
from trainlint.model.syntax.nodes import descendants, dotted, method_call
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.frameworks.data import DatasetClass, DatasetSource, LoaderSite
    from trainlint.model.syntax.scopes import ClassInfo, Scope

ITEM_METHODS = ("__getitem__", "__getitems__", "__iter__", "__next__")
NUMPY_DRAWS = frozenset(
    {
        "rand", "randn", "randint", "random", "random_sample", "ranf", "sample", "choice",
        "shuffle", "permutation", "permuted", "uniform", "normal", "standard_normal", "beta",
        "binomial", "exponential", "gamma", "poisson", "lognormal", "laplace", "logistic",
        "multivariate_normal", "dirichlet", "geometric", "triangular", "random_integers",
        "integers", "bytes", "multinomial", "rayleigh", "vonmises", "weibull", "power",
        "chisquare", "standard_t", "standard_cauchy", "standard_gamma", "hypergeometric",
    }
)  # fmt: skip
GENERATOR_MAKERS = frozenset(
    {"numpy.random.RandomState", "numpy.random.default_rng", "numpy.random.Generator"}
)
_RESEEDS = frozenset({"numpy.random.seed", "numpy.random.set_state"})
_MAX_DEPTH = 5


class DrawKind(enum.Enum):
    GLOBAL = "global"  # NumPy's module-level RNG
    STATE = "state"  # a generator object made once and copied into every worker


@dataclass(frozen=True, eq=False)
class NumpyDraw:
    call: cst.Call
    scope: Scope  # the function the draw is written in
    kind: DrawKind
    generator: str | None  # STATE: how the code names the generator (``self.rng``)
    via: tuple[str, ...]  # the functions from the item method to the draw


@dataclass(frozen=True)
class Reseeding:
    """What a loader's ``worker_init_fn`` does (``known=False``: it cannot be read here)."""

    known: bool
    numpy_global: bool
    dataset_state: bool


@dataclass(frozen=True, eq=False)
class ImportedDraw:
    """A NumPy draw of a Dataset class of another project module, as its summary records it,
    reached by a loader of this file (``DataLoader(Frames(root), num_workers=4)``)."""

    source: DatasetSource  # the dataset argument: ``source.call`` builds the instance
    owner: str  # the class (``Frames``)
    kind: DrawKind
    called: str  # ``np.random.randint``
    via: str  # ``Frames.__getitem__ -> Frames._jitter``


def imported_draws(model: TrainingModel, site: LoaderSite) -> list[ImportedDraw]:
    """The NumPy draws of the other-module Dataset classes a loader iterates."""
    found = []
    for source in model.data.sources_of(site) if model.project is not None else ():
        if source.cls is not None or source.call is None:
            continue
        summary = class_summary(model, dotted(source.call.func), source.scope)
        for kind, called, via in summary.numpy_draws if summary is not None else ():
            found.append(ImportedDraw(source, summary.name, DrawKind(kind), called, via))
    return found


def numpy_draws(model: TrainingModel, dataset: DatasetClass) -> list[NumpyDraw]:
    walker = _Walker(model, dataset.info)
    for name in ITEM_METHODS:
        method = model.method(dataset.info, name)
        if method is not None:
            walker.visit(method, (method.name,), 0)
    return walker.finish()


class _Walker:
    def __init__(self, model: TrainingModel, dataset: ClassInfo) -> None:
        self.model = model
        self.dataset = dataset
        self.seen: set[int] = set()
        self.draws: list[NumpyDraw] = []
        self.item_scopes: list[Scope] = []
        self.reseeded = False

    def finish(self) -> list[NumpyDraw]:
        found = []
        for draw in self.draws:
            if draw.kind is DrawKind.GLOBAL and self.reseeded:
                continue
            if draw.kind is DrawKind.STATE and self._remade_per_item(draw):
                continue
            found.append(draw)
        return found

    def _remade_per_item(self, draw: NumpyDraw) -> bool:
        """``self.rng`` re-made in an item method (``__iter__`` seeding it per worker)."""
        name = draw.generator or ""
        if not name.startswith("self."):
            return False
        return any(name in scope.bindings for scope in self.item_scopes)

    def visit(self, scope: Scope, via: tuple[str, ...], depth: int) -> None:
        if id(scope.node) in self.seen or depth > _MAX_DEPTH:
            return
        self.seen.add(id(scope.node))
        self.item_scopes.append(scope)
        for site in self.model.calls_in(scope):
            call = site.node
            if site.qualified in _RESEEDS:
                self.reseeded = True
                continue
            draw = self._draw(call, site.qualified, scope, via)
            if draw is not None:
                self.draws.append(draw)
                continue
            for callee in self._callees(call, scope):
                self.visit(callee, via + (callee.name,), depth + 1)

    def _draw(self, call, qualified, scope, via) -> NumpyDraw | None:
        if qualified and qualified.startswith("numpy.random."):
            if qualified.rsplit(".", 1)[-1] in NUMPY_DRAWS:
                return NumpyDraw(call, scope, DrawKind.GLOBAL, None, via)
            return None
        method = method_call(call)
        if method is None or method[1] not in NUMPY_DRAWS:
            return None
        receiver = dotted(method[0])
        if receiver and self._shared_generator(receiver, scope):
            return NumpyDraw(call, scope, DrawKind.STATE, receiver, via)
        return None

    def _shared_generator(self, name: str, scope: Scope, depth: int = 0) -> bool:
        """Whether ``name`` holds a NumPy generator made outside the item code."""
        if depth > 3:
            return False
        for binding in self.model.lookup(name, scope)[:4]:
            value = binding.value
            if binding.augmented or binding.from_iteration or value is None:
                continue
            if isinstance(value, cst.Call):
                if self.model.imports.qualify(value.func) in GENERATOR_MAKERS:
                    made_in = binding.scope
                    return made_in is None or made_in.short_name not in ITEM_METHODS
                continue
            alias = dotted(value)
            if alias and alias != name:
                return self._shared_generator(alias, binding.scope or scope, depth + 1)
        return False

    def _callees(self, call: cst.Call, scope: Scope) -> Iterator[Scope]:
        model = self.model
        found = model.callee(call, scope)
        if found is not None:
            yield found
            return
        func = call.func
        cls = instance_class(model, func, scope) if dotted(func) else None
        if cls is not None:  # calling an instance: ``self.augment(img)``
            method = model.method(cls, "__call__") or model.method(cls, "forward")
            if method is not None:
                yield method
            return
        name = dotted(func)
        if name is None:
            return
        for expr, where in self._bound_values(name, scope):
            yield from _callables_in(model, expr, where)

    def _bound_values(self, name: str, scope: Scope) -> Iterator[tuple[cst.CSTNode, Scope]]:
        """What ``name`` may hold: its bindings' values, and for ``self.x = x`` set from a
        constructor parameter, what the file passes for it when building the class."""
        for binding in self.model.lookup(name, scope)[:3]:
            if binding.value is None or binding.from_iteration:
                continue
            where = binding.scope or scope
            param = dotted(binding.value)
            if param and param in where.params and where.short_name == "__init__":
                yield from self._constructor_arguments(where, param)
            else:
                yield binding.value, where

    def _constructor_arguments(
        self, init: Scope, param: str
    ) -> Iterator[tuple[cst.CSTNode, Scope]]:
        owner = init.cls
        if owner is None:
            return
        for site in self.model.calls:
            if dotted(site.node.func) != owner.name:
                continue
            argument = argument_for(site.node, init, param)
            if argument is None:
                continue
            yield argument, site.scope
            name = dotted(argument)
            if name:
                for binding in self.model.lookup(name, site.scope)[:2]:
                    if binding.value is not None and not binding.from_iteration:
                        yield binding.value, binding.scope or site.scope


def _callables_in(model: TrainingModel, expr: cst.CSTNode, scope: Scope) -> Iterator[Scope]:
    """Same-file callables an expression builds or names: ``Compose([RandomCrop(), flip])``."""
    nodes = [expr, *descendants(expr)]
    for node in nodes:
        if isinstance(node, cst.Call):
            cls = model.classes.get(dotted(node.func) or "")
            if cls is not None:
                method = model.method(cls, "__call__") or model.method(cls, "forward")
                if method is not None:
                    yield method
        elif isinstance(node, cst.Name):
            found = model.module_scope.functions.get(node.value)
            if found is not None and found is not scope:
                yield found


def worker_reseeding(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope
) -> Reseeding:
    """What ``worker_init_fn=expr`` does for NumPy in each worker."""
    if expr is None or (isinstance(expr, cst.Name) and expr.value == "None"):
        return Reseeding(True, False, False)
    if isinstance(expr, cst.Call) and (dotted(expr.func) or "").endswith("partial") and expr.args:
        return worker_reseeding(model, expr.args[0].value, scope)
    if isinstance(expr, cst.Lambda):
        return _reseeding_of(model, [expr.body], scope)
    name = dotted(expr)
    if isinstance(expr, cst.Name):
        found = scope.visible_function(expr.value)
        if found is not None:
            return _reseeding_of(model, [found.node], found)
        bindings = [b for b in model.lookup(expr.value, scope) if b.value is not None]
        if len(bindings) == 1 and not bindings[0].from_iteration:
            return worker_reseeding(model, bindings[0].value, bindings[0].scope or scope)
    if name and scope.cls is not None and name.startswith("self."):
        method = model.method(scope.cls, name[len("self.") :])
        if method is not None:
            return _reseeding_of(model, [method.node], method)
    return Reseeding(False, True, True)  # imported or passed in: assume it does its job


def _reseeding_of(model: TrainingModel, nodes: list[cst.CSTNode], scope: Scope, depth: int = 0):
    numpy_global = dataset_state = False
    for node in nodes:
        for child in (node, *descendants(node)):
            if isinstance(child, cst.Attribute) and child.attr.value == "dataset":
                dataset_state = True  # ``get_worker_info().dataset.rng = ...``
            if not isinstance(child, cst.Call):
                continue
            qualified = model.imports.qualify(child.func) or ""
            short = (dotted(child.func) or "").rsplit(".", 1)[-1]
            if qualified in _RESEEDS:
                numpy_global = True
            elif qualified.endswith("get_worker_info"):
                dataset_state = True
            elif "seed" in short.lower() and qualified != "torch.manual_seed":
                callee = model.callee(child, scope)
                if callee is None or depth > 3:
                    numpy_global = numpy_global or not qualified.startswith(("random.", "torch."))
                else:
                    inner = _reseeding_of(model, [callee.node], callee, depth + 1)
                    numpy_global = numpy_global or inner.numpy_global
                    dataset_state = dataset_state or inner.dataset_state
    return Reseeding(True, numpy_global, dataset_state)
