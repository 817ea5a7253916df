from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from trainlint import Applicability, Edit, Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.frameworks.data import LoaderSite
from trainlint.model.frameworks.splits import Split, split_of
from trainlint.model.loops.loop_purpose import evaluates, trains
from trainlint.model.syntax.nodes import keyword, literal, method_call, positional
from trainlint.rule import Violation
from trainlint.slicing import IMPORTED, IMPORTS_TORCH

_SET_EPOCH_FIX = Fix(
    "call `set_epoch` on the sampler at the start of every epoch",
    "for epoch in range(epochs):\n    sampler.set_epoch(epoch)\n    for batch in loader: ...",
)


class TrainLoaderNotShuffled(Rule):
    """A training DataLoader that does not shuffle.

    ## What it does
    Flags a `DataLoader` over training data (named like train on the way to it: the loader,
    the dataset variable, `datasets["train"]`, or built with `train=True` / `split="train"`)
    whose `shuffle` is absent or `False` and that has no `sampler`/`batch_sampler`. Also
    flags a loader given a `DistributedSampler` (which shuffles by default) that is iterated
    in an epoch loop of the file while `set_epoch` is never called.

    Stays silent on iterable datasets (they cannot be shuffled by the loader), on data named
    as a time series (`TimeSeriesDataset`, `forecast_loader`), on evaluation data (names like
    val/test/eval win over train: `train_eval_loader`), on loaders the file iterates only in
    evaluation loops or in loops that do not train and hand their batches to nothing that
    could (measuring lengths, caching features under `no_grad`, printing shapes), on loaders
    of a single batch (`Subset(ds, range(4))` with `batch_size=4`, `batch_size=len(data)`),
    on a `shuffle` that is not a literal (`shuffle=args.shuffle`), on
    `**kwargs` the file does not show, and on `DistributedSampler(..., shuffle=False)`.

    ## Why is this bad?
    Without shuffling every epoch presents the samples in the same order; datasets stored
    sorted by class or by source then give batches of one class at a time, and the model
    chases each in turn (worse accuracy, oscillating loss). A `DistributedSampler` shuffles
    with a seed derived from its epoch: unless `set_epoch(epoch)` is called, every epoch uses
    the same permutation.

    ## Example
    ```python
    train_loader = DataLoader(train_set, batch_size=64)
    ```

    ## Use instead
    ```python
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    ```
    and with a `DistributedSampler`, `sampler.set_epoch(epoch)` at the top of each epoch.
    """

    code = "TL503"
    name = "train-loader-not-shuffled"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("DataLoader",)
    block_triggers = (*triggers, IMPORTED, IMPORTS_TORCH)
    summary = "A training DataLoader does not shuffle (or never calls `sampler.set_epoch`)."
    fix_availability = "sometimes"
    fix_applicability = Applicability.UNSAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        data = model.data
        set_epoch = any(
            (method_call(site.node) or (None, ""))[1] == "set_epoch" for site in model.calls
        )
        for site in data.loaders:
            if any(s.cls is not None and s.cls.iterable for s in data.sources_of(site)):
                continue
            if split_of(data, site) is not Split.TRAIN or _only_evaluated(model, site):
                continue
            if data.only_inspected(site) or data.single_batch(site):
                continue  # no training sees its order, or it has a single batch to order
            sampler, made_by = data.sampler(site)
            if sampler is not None:
                if (
                    not set_epoch
                    and _distributed_shuffling(model, made_by)
                    and any(data.repeated(loop) for loop in data.loops_over(site))
                ):
                    yield Violation(
                        site.call,
                        f"`{model.text_of(sampler)}` is a DistributedSampler but `set_epoch` is "
                        "never called: every epoch iterates the same permutation",
                        _SET_EPOCH_FIX,
                    )
                continue
            if data.replaced_later(site):
                continue
            violation = _unshuffled(model, site)
            if violation is not None:
                yield violation


def _only_evaluated(model: TrainingModel, site: LoaderSite) -> bool:
    loops = model.data.loops_over(site)
    return (
        bool(loops)
        and not any(trains(model, loop) for loop in loops)
        and all(evaluates(model, loop) for loop in loops)
    )


def _distributed_shuffling(model: TrainingModel, made_by: cst.Call | None) -> bool:
    if made_by is None:
        return False
    if not (model.imports.qualify(made_by.func) or "").endswith("DistributedSampler"):
        return False
    return literal(keyword(made_by, "shuffle"), True) is not False


def _unshuffled(model: TrainingModel, site: LoaderSite) -> Violation | None:
    shuffle, seen = model.data.argument(site, "shuffle")
    if shuffle is None and not seen:
        return None  # an unresolved ``**kwargs`` may shuffle
    if shuffle is not None and literal(shuffle, None) is not False:
        return None
    name = f"`{site.target}`" if site.target else "this DataLoader"
    given = "`shuffle=False`" if shuffle is not None else "no `shuffle=True`"
    edit = _shuffle_edit(site.call, shuffle)
    fix = Fix(
        "shuffle the training data",
        "DataLoader(..., shuffle=True)",
        (edit,) if edit is not None else (),
        Applicability.UNSAFE if edit is not None else Applicability.DISPLAY,
    )
    return Violation(
        site.call,
        f"{name} reads training data with {given} and no sampler: every epoch sees the "
        "samples in the same order",
        fix,
    )


def _shuffle_edit(call: cst.Call, shuffle: cst.BaseExpression | None) -> Edit | None:
    if shuffle is not None:
        direct = keyword(call, "shuffle") is shuffle or positional(call, 2) is shuffle
        return Edit(shuffle, "True") if direct else None
    if not call.args:
        return None
    last = call.args[-1]
    return Edit(last.value, f"{_code(last.value)}, shuffle=True")


def _code(node: cst.BaseExpression) -> str:
    return cst.Module(body=[]).code_for_node(node)
