from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.data import DatasetClass, LoaderSite
from trainlint.model.frameworks.workers import (
    DrawKind,
    NumpyDraw,
    imported_draws,
    numpy_draws,
    worker_reseeding,
)
from trainlint.rule import Violation
from trainlint.slicing import IMPORTS_TORCH

_GLOBAL_FIX = Fix(
    "seed NumPy in each worker, or draw with torch",
    "DataLoader(..., worker_init_fn=lambda _: np.random.seed(torch.initial_seed() % 2**32))",
)


def _state_fix(generator: str | None, method: str) -> Fix:
    """Re-make the generator the draw uses from the worker's seed, of the same kind: a
    ``Generator`` for its own methods (``integers``), else a ``RandomState`` (``randint``)."""
    made = (
        "np.random.default_rng(info.seed)"
        if method in _GENERATOR_ONLY
        else "np.random.RandomState(info.seed % 2**32)"
    )
    name = generator or "self.rng"
    attribute = name.removeprefix("self.")
    if not name.startswith("self.") or "." in attribute:
        root = name.split(".")[0]
        return Fix(
            "give each worker its own generator, made from the worker's seed",
            f"def worker_init_fn(_):\n    global {root}\n"
            f"    info = torch.utils.data.get_worker_info()\n    {root} = {made}",
        )
    return Fix(
        "give each worker its own generator",
        "def worker_init_fn(_):\n"
        "    info = torch.utils.data.get_worker_info()\n"
        f"    info.dataset.{attribute} = {made}",
    )


#: Methods only a ``numpy.random.Generator`` has (a ``RandomState`` would not run them).
_GENERATOR_ONLY = frozenset({"integers", "spawn", "bit_generator"})


class NumpyRandomInDataloaderWorkers(Rule):
    """A Dataset draws NumPy random numbers that every DataLoader worker repeats.

    ## What it does
    Looks at each torch `Dataset` in the file: the code its `__getitem__`/`__iter__` runs
    (its own methods, same-file functions and transform classes it calls, also transforms
    handed to its constructor or wrapped in a `Compose`), and the `DataLoader`s built over it.

    * **warning**: the item code draws from a NumPy generator made once, in `__init__` or at
      module level (`self.rng = np.random.RandomState(seed)`, `rng = np.random.default_rng()`),
      and a loader over the dataset runs worker processes (`num_workers` other than 0) with no
      `worker_init_fn` that can replace the dataset's generator (through
      `torch.utils.data.get_worker_info()`). **info** when no DataLoader over the dataset is
      built in the file (it is built elsewhere; the finding cannot see its `num_workers`).
    * **info**: the item code draws from NumPy's global RNG (`np.random.rand()`,
      `np.random.randint()`, `np.random.shuffle()`, ...) and a loader over it runs workers
      with no `worker_init_fn` that reseeds NumPy. This was a silent bug up to PyTorch 1.8:
      since PyTorch 1.9 each worker seeds NumPy's global RNG itself, so it only matters for
      code that still runs on older versions.

    A `Dataset` class of another module of the project (`from data import Clips`) is read
    from its summary: a `DataLoader` of this file over it, with workers and no reseeding
    `worker_init_fn`, is reported on the `DataLoader` call, with the draw's method named.

    Stays silent on `torch.rand*` and `random.*` (PyTorch seeds both per worker), on a NumPy
    generator made per item in the item method (`np.random.default_rng(seed)`), or re-made
    per worker in `__iter__` from `get_worker_info().seed`, on an item method that reseeds
    NumPy itself (`np.random.seed(torch.initial_seed() % 2**32)`), on loaders with
    `num_workers=0` (or none given), and on a `worker_init_fn` that reseeds (or is defined
    elsewhere and cannot be read).

    ## Why is this bad?
    Each DataLoader worker is a copy of the parent process, dataset object included. A
    generator stored on the dataset is copied with it, so every worker produces the same
    "random" crops, flips and noise as every other worker; and since workers are re-created
    from the parent's unchanged copy each epoch, the same numbers come back every epoch. The
    augmentation you think you have is mostly not there, and nothing reports it.

    ## Example
    ```python
    class Crops(Dataset):
        def __init__(self, images):
            self.images = images
            self.rng = np.random.RandomState(0)

        def __getitem__(self, index):
            top = self.rng.randint(0, 32)
            return self.images[index][top : top + 224]

    loader = DataLoader(Crops(images), batch_size=64, num_workers=8)
    ```

    ## Use instead
    ```python
    def worker_init_fn(_):
        info = torch.utils.data.get_worker_info()
        info.dataset.rng = np.random.RandomState(info.seed % 2**32)

    loader = DataLoader(Crops(images), batch_size=64, num_workers=8, worker_init_fn=worker_init_fn)
    ```
    or draw with torch (`torch.randint(0, 32, ()).item()`), which each worker seeds itself.
    """

    code = "TL506"
    name = "numpy-random-in-dataloader-workers"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("random",)
    block_triggers = (*triggers, IMPORTS_TORCH, "import:numpy")
    summary = "A Dataset's NumPy random draws are repeated by every DataLoader worker."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch") or not model.imports.imports("numpy"):
            return
        reported: set[int] = set()
        for dataset in model.data.datasets:
            draws = numpy_draws(model, dataset)
            if not draws:
                continue
            loaders = model.data.loaders_over(dataset)
            for draw in _first_per_function(draws):
                if id(draw.call) in reported:
                    continue
                violation = _judge(model, dataset, draw, loaders)
                if violation is not None:
                    reported.add(id(draw.call))
                    yield violation
        yield from _imported(model)


