"""Tensor kinds and module structure: what activations, layers and losses make of values."""

from __future__ import annotations

import pytest
from model_helpers import build, expr, scope

from trainlint.model import Activation
from trainlint.model.values.activations import (
    drop_activation,
    implicit_softmax_dims,
    logit_loss_inputs,
)
from trainlint.model.values.kinds import UNKNOWN, TensorKind, join

STRUCTURE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from collections import OrderedDict


class Disc(nn.Module):
    def __init__(self, h, k):
        super().__init__()
        self.adv = nn.Sequential(nn.Linear(h, 1), nn.Sigmoid())
        self.aux = nn.Sequential(nn.Linear(h, k), nn.Softmax())

    def forward(self, x):
        return self.adv(x), self.aux(x)


class AttributeSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.softmax = nn.Softmax(dim=1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        out = self.fc(x)
        return self.softmax(out)


class EvalOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        x = self.fc(x)
        if not self.training:
            x = F.softmax(x, dim=1)
        return x


class BothArms(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        if self.flag:
            x = F.softmax(self.fc(x), dim=1)
        else:
            x = torch.softmax(self.fc(x), 1)
        return x


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        logits = self.fc(x)
        return logits, F.softmax(logits, 1)


relu_head = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Dropout(0.1))
named = nn.Sequential(OrderedDict([("fc", nn.Linear(8, 1)), ("act", nn.Softmax(dim=-1))]))
d, a, e, both, pair = Disc(3, 4), AttributeSoftmax(), EvalOnly(), BothArms(), Pair()
v, cls = d(x)
pa = a(x)
pe = e(x)
pb = both(x)
out = pair(x)
first = out[0]
second = out[1]
l0, p1 = pair(x)
r = relu_head(x)
n = named(x)
inline = nn.Softmax(dim=-1)(nn.Linear(2, 2)(x))
stable = F.softmax(first, dim=1) + 1e-8
logged = torch.log(F.softmax(first, dim=1))
"""


@pytest.mark.parametrize(
    ("name", "activation", "producer", "source"),
    [
        ("v", Activation.PROBABILITIES, "sigmoid", "nn.Linear"),
        ("cls", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("pa", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("pe", Activation.UNKNOWN, "", None),
        ("pb", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("first", Activation.LOGITS, "nn.Linear", None),
        ("second", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("l0", Activation.LOGITS, "nn.Linear", None),
        ("p1", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("r", Activation.NON_NEGATIVE, "relu", "nn.Linear"),
        ("n", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("inline", Activation.PROBABILITIES, "softmax", "nn.Linear"),
        ("stable", Activation.BOUNDED, "an epsilon", "softmax"),
        ("logged", Activation.LOG_PROBABILITIES, "log", "softmax"),
    ],
)
def test_module_structure_kinds(
    name: str, activation: Activation, producer: str, source: str | None
) -> None:
    model = build(STRUCTURE)
    kind = model.tensor_kind(expr(name), model.module_scope)
    assert kind.activation is activation
    assert kind.producer == producer
    assert (kind.source.producer if kind.source else None) == source


def test_axis_width_and_the_layer_applied() -> None:
    model = build(STRUCTURE)
    pa = model.tensor_kind(expr("pa"), model.module_scope)
    assert pa.axis == 1  # from the nn.Softmax(dim=1) built in __init__, not from the call
    assert model.text_of(pa.applied) == "self.softmax(out)"
    assert model.text_of(pa.operand) == "out"
    assert pa.source.width == 4
    cls = model.tensor_kind(expr("cls"), model.module_scope)
    assert cls.axis is None  # nn.Softmax() with no dim
    assert model.tensor_kind(expr("n"), model.module_scope).source.width == 1
    assert model.tensor_kind(expr("v"), model.module_scope).source.width == 1


def test_parameters_take_what_every_same_file_caller_passes() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn

        mlp = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1))

        class Trainer:
            def __init__(self, model):
                self.model = model

            def step(self, x):
                return self.model(x)

        def loss_of(outputs):
            return outputs

        def run(net, x):
            return net(x)

        trainer = Trainer(mlp)
        a = loss_of(torch.sigmoid(x))
        b = run(mlp, x)
        """
    )
    step = scope(model, "Trainer.step")
    assert model.tensor_kind(expr("self.model(x)"), step).producer == "softmax"
    assert model.tensor_kind(expr("outputs"), scope(model, "loss_of")).producer == "sigmoid"
    assert model.tensor_kind(expr("net(x)"), scope(model, "run")).producer == "softmax"


