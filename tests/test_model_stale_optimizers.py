"""Optimizers left with a replaced model's parameters (``model.stale_optimizers``)."""

from __future__ import annotations

import functools

import libcst as cst
from model_helpers import build, scope

from trainlint.model import TrainingModel
from trainlint.model.loops.stale_optimizers import new_module

SOURCE = """
import copy
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP


class Net(nn.Module):
    def forward(self, x):
        return x


class Plain:
    pass


def factory():
    return Net()


def wrap(m):
    return DDP(m)


def f(model, loader):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model = model.to("cuda")
    model = DDP(model)
    model = Net().cuda()
    for x in loader:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
"""


@functools.cache
def _model() -> TrainingModel:
    return build(SOURCE)


def _new(text: str) -> bool:
    model = _model()
    return new_module(model, cst.parse_expression(text), scope(model, "f"), "model") is not None


def test_what_makes_a_new_module() -> None:
    for fresh in ("Net()", "Net().to('cuda')", "torch.load(p)", "copy.deepcopy(model)",
                  "factory()", "nn.Linear(2, 2)", "Auto.from_pretrained('x')"):  # fmt: skip
        assert _new(fresh), fresh


def test_what_keeps_the_parameters() -> None:
    for same in ("model.to('cuda')", "DDP(model)", "torch.compile(model)", "wrap(model)",
                 "model.module", "Plain()", "accelerator.prepare(model)", "build(x)",
                 "AutoTokenizer.from_pretrained('x')"):  # fmt: skip
        assert not _new(same), same


def test_stale_optimizer_found_at_the_fresh_rebinding_only() -> None:
    model = build(SOURCE)
    found = model.stale_optimizers
    assert len(found) == 1
    assert model.text_of(found[0].made_by) == "Net()"
    assert found[0].owner == "model" and found[0].creation.target == "opt"


def test_rebuilt_optimizer_is_not_stale() -> None:
    source = SOURCE.replace(
        "    model = Net().cuda()\n",
        "    model = Net().cuda()\n    opt = torch.optim.SGD(model.parameters(), lr=0.1)\n",
    )
    assert build(source).stale_optimizers == []


def test_part_of_the_model_and_helper_loops() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn

        net = nn.Sequential(nn.Linear(2, 2))
        opt = torch.optim.SGD(net.head.parameters(), lr=0.1)

        def epoch(loader):
            for x in loader:
                opt.zero_grad()
                net(x).sum().backward()
                opt.step()

        net = torch.load("net.pt")
        for _ in range(3):
            epoch(None)
        """
    )
    found = model.stale_optimizers
    assert [(f.owner, model.text_of(f.made_by)) for f in found] == [("net", 'torch.load("net.pt")')]


def test_a_training_function_called_once_counts_as_the_loop() -> None:
    source = """
import torch
import torch.nn as nn


def fit(net, optimizer, loader):
    for x in loader:
        optimizer.zero_grad()
        net(x).sum().backward()
        optimizer.step()


model = nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
model = nn.Linear(2, 1)
fit(model, opt, [])
"""
    model = build(source)
    found = model.stale_optimizers
    assert len(found) == 1 and isinstance(found[0].trainer, cst.Call)
    assert model.text_of(found[0].trainer) == "fit(model, opt, [])"
    rebuilt = source.replace(
        "    optimizer.zero_grad()", "    optimizer = torch.optim.SGD(net.parameters())\n"
        "        optimizer.zero_grad()"
    )  # fmt: skip
    assert build(rebuilt).stale_optimizers == []