def _imported(model: TrainingModel) -> Iterator[Violation]:
    """Datasets of other project modules: their draws are read from the class summary and
    reported on this file's loader (where ``num_workers`` and ``worker_init_fn`` are)."""
    for site in model.data.loaders if model.project is not None else ():
        seen: set[tuple[str, str]] = set()
        for draw in imported_draws(model, site):
            key = (draw.owner, draw.kind.value)
            if key in seen or not _exposed(model, site, draw.kind):
                continue
            seen.add(key)
            given = model.data.argument(site, "num_workers")[0]
            workers = f"`num_workers={model.text_of(given)}`" if given is not None else "workers"
            where = f"`{draw.via}`"
            if draw.kind is DrawKind.STATE:
                message = (
                    f"`{draw.called}()` in {where} (another module) draws from a NumPy "
                    f"generator made once and copied into every worker of this DataLoader "
                    f"({workers}): the workers repeat each other's random draws, and each "
                    "epoch repeats the last"
                )
                generator, _, method = draw.called.rpartition(".")
                fix = _state_fix(generator or None, method)
                yield Violation(site.call, message, fix)
            else:
                message = (
                    f"`{draw.called}()` in {where} (another module) draws from NumPy's global "
                    f"RNG in the workers of this DataLoader ({workers}), which do not reseed "
                    "it: before PyTorch 1.9 every worker repeats the same draws"
                )
                yield Violation(site.call, message, _GLOBAL_FIX, Severity.INFO)


def _exposed(model: TrainingModel, site: LoaderSite, kind: DrawKind) -> bool:
    """Whether ``site`` runs workers and no ``worker_init_fn`` of it reseeds what ``kind``
    draws from (an unresolved ``**kwargs`` may pass one: not exposed)."""
    if not model.data.runs_workers(site):
        return False
    init, seen = model.data.argument(site, "worker_init_fn")
    if init is None and not seen:
        return False
    reseeds = worker_reseeding(model, init, site.scope)
    return not (reseeds.dataset_state if kind is DrawKind.STATE else reseeds.numpy_global)


def _first_per_function(draws: list[NumpyDraw]) -> Iterator[NumpyDraw]:
    """One finding per function and kind: the first draw stands for the rest."""
    seen: set[tuple[int, DrawKind]] = set()
    for draw in draws:
        key = (id(draw.scope.node), draw.kind)
        if key not in seen:
            seen.add(key)
            yield draw


def _judge(
    model: TrainingModel, dataset: DatasetClass, draw: NumpyDraw, loaders: list[LoaderSite]
) -> Violation | None:
    name = dataset.info.name
    called = model.text_of(draw.call.func)
    where = f"`{name}`" if len(draw.via) == 1 else f"`{draw.via[-1]}` (run by `{draw.via[0]}`)"
    exposed = [site for site in loaders if _exposed(model, site, draw.kind)]
    loader = exposed[0] if exposed else None
    workers = ""
    if loader is not None:
        given = model.data.argument(loader, "num_workers")[0]
        workers = f" (`num_workers={model.text_of(given)}`, line {model.line_of(loader.call)})"
    if draw.kind is DrawKind.STATE:
        fix = _state_fix(draw.generator, _method_name(draw))
        if loader is None and loaders:
            return None
        message = (
            f"`{called}()` in {where} draws from a NumPy generator made once and copied into "
            f"every DataLoader worker{workers}: the workers repeat each other's random draws, "
            "and each epoch repeats the last"
        )
        if loader is None:
            message = (
                f"`{called}()` in {where} draws from a NumPy generator made once; the "
                "DataLoader over it is built elsewhere: with `num_workers` > 0 and no "
                "`worker_init_fn` that re-makes it, every worker repeats the same draws"
            )
            return Violation(draw.call, message, fix, Severity.INFO)
        return Violation(draw.call, message, fix)
    if loader is None:
        return None
    message = (
        f"`{called}()` in {where} draws from NumPy's global RNG in DataLoader workers that do "
        f"not reseed it{workers}: before PyTorch 1.9 every worker repeats the same draws"
    )
    return Violation(draw.call, message, _GLOBAL_FIX, Severity.INFO)


def _method_name(draw: NumpyDraw) -> str:
    func = draw.call.func
    return func.attr.value if isinstance(func, cst.Attribute) else ""