def test_callers_that_disagree_leave_a_parameter_unknown() -> None:
    model = build(
        """
        import torch

        def loss_of(outputs):
            return outputs

        a = loss_of(torch.sigmoid(x))
        b = loss_of(x @ w)
        """
    )
    assert model.tensor_kind(expr("outputs"), scope(model, "loss_of")) == UNKNOWN


def test_loss_inputs_are_the_input_not_the_target() -> None:
    model = build(
        """
        import torch.nn as nn
        import torch.nn.functional as F
        from torchvision.ops import sigmoid_focal_loss

        ce = nn.CrossEntropyLoss()
        a = ce(student, F.softmax(teacher, dim=-1))
        b = F.cross_entropy(F.softmax(student, dim=-1), y)
        c = sigmoid_focal_loss(inputs=p.sigmoid(), targets=t)
        d = F.nll_loss(F.log_softmax(s, dim=1), y)
        """
    )
    found = {model.text_of(i.loss.prediction): i.kind.producer for i in logit_loss_inputs(model)}
    assert found == {
        "student": "",
        "F.softmax(student, dim=-1)": "softmax",
        "p.sigmoid()": "sigmoid",
        "F.log_softmax(s, dim=1)": "log_softmax",
    }


def test_an_activation_is_dropped_only_when_the_loss_is_its_only_use() -> None:
    model = build(
        """
        import torch
        import torch.nn.functional as F

        def step(logits, y):
            only = torch.softmax(logits, dim=1)
            shared = F.softmax(logits, dim=1)
            a = F.cross_entropy(only, y)
            b = F.cross_entropy(shared, y)
            c = F.cross_entropy((logits + bias).softmax(-1), y)
            return a + b + c, shared.argmax(1)
        """
    )
    edits = {}
    for found in logit_loss_inputs(model):
        edit = drop_activation(model, found.kind, found.loss)
        edits[model.text_of(found.loss.prediction)] = edit and (
            model.text_of(edit.node),
            edit.replacement,
        )
    assert edits == {
        "only": ("torch.softmax(logits, dim=1)", "logits"),
        "shared": None,
        "(logits + bias).softmax(-1)": ("(logits + bias).softmax(-1)", "(logits + bias)"),
    }


def test_implicit_softmax_axes_and_what_they_apply_to() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        head = nn.Sequential(nn.Linear(4, 3), nn.Softmax())
        conv = nn.Sequential(nn.Conv2d(4, 3, 1), nn.Softmax())
        a = F.softmax(x)
        b = F.softmax(x, dim=None)
        c = F.softmax(x, 1)
        d = nn.Softmax(dim=0)
        e = torch.softmax(x, axis=1)
        f = x.log_softmax(axis=-1)
        """
    )
    found = [
        (model.text_of(site.node), model.text_of(given) or None, source and source.producer)
        for site, given, source in implicit_softmax_dims(model)
    ]
    assert found == [
        ("nn.Softmax()", None, "nn.Linear"),
        ("nn.Softmax()", None, "nn.Conv2d"),
        ("F.softmax(x)", None, ""),
        ("F.softmax(x, dim=None)", "None", ""),
    ]


def test_kinds_travel_as_plain_facts() -> None:
    logits = TensorKind(Activation.LOGITS, "nn.Linear", width=1)
    probs = TensorKind(Activation.PROBABILITIES, "softmax", -1, source=logits)
    fact = probs.to_fact()
    assert fact == {
        "activation": "probabilities",
        "producer": "softmax",
        "axis": -1,
        "source": {"activation": "logits", "producer": "nn.Linear", "width": 1},
    }
    back = TensorKind.from_fact(fact, origin="models.py:12")
    assert back == TensorKind(
        Activation.PROBABILITIES, "softmax", -1, source=logits, origin="models.py:12"
    )
    assert TensorKind.from_fact({"activation": "nonsense"}) == UNKNOWN
    assert join([probs, back]).activation is Activation.PROBABILITIES
    assert join([probs, logits]) == UNKNOWN


MODELS = """
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, x):
        return F.softmax(self.fc(x), dim=-1)


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        logits = self.fc(x)
        return logits, logits.softmax(-1)


