"""Import aliases and qualified names."""

from __future__ import annotations

import pytest
from model_helpers import build


@pytest.mark.parametrize(
    ("imports", "name", "qualified"),
    [
        ("import torch.nn as nn", "nn.Linear", "torch.nn.Linear"),
        ("from torch import nn", "nn.CrossEntropyLoss", "torch.nn.CrossEntropyLoss"),
        ("import torch.nn.functional as F", "F.softmax", "torch.nn.functional.softmax"),
        ("from torch.nn import functional as F", "F.relu", "torch.nn.functional.relu"),
        ("from torch import optim", "optim.AdamW", "torch.optim.AdamW"),
        (
            "from torch.optim import lr_scheduler",
            "lr_scheduler.StepLR",
            "torch.optim.lr_scheduler.StepLR",
        ),
        (
            "from torch.optim.lr_scheduler import OneCycleLR",
            "OneCycleLR",
            "torch.optim.lr_scheduler.OneCycleLR",
        ),
        ("from torch.cuda.amp import GradScaler", "GradScaler", "torch.amp.GradScaler"),
        ("from torch.amp import autocast", "autocast", "torch.amp.autocast"),
        ("import torch", "torch.optim.SGD", "torch.optim.SGD"),
        ("import tensorflow as tf", "tf.keras.layers.Dense", "tensorflow.keras.layers.Dense"),
        (
            "from tensorflow import keras",
            "keras.losses.BinaryCrossentropy",
            "tensorflow.keras.losses.BinaryCrossentropy",
        ),
        ("import keras", "keras.layers.Dense", "tensorflow.keras.layers.Dense"),
        ("from keras import layers", "layers.Dense", "tensorflow.keras.layers.Dense"),
        ("from tensorflow.keras import backend as K", "K.log", "tensorflow.keras.backend.log"),
        ("from accelerate import Accelerator", "Accelerator", "accelerate.Accelerator"),
        (
            "import pytorch_lightning as pl",
            "pl.LightningModule",
            "lightning.pytorch.LightningModule",
        ),
        ("import lightning as L", "L.LightningModule", "lightning.LightningModule"),
        ("from transformers import Trainer", "Trainer", "transformers.Trainer"),
        ("import deepspeed", "deepspeed.initialize", "deepspeed.initialize"),
        # old names of transformers, and vendored copies of apex / pytorch_pretrained_bert
        ("from apex import amp", "amp.initialize", "apex.amp.initialize"),
        ("from third_party.apex import amp", "amp.initialize", "apex.amp.initialize"),
        (
            "import pytorch_transformers as pt",
            "pt.WarmupLinearSchedule",
            "transformers.WarmupLinearSchedule",
        ),
        (
            "from bert.pytorch_pretrained_bert.optimization import BertAdam",
            "BertAdam",
            "transformers.optimization.BertAdam",
        ),
        ("from myproject.apexutils import clip", "clip", "myproject.apexutils.clip"),
    ],
)
def test_qualified_names(imports: str, name: str, qualified: str) -> None:
    model = build(imports + "\n")
    assert model.imports.qualify_dotted(name) == qualified


@pytest.mark.parametrize(
    "imports",
    ["import flax.linen as nn", "import mlx.nn as nn", "from flax import linen as nn"],
)
def test_nn_from_flax_or_mlx_is_not_torch(imports: str) -> None:
    model = build(imports + "\n")
    qualified = model.imports.qualify_dotted("nn.Dense")
    assert qualified is not None and not qualified.startswith("torch")


def test_unimported_and_relative_names_are_not_qualified() -> None:
    model = build("from .models import nn\nx = 1\n")
    assert model.imports.qualify_dotted("nn.Linear") is None
    assert model.imports.qualify_dotted("x") is None
    assert model.imports.qualify_dotted("self.optimizer") is None


def test_imports_query() -> None:
    model = build("import torch.nn as nn\n")
    assert model.imports.imports("torch")
    assert not model.imports.imports("tensorflow")
