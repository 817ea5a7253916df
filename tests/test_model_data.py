"""Torch data pipelines: datasets, loaders and their arguments, splits, worker NumPy draws."""

from __future__ import annotations

from model_helpers import build

from trainlint.model.frameworks.splits import Split, split_of
from trainlint.model.frameworks.workers import DrawKind, numpy_draws, worker_reseeding

SOURCE = """
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset
from project.base import BaseDataset


class Images(Dataset):
    def __init__(self, root, transform=None, train=True):
        self.transform = transform
        self.rng = np.random.RandomState(0)

    def __getitem__(self, i):
        x = self.rng.rand()
        return self.transform(x) if self.transform else x


class Stream(IterableDataset):
    def __iter__(self):
        yield 1


class Project(BaseDataset):
    def __getitem__(self, i):
        return np.random.rand()


class Duck:
    def __getitem__(self, i):
        return i


class Flip:
    def __call__(self, x):
        return x[::-1] if np.random.rand() < 0.5 else x


def make(ds, workers):
    return DataLoader(ds, batch_size=4, num_workers=workers)


train_set = Images("r", transform=Flip())
kwargs = {"num_workers": 2}
kwargs["shuffle"] = True
a = DataLoader(Subset(train_set, [0, 1]), **kwargs)
b = DataLoader(Duck(), 8, False, None, None, 0)
c = make(Images("r", train=False), 3)
for epoch in range(3):
    for batch in a:
        pass
"""


def test_dataset_classes() -> None:
    model = build(SOURCE)
    found = {d.info.name: d.iterable for d in model.data.datasets}
    assert found == {"Images": False, "Stream": True, "Project": False, "Duck": False}


def test_loader_arguments_by_keyword_position_and_kwargs() -> None:
    model = build(SOURCE)
    c, a, b = model.data.loaders  # in source order: the helper's loader comes first
    assert model.text_of(model.data.argument(a, "shuffle")[0]) == "True"  # written after
    assert model.data.runs_workers(a) is True
    assert model.text_of(model.data.argument(b, "shuffle")[0]) == "False"
    assert model.data.runs_workers(b) is False
    assert model.data.runs_workers(c) is True  # a parameter: not a literal 0
    assert a.target == "a" and c.target is None


def test_dataset_sources_through_subsets_and_callers() -> None:
    model = build(SOURCE)
    c, a, b = model.data.loaders
    (source,) = model.data.sources_of(a)
    assert source.cls is not None and source.cls.info.name == "Images"
    assert "train_set" in source.names
    (through_caller,) = model.data.sources_of(c)
    assert through_caller.cls is not None and through_caller.cls.info.name == "Images"
    assert split_of(model.data, a) is Split.TRAIN
    assert split_of(model.data, c) is Split.EVAL  # ``train=False`` in the constructor
    assert split_of(model.data, b) is None


def test_loops_over_and_epoch_loops() -> None:
    model = build(SOURCE)
    a = model.data.loaders[1]
    (loop,) = model.data.loops_over(a)
    assert model.data.repeated(loop)


def test_numpy_draws_state_and_transforms() -> None:
    model = build(SOURCE)
    images = model.data.dataset_class(model.classes["Images"])
    draws = numpy_draws(model, images)
    kinds = {(d.kind, d.scope.name) for d in draws}
    assert (DrawKind.STATE, "Images.__getitem__") in kinds
    assert (DrawKind.GLOBAL, "Flip.__call__") in kinds  # the transform given to the constructor
    project = model.data.dataset_class(model.classes["Project"])
    assert [d.kind for d in numpy_draws(model, project)] == [DrawKind.GLOBAL]


def test_worker_reseeding() -> None:
    model = build(
        """
import numpy as np
import random
import torch
from torch.utils.data import get_worker_info
from elsewhere import seed_worker

def only_python(worker_id):
    random.seed(worker_id)

def numpy_too(worker_id):
    np.random.seed(torch.initial_seed() % 2**32)

def remake(worker_id):
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)
"""
    )
    scope = model.module_scope

    def reseeding(text):
        import libcst as cst

        return worker_reseeding(model, cst.parse_expression(text), scope)

    assert not reseeding("only_python").numpy_global
    assert reseeding("numpy_too").numpy_global and not reseeding("numpy_too").dataset_state
    assert reseeding("remake").dataset_state
    assert not reseeding("seed_worker").known
    assert reseeding("lambda i: np.random.seed(i)").numpy_global
    assert not reseeding("None").numpy_global


def test_loaders_only_inspected_or_of_one_batch():
    model = build(
        """
        import torch
        from torch.utils.data import DataLoader, Subset

        shapes_loader = DataLoader(train_set, batch_size=8)
        for x, y in shapes_loader:
            print(x.shape)
        handed_loader = DataLoader(train_set, batch_size=8)
        for x, y in handed_loader:
            learner.fit_batch(x, y)
        one_loader = DataLoader(Subset(train_set, range(3)), batch_size=3)
        many_loader = DataLoader(Subset(train_set, range(30)), batch_size=3)
        whole_loader = DataLoader(PairData(pairs), batch_size=len(pairs))
        """
    )
    data = model.data
    by_name = {site.target: site for site in data.loaders}
    assert data.only_inspected(by_name["shapes_loader"])
    assert not data.only_inspected(by_name["handed_loader"])  # may train out of sight
    names = ("one_loader", "many_loader", "whole_loader")
    assert [data.single_batch(by_name[n]) for n in names] == [True, False, True]
