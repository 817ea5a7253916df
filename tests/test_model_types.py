"""Class kinds: what a same-file class is, from its bases resolved transitively."""

from __future__ import annotations

import libcst as cst
from model_helpers import build, expr, scope

from trainlint.model import ClassKind, Role
from trainlint.model.syntax.nodes import descendants

SOURCE = """
import dataclasses
from abc import ABC
from typing import Generic, Protocol, TypeVar

import tensorflow as tf
import torch
import torch.nn as nn
from pydantic import BaseModel
from pytorch_lightning import LightningModule
from torch.nn import Module as TorchModule
from torch.utils.data import Dataset

from .base import BaseNet

T = TypeVar("T")
Base = nn.Module


class Direct(nn.Module): pass
class Renamed(TorchModule): pass
class Aliased(Base): pass
class Grandchild(Aliased): pass
class Layered(nn.Linear): pass
class Lit(LightningModule): pass
class LitChild(Lit): pass
class KerasNet(tf.keras.Model): pass
class KerasBlock(tf.keras.layers.Layer): pass
class Settings(BaseModel): pass
class Opt(torch.optim.Optimizer): pass
class Sched(torch.optim.lr_scheduler.LRScheduler): pass
class Data(Dataset): pass
class Fn(torch.autograd.Function): pass
class MLP:
    def forward(self, x): return x
    def backward(self, g): return g
class Abstract(ABC): pass
class Boxed(Generic[T]): pass
class Deeper(MLP): pass
class Proto(Protocol):
    def forward(self, x): ...
@dataclasses.dataclass
class Config:
    lr: float = 0.1
class Elsewhere(BaseNet): pass
class Mixed(MLP, nn.Module): pass
class Loop(Loop2): pass
class Loop2(Loop): pass
"""

EXPECTED = {
    "Direct": ClassKind.TORCH_MODULE,
    "Renamed": ClassKind.TORCH_MODULE,
    "Aliased": ClassKind.TORCH_MODULE,
    "Grandchild": ClassKind.TORCH_MODULE,
    "Layered": ClassKind.TORCH_MODULE,
    "Lit": ClassKind.LIGHTNING_MODULE,
    "LitChild": ClassKind.LIGHTNING_MODULE,
    "KerasNet": ClassKind.KERAS_MODEL,
    "KerasBlock": ClassKind.KERAS_LAYER,
    "Settings": ClassKind.LIBRARY,
    "Opt": ClassKind.OPTIMIZER,
    "Sched": ClassKind.SCHEDULER,
    "Data": ClassKind.DATASET,
    "Fn": ClassKind.LIBRARY,
    "MLP": ClassKind.PLAIN,
    "Abstract": ClassKind.PLAIN,
    "Boxed": ClassKind.PLAIN,
    "Deeper": ClassKind.PLAIN,
    "Proto": ClassKind.PROTOCOL,
    "Config": ClassKind.DATACLASS,
    "Elsewhere": ClassKind.UNKNOWN,
    "Mixed": ClassKind.TORCH_MODULE,
    "Loop": ClassKind.UNKNOWN,
    "Loop2": ClassKind.UNKNOWN,
}


def test_class_kinds_through_local_bases_aliases_and_imports() -> None:
    model = build(SOURCE)
    kinds = {name: model.class_kind(info) for name, info in model.classes.items()}
    assert kinds == EXPECTED


def test_torch_module_classes_are_exactly_the_resolved_ones() -> None:
    model = build(SOURCE)
    torch_modules = {n for n, info in model.classes.items() if model.is_torch_module_class(info)}
    assert torch_modules == {
        "Direct", "Renamed", "Aliased", "Grandchild", "Layered", "Lit", "LitChild", "Mixed"
    }  # fmt: skip
    # a pydantic ``BaseModel`` is not a model; an unseen ``BaseNet`` is not assumed to be one
    assert not model.is_module_class(model.classes["Settings"])
    assert not model.is_module_class(model.classes["MLP"])


def test_instances_get_roles_from_their_class_kind() -> None:
    model = build(
        SOURCE
        + """
def main():
    model = MLP()
    net = Grandchild()
    optimizer = Opt([])
    scheduler = Sched(optimizer)
    data = Data()
    cfg = Config()
    keras_model = KerasNet()
"""
    )
    main = scope(model, "main")
    roles = {
        name: model.role_of(expr(name), main)
        for name in ("model", "net", "optimizer", "scheduler", "data", "cfg", "keras_model")
    }
    assert roles == {
        "model": Role.OBJECT,  # named ``model``, but an instance of a plain class
        "net": Role.MODEL,
        "optimizer": Role.OPTIMIZER,
        "scheduler": Role.SCHEDULER,
        "data": Role.DATASET,
        "cfg": Role.OBJECT,
        "keras_model": Role.MODEL,
    }


def test_known_modules_need_evidence_not_names() -> None:
    model = build(
        """
import torch
import torch.nn as nn
import fused_softmax_cuda

class Net(nn.Module):
    def forward(self, x): return x

class MLP:
    def forward(self, x): return x

def main(model, encoder: nn.Module, backbone, evaluated):
    net = Net()
    plain = MLP()
    plain.eval()
    evaluated.eval()
    layers = nn.ModuleList([Net()])
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1)
    model.forward(1)
    encoder.forward(1)
    net.forward(1)
    plain.forward(1)
    layers[0].forward(1)
    fused_softmax_cuda.forward(1)
    backbone.forward(1)
    evaluated.forward(1)
"""
    )
    main = scope(model, "main")
    receivers = {
        model.text_of(node.func.value): model.is_known_module(node.func.value, main)
        for node in descendants(main.node)
        if isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value == "forward"
    }
    assert receivers == {
        "model": False,
        "encoder": True,
        "net": True,
        "plain": False,
        "layers[0]": True,
        "fused_softmax_cuda": False,
        "backbone": True,  # its parameters go to a torch optimizer
        "evaluated": True,  # switched to eval mode: only modules have both eval and forward
    }


def test_instances_of_project_modules_elsewhere_are_known_modules(tmp_path) -> None:
    from trainlint.model import TrainingModel
    from trainlint.project import ProjectIndex

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "nets.py").write_text(
        "import torch.nn as nn\n\n"
        "class Encoder(nn.Module):\n    def forward(self, x):\n        return x\n\n"
        "class Scorer:\n    def forward(self, x):\n        return x\n"
    )
    source = (
        "import torch\nfrom nets import Encoder, Scorer\n\n"
        "def main(x):\n    enc = Encoder()\n    sc = Scorer()\n"
        "    enc.forward(x)\n    sc.forward(x)\n"
    )
    path = tmp_path / "train.py"
    path.write_text(source)
    model = TrainingModel.from_source(source, path, ProjectIndex().view(path))
    main = scope(model, "main")
    assert model.is_known_module(expr("enc"), main)
    assert not model.is_known_module(expr("sc"), main)
    alone = TrainingModel.from_source(source, path)  # no project index: nothing is known
    assert not alone.is_known_module(expr("enc"), scope(alone, "main"))
