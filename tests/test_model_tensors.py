"""What tensors hold: logits, probabilities, log-probabilities, unknown."""

from __future__ import annotations

import pytest
from model_helpers import build, expr, scope

from trainlint.model import Activation

TORCH = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from somewhere import make_model


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 3)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        logits = self.fc(x)
        return logits, F.softmax(logits, dim=-1)


class Probs(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 1), nn.Sigmoid())

    def forward(self, x):
        return self.body(x)


def helper_sigmoid(net, x):
    return torch.sigmoid(net(x))


net = Net()
two = TwoHeads()
probs_model = Probs()
seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
relu_head = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
external = make_model()

a = net(x)
logits, p = two(x)
b = probs_model(x)
c = seq(x).squeeze(-1)
d = torch.sigmoid(a)
e = F.softmax(a, dim=1)
f = F.log_softmax(a, dim=1)
g = torch.randn(4, 3)
h = external(x)
i = x @ w + bias
j = a / temperature
k = a.clamp(1e-6, 1 - 1e-6)
m = helper_sigmoid(net, x)
n = relu_head(x)
o = a.softmax(-1)
q = torch.rand(8)
"""


@pytest.mark.parametrize(
    ("name", "activation", "producer"),
    [
        ("a", Activation.LOGITS, "nn.Linear"),
        ("logits", Activation.LOGITS, "nn.Linear"),
        ("p", Activation.PROBABILITIES, "softmax"),
        ("b", Activation.PROBABILITIES, "sigmoid"),
        ("c", Activation.LOGITS, "nn.Linear"),
        ("d", Activation.PROBABILITIES, "sigmoid"),
        ("e", Activation.PROBABILITIES, "softmax"),
        ("f", Activation.LOG_PROBABILITIES, "log_softmax"),
        ("g", Activation.UNBOUNDED, "torch.randn"),
        ("h", Activation.UNKNOWN, ""),
        ("i", Activation.LOGITS, "a matrix product"),
        ("j", Activation.LOGITS, "nn.Linear"),
        ("k", Activation.BOUNDED, "clamp"),
        ("m", Activation.PROBABILITIES, "sigmoid"),
        ("n", Activation.NON_NEGATIVE, "relu"),
        ("o", Activation.PROBABILITIES, "softmax"),
        ("q", Activation.BOUNDED, "torch.rand"),
    ],
)
def test_torch_tensor_kinds(name: str, activation: Activation, producer: str) -> None:
    model = build(TORCH)
    kind = model.tensor_kind(expr(name), model.module_scope)
    assert kind.activation is activation
    assert kind.producer == producer


def test_softmax_axis_is_recorded() -> None:
    model = build(TORCH)
    assert model.tensor_kind(expr("e"), model.module_scope).axis == 1
    assert model.tensor_kind(expr("o"), model.module_scope).axis == -1


def test_latest_binding_before_the_use_wins() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn
        head = nn.Linear(4, 1)

        def step(x):
            out = head(x)
            before = out
            out = torch.sigmoid(out)
            return before, out
        """
    )
    step = scope(model, "step")
    site = next(s for s in model.calls if s.dotted == "torch.sigmoid")
    assert (
        model.tensor_kind(expr("out"), step, site.statement_order).activation is Activation.LOGITS
    )
    assert model.tensor_kind(expr("out"), step).activation is Activation.PROBABILITIES