def predict(net, x):
    return torch.sigmoid(net(x))
"""
TRAIN = """
import torch.nn as nn
from models import Net, Pair, predict

net = Net()
pair = Pair()
a = net(x)
logits, probs = pair(x)
out = pair(x)
b = predict(net, x)


def train(model, x):
    return model(x)


train(net, x)
"""


def test_kinds_cross_files_through_summaries(tmp_path) -> None:  # noqa: ANN001
    from trainlint.model import TrainingModel
    from trainlint.project import ProjectIndex

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / "train.py").write_text(TRAIN)
    view = ProjectIndex().view(tmp_path / "train.py")
    model = TrainingModel.from_source(TRAIN, tmp_path / "train.py", project=view)
    here = model.module_scope
    a = model.tensor_kind(expr("a"), here)
    assert (a.producer, a.axis, a.source.width) == ("softmax", -1, 1)
    assert a.origin == "Net.forward, line 12"
    assert model.tensor_kind(expr("logits"), here).producer == "nn.Linear"
    assert model.tensor_kind(expr("probs"), here).producer == "softmax"
    assert model.tensor_kind(expr("out[1]"), here).producer == "softmax"
    assert model.tensor_kind(expr("b"), here).producer == "sigmoid"
    assert model.tensor_kind(expr("model(x)"), scope(model, "train")).producer == "softmax"
    alone = TrainingModel.from_source(TRAIN, tmp_path / "train.py")
    assert alone.tensor_kind(expr("a"), alone.module_scope) == UNKNOWN


def test_logs_of_probabilities_and_the_fused_edit() -> None:
    from trainlint.model.values.activations import fused_log_softmax, logs_of_probabilities

    model = build(
        """
        import torch
        import torch.nn.functional as F

        a = torch.log(F.softmax(x, dim=1))
        b = x.softmax(-1).log()
        p = torch.sigmoid(x)
        c = torch.log(p)
        d = torch.log(p.clamp(min=1e-6))
        e = torch.log(x.exp())
        """
    )
    found = [
        (
            model.text_of(f.call),
            f.squashed.producer,
            f.clamped,
            (edit := fused_log_softmax(model, f)) and model.text_of(edit.replacement),
        )
        for f in logs_of_probabilities(model)
    ]
    assert found == [
        ("torch.log(F.softmax(x, dim=1))", "softmax", False, "F.log_softmax(x, dim=1)"),
        ("x.softmax(-1).log()", "softmax", False, "x.log_softmax(-1)"),
        ("torch.log(p)", "sigmoid", False, None),
        ("torch.log(p.clamp(min=1e-6))", "sigmoid", True, None),
    ]


def test_degenerate_heads_need_one_unit_and_the_last_axis() -> None:
    from trainlint.model.values.activations import degenerate_heads

    model = build(
        """
        import torch.nn as nn
        import torch.nn.functional as F

        last = nn.Sequential(nn.Linear(4, 1), nn.Softmax(dim=-1))
        time = F.softmax(nn.Linear(4, 1)(h), dim=1)
        many = nn.Sequential(nn.Linear(4, 2), nn.Softmax(dim=-1))
        one = nn.Linear(4, 1)
        loss = F.cross_entropy(one(x), y)
        """
    )
    found = [(model.text_of(h.layer.node), h.softmax is not None) for h in degenerate_heads(model)]
    assert found == [("nn.Linear(4, 1)", True), ("nn.Linear(4, 1)", False)]
