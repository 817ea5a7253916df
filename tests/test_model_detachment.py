"""Unit tests of graph cuts (model/dataflow/detachment.py): whether a backward target still
reaches the model's parameters."""

from __future__ import annotations

import textwrap

import libcst as cst

from trainlint.model import TrainingModel
from trainlint.model.dataflow.detachment import GraphTrace

HEADER = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import Variable

model = nn.Linear(4, 2)
target_model = nn.Linear(4, 2)
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(HEADER + textwrap.dedent(source))


def loop_of(body: str) -> str:
    return (
        "for x, y in loader:\n    optimizer.zero_grad()\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "    loss.backward()\n    optimizer.step()\n"
    )


def trace_of(source: str) -> tuple[TrainingModel, GraphTrace]:
    model = build(source)
    backwards = [e for step in model.train_steps for e in step.backwards]
    assert backwards, "no backward in a train step"
    return model, model.graph_cuts.trace_event(backwards[0])


def anchor_text(model: TrainingModel, trace: GraphTrace) -> str:
    assert trace.anchor is not None
    return model.text_of(trace.anchor).strip()


def test_a_plain_loss_is_live() -> None:
    _, trace = trace_of(loop_of("loss = criterion(model(x), y)\n"))
    assert trace.live and not trace.detached


def test_item_rebuilt_into_a_tensor_is_detached_at_the_hack() -> None:
    model, trace = trace_of(
        loop_of(
            """\
            value = criterion(model(x), y).item()
            loss = torch.tensor(value, requires_grad=True)
            """
        )
    )
    assert trace.detached
    assert anchor_text(model, trace) == "torch.tensor(value, requires_grad=True)"
    assert [model.text_of(c) for c in trace.cuts] == ["criterion(model(x), y).item()"]


def test_detached_output_without_hack_is_anchored_at_the_cut() -> None:
    model, trace = trace_of(loop_of("loss = criterion(model(x).detach(), y)\n"))
    assert trace.detached and not trace.forced
    assert anchor_text(model, trace) == "model(x).detach()"


def test_requires_grad_flag_after_argmax() -> None:
    model, trace = trace_of(
        loop_of(
            """\
            loss = criterion(model(x).argmax(1).float(), y)
            loss.requires_grad = True
            """
        )
    )
    assert trace.detached
    assert anchor_text(model, trace) == "loss.requires_grad = True"


def test_max_indices_and_data_are_cuts() -> None:
    _, indices = trace_of(loop_of("loss = criterion(model(x).max(1)[1].float(), y)\n"))
    _, data = trace_of(
        loop_of("loss = Variable(criterion(model(x), y).data, requires_grad=True)\n")
    )
    assert indices.detached and data.detached and data.forced


def test_stop_gradient_on_one_operand_stays_live() -> None:
    _, trace = trace_of(
        loop_of(
            """\
            target = y + 0.9 * target_model(x).max(1)[0].detach()
            loss = F.mse_loss(model(x), target)
            """
        )
    )
    assert trace.live and trace.cuts and not trace.detached


def test_forward_under_no_grad_is_a_cut() -> None:
    _, trace = trace_of(
        loop_of(
            """\
            with torch.no_grad():
                out = model(x)
            loss = criterion(out, y)
            loss.requires_grad_()
            """
        )
    )
    assert trace.detached and trace.forced


def test_requires_grad_on_an_input_keeps_it_a_leaf() -> None:
    _, trace = trace_of(
        loop_of(
            """\
            x.requires_grad_()
            loss = criterion(model(x), y) + x.sum()
            """
        )
    )
    assert trace.live


def test_hand_written_leaf_is_live_and_an_opaque_call_is_not_followed() -> None:
    _, leaf = trace_of(
        loop_of(
            """\
            w = torch.zeros(4, 2, requires_grad=True)
            loss = ((x @ w - y) ** 2).mean()
            """
        )
    )
    _, opaque = trace_of(loop_of("loss = criterion(model(x).detach(), y) + penalty(model)\n"))
    assert leaf.live and not leaf.detached
    assert opaque.opaque and not opaque.detached


def test_helper_returns_are_read_at_the_call() -> None:
    helper = (
        "def rebuilt(scores, labels):\n"
        "    return torch.tensor(criterion(scores, labels).item(), requires_grad=True)\n\n"
    )
    model, trace = trace_of(helper + loop_of("loss = rebuilt(model(x), y)\n"))
    assert trace.detached
    assert "torch.tensor(" in anchor_text(model, trace)


def test_list_filled_by_append_is_followed() -> None:
    _, trace = trace_of(
        loop_of(
            """\
            parts = []
            for chunk in x.chunk(2):
                parts.append(criterion(model(chunk), y).item())
            loss = torch.tensor(sum(parts), requires_grad=True)
            """
        )
    )
    assert trace.detached


def test_detached_backwards_lists_only_cut_targets() -> None:
    model = build(
        """
        def good(loader):
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()

        def bad(loader):
            for x, y in loader:
                optimizer.zero_grad()
                loss = criterion(model(x).detach(), y)
                loss.backward()
                optimizer.step()
        """
    )
    found = model.graph_cuts.detached_backwards()
    assert len(found) == 1
    assert isinstance(found[0].event.node, cst.Call)
    assert model.text_of(found[0].event.node) == "loss.backward()"


def test_an_attribute_named_data_of_self_is_not_a_cut() -> None:
    model = build(
        """
        class Agent(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 2)
                self.data = []
                self.opt = torch.optim.Adam(self.parameters())

            def train_net(self):
                self.opt.zero_grad()
                for r, prob, x in self.data:
                    loss = -torch.log(prob) * r + 0.0 * self.fc(x).detach().sum()
                    loss.backward()
                self.opt.step()
        """
    )
    assert model.graph_cuts.detached_backwards() == []