def test_conflicting_returns_are_unknown() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn
        fc = nn.Linear(2, 1)

        def maybe(x, training):
            if training:
                return fc(x)
            return torch.sigmoid(fc(x))

        y = maybe(x, True)
        """
    )
    assert model.tensor_kind(expr("y"), model.module_scope).activation is Activation.UNKNOWN


def test_keras_layers_and_sequential() -> None:
    model = build(
        """
        from tensorflow import keras
        from tensorflow.keras import layers

        logit_model = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(1)])
        prob_model = keras.Sequential([layers.Dense(1, activation="sigmoid")])
        soft_model = keras.Sequential([layers.Dense(3), layers.Activation("softmax")])
        a = logit_model(x, training=True)
        b = prob_model(x)
        c = soft_model(x)
        d = layers.Dense(1)(features)
        e = layers.Dense(1, "sigmoid")(features)
        """
    )
    kinds = {n: model.tensor_kind(expr(n), model.module_scope).activation for n in "abcde"}
    assert kinds == {
        "a": Activation.LOGITS,
        "b": Activation.PROBABILITIES,
        "c": Activation.PROBABILITIES,
        "d": Activation.LOGITS,
        "e": Activation.PROBABILITIES,
    }


def test_loss_calls_and_their_predictions() -> None:
    model = build(
        """
        import torch.nn as nn
        import torch.nn.functional as F
        from tensorflow import keras

        bce = nn.BCELoss()
        l1 = bce(pred, y)
        l2 = F.nll_loss(out, y)
        l3 = nn.CrossEntropyLoss()(logits, y)
        l4 = keras.losses.binary_crossentropy(y, p2)
        l5 = keras.losses.BinaryCrossentropy(from_logits=True)(y, p3)
        l6 = unrelated(pred, y)
        """
    )
    found = {
        model.module.code_for_node(loss.prediction): loss.family.name for loss in model.loss_calls
    }
    assert found == {
        "pred": "BINARY_CROSS_ENTROPY",
        "out": "NLL",
        "logits": "CROSS_ENTROPY",
        "p2": "BINARY_CROSS_ENTROPY",
        "p3": "BCE_WITH_LOGITS",
    }


def test_a_tensor_operand_may_broadcast_a_one_unit_layer_wider():
    model = build(
        """
        import torch
        import torch.nn as nn

        fc = nn.Linear(8, 1)
        bias = torch.zeros(10)
        widened = fc(x) + bias
        shifted = fc(x) + 0.5
        """
    )
    module = model.module_scope
    assert model.tensor_kind(expr("widened"), module).width is None
    assert model.tensor_kind(expr("shifted"), module).width == 1


def test_a_rebound_criterion_is_the_one_bound_before_each_call():
    model = build(
        """
        import torch.nn as nn

        loss_fn = nn.BCELoss()
        first = loss_fn(a, b)
        loss_fn = nn.CrossEntropyLoss()
        second = loss_fn(c, d)
        loss_fn = nn.MSELoss()
        third = loss_fn(e, f)  # not a cross-entropy at all

        def later(x, y):
            return loss_fn(x, y)
        """
    )
    labels = [(model.text_of(loss.site.node), loss.label) for loss in model.loss_calls]
    assert labels == [
        ("loss_fn(a, b)", "nn.BCELoss"),
        ("loss_fn(c, d)", "nn.CrossEntropyLoss"),
    ]  # ``later`` reads the module's last binding, an MSE loss


def test_a_stack_wrapping_a_name_reads_what_the_name_held_before() -> None:
    """``model = keras.Sequential([model, ...])`` wraps the earlier ``model`` (keras'
    trainer_test.py made the layer analysis recurse through the rebinding)."""
    model = build(
        """
        import torch.nn as nn
        from tensorflow import keras
        from tensorflow.keras import layers

        model = keras.Sequential([layers.Dense(8, activation="relu"), layers.Dense(4)])
        model = keras.Sequential([model])
        head = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1))
        head = nn.Sequential(head, nn.Softmax(dim=-1))
        a = model(x)
        b = head(x)
        """
    )
    a = model.tensor_kind(expr("a"), model.module_scope)
    assert (a.activation, a.width) == (Activation.LOGITS, 4)
    b = model.tensor_kind(expr("b"), model.module_scope)
    assert b.activation is Activation.PROBABILITIES
    assert b.source is not None and b.source.width == 1
