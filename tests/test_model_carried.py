"""Unit tests of graphs carried across iterations (model/loops/carried.py): hidden states fed
back with their graph, and ``retain_graph=True`` on an iteration's only backward."""

from __future__ import annotations

import textwrap

from trainlint.model import TrainingModel

HEADER = """\
import torch
import torch.nn as nn

rnn = nn.GRU(4, 8)
head = nn.Linear(8, 1)
optimizer = torch.optim.SGD(rnn.parameters(), lr=0.1)
"""


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(HEADER + textwrap.dedent(source))


def carried(source: str) -> list[tuple[str, str]]:
    model = build(source)
    return [(c.name, model.text_of(c.read)) for c in model.carried_states]


def retained(source: str) -> list[str]:
    model = build(source)
    return [model.text_of(r.event.node) for r in model.needless_retained_graphs]


def test_a_state_fed_back_without_detach_is_carried() -> None:
    found = carried(
        """
        h = torch.zeros(1, 2, 8)
        for x, y in loader:
            out, h = rnn(x, h)
            head(out).sum().backward()
            optimizer.step()
        """
    )
    assert found == [("h", "rnn(x, h)")]


def test_detach_at_the_top_or_the_end_and_resets_are_not() -> None:
    found = carried(
        """
        h = torch.zeros(1, 2, 8)
        for x, y in loader:
            h = h.detach()
            out, h = rnn(x, h)
            head(out).sum().backward()
        for x, y in loader:
            out, h = rnn(x, h)
            head(out).sum().backward()
            h = h.detach()
        for x, y in loader:
            h = torch.zeros(1, 2, 8)
            out, h = rnn(x, h)
            head(out).sum().backward()
        for x, y in loader:
            h.detach_()
            out, h = rnn(x, h)
            head(out).sum().backward()
        """
    )
    assert found == []


def test_arithmetic_on_the_state_keeps_it_carried() -> None:
    found = carried(
        """
        h = torch.zeros(1, 2, 8)
        for x, mask in loader:
            h = h * mask
            out, h = rnn(x, h)
            head(out).sum().backward()
        """
    )
    assert found == [("h", "rnn(x, h)")]


def test_an_inner_time_loop_without_backward_is_one_sequence() -> None:
    found = carried(
        """
        for seq, y in loader:
            h = torch.zeros(1, 2, 8)
            for t in range(10):
                out, h = rnn(seq[t], h)
            head(out).sum().backward()
        """
    )
    assert found == []


def test_states_made_under_no_grad_and_metadata_reads_are_not_carried() -> None:
    found = carried(
        """
        h = torch.zeros(1, 2, 8)
        for x, y in loader:
            with torch.no_grad():
                out, h = rnn(x, h)
            head(out).sum().backward()
        g = torch.zeros(1, 2, 8)
        for x, y in loader:
            out, g = rnn(x, torch.zeros(1, g.size(1), 8))
            head(out).sum().backward()
        """
    )
    assert found == []


def test_retain_graph_on_the_only_backward_of_a_fresh_forward() -> None:
    found = retained(
        """
        for x, y in loader:
            loss = head(rnn(x)[0]).sum()
            loss.backward(retain_graph=True)
            optimizer.step()
        """
    )
    assert found == ["loss.backward(retain_graph=True)"]


def test_retain_graph_shared_or_with_create_graph_is_needed() -> None:
    found = retained(
        """
        for x, y in loader:
            out = head(rnn(x)[0])
            a = out.sum()
            a.backward(retain_graph=True)
            out.mean().backward()
        for x, y in loader:
            loss = head(rnn(x)[0]).sum()
            torch.autograd.grad(loss, x, create_graph=True, retain_graph=True)
        for x, y in loader:
            terms = head(rnn(x)[0]).unbind(0)
            for term in terms:
                term.sum().backward(retain_graph=True)
        shared = head(rnn(probe)[0]).sum()
        for step in range(3):
            shared.backward(retain_graph=True)
        """
    )
    assert found == []


STATEFUL = """
class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8)
        self.hidden = None

    def init_hidden(self):
        self.hidden = (torch.zeros(1, 1, 8), torch.zeros(1, 1, 8))

    def forward(self, x):
        out, self.hidden = self.lstm(x, self.hidden)
        return out


tagger = Tagger()
"""


def test_a_module_keeping_its_state_in_an_attribute() -> None:
    model = build(
        STATEFUL
        + "for x, y in loader:\n"
        + "    tagger(x).sum().backward()\n"
        + "    optimizer.step()\n"
    )
    (found,) = model.carried_attributes
    assert (found.instance, found.attribute) == ("tagger", "hidden")
    assert model.text_of(found.call) == "tagger(x)"


def test_a_module_state_reset_in_the_loop_is_not_carried() -> None:
    model = build(
        STATEFUL
        + "for x, y in loader:\n"
        + "    tagger.init_hidden()\n"
        + "    tagger(x).sum().backward()\n"
        + "for x, y in loader:\n"
        + "    tagger.hidden = None\n"
        + "    tagger(x).sum().backward()\n"
    )
    assert model.carried_attributes == []
