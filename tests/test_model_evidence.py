"""Tensor and tf.data evidence (``model.evidence``) and discarded out-of-place results."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
from model_helpers import build, scope

from trainlint.model import TrainingModel
from trainlint.project import ProjectIndex

SOURCE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import tensorflow as tf
from torch.utils.data import DataLoader


def helper() -> torch.Tensor:
    return torch.zeros(3)


def f(dataset, anything, annotated: torch.Tensor, used, buffer):
    made = torch.randn(2, 3)
    moved = made.to("cuda")
    summed = made + 1
    layer = nn.Linear(3, 3)
    out = layer(made)
    returned = helper()
    state = used.unsqueeze(0)
    filled = buffer.size()
    for p in layer.parameters():
        clipped = p.data
    loader = DataLoader(dataset, batch_size=4)
    for i, (xb, yb) in enumerate(loader):
        pass
    custom = DataLoader(dataset, batch_size=4, collate_fn=list)
    for batch in custom:
        pass
    ds = tf.data.Dataset.from_tensor_slices([1, 2]).map(abs)
    plain = [1, 2]
    return anything
"""


def _model() -> TrainingModel:
    return build(SOURCE)


def _is_tensor(model: TrainingModel, text: str) -> bool:
    where = scope(model, "f")
    return model.evidence.is_tensor(cst.parse_expression(text), where, 10**9)


def test_tensor_evidence_from_what_made_the_value() -> None:
    model = _model()
    for known in ("made", "moved", "summed", "out", "returned", "clipped", "annotated", "xb"):
        assert _is_tensor(model, known), known
    assert _is_tensor(model, "used")  # ``used.unsqueeze(0)``: only tensors have it


def test_no_tensor_evidence_from_names_or_unknown_producers() -> None:
    model = _model()
    # ``buffer.size()``: a replay buffer of the project may have a ``size()`` too
    for unknown in ("anything", "layer", "plain", "batch", "i", "dataset", "ds", "buffer"):
        assert not _is_tensor(model, unknown), unknown


def test_tf_data_discards_need_a_known_source() -> None:
    source = (
        "import tensorflow as tf\n\n"
        "ds = tf.data.Dataset.from_tensor_slices([1, 2])\n"
        "ds.shuffle(2)\n\n\n"
        "def f(stream):\n    stream.batch(8)\n"
    )
    assert _discarded(source) == ["ds.shuffle(2)"]


DISCARDS = """
import torch
import torch.nn as nn

net = nn.Linear(2, 2)
x = torch.ones(2)
net.to("cuda")
x.to("cuda")
x.add_(1)
x.view(-1).copy_(x)
x.float()
"""


def _discarded(source: str, path: str = "<string>") -> list[str]:
    model = TrainingModel.from_source(source, Path(path))
    return [model.text_of(d.statement) for d in model.discarded_results]


def test_discarded_results_only_for_tensors_and_outermost_out_of_place_calls() -> None:
    assert _discarded(DISCARDS) == ['x.to("cuda")', "x.float()"]


def test_notebook_cells_display_their_top_level_values() -> None:
    assert _discarded(DISCARDS, "notebook.ipynb") == []
    inside = DISCARDS + "for step in range(2):\n    x.float()\n"
    assert _discarded(inside, "notebook.ipynb") == ["x.float()"]


def test_tensors_returned_by_another_project_module(tmp_path: Path) -> None:
    (tmp_path / "losses.py").write_text(
        "import torch.nn.functional as F\n\n\n"
        "def probs(x):\n    return F.softmax(x, dim=-1)\n\n\n"
        "def config():\n    return {'lr': 1}\n"
    )
    train = tmp_path / "train.py"
    train.write_text("from losses import config, probs\n\np = probs(1)\nc = config()\n")
    text = train.read_text()
    model = TrainingModel(cst.parse_module(text), train, text, ProjectIndex().view(train))
    where = model.module_scope
    assert model.evidence.is_tensor(cst.parse_expression("p"), where, 10**9)
    assert not model.evidence.is_tensor(cst.parse_expression("c"), where, 10**9)
