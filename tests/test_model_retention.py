"""Unit tests of graph retention (model/dataflow/retention.py): lists that keep a graph tensor
of every iteration alive."""

from __future__ import annotations

import textwrap

from trainlint.model import TrainingModel

HEADER = """\
import torch
import torch.nn as nn

model = nn.Linear(4, 2)
criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""


def retained(source: str) -> list[tuple[str, str]]:
    model = TrainingModel.from_source(HEADER + textwrap.dedent(source))
    return [(r.name, model.text_of(r.value)) for r in model.retained_appends]


def test_a_loss_appended_every_batch_is_retained() -> None:
    found = retained(
        """
        losses = []
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss)
        """
    )
    assert found == [("losses", "loss")]


def test_converted_values_are_not() -> None:
    found = retained(
        """
        a, b, c = [], [], []
        for x, y in loader:
            out = model(x)
            a.append(out.item())
            b.append(out.detach().cpu())
            c.append(out.cpu().numpy())
        """
    )
    assert found == []


def test_plus_equals_and_extend_of_a_literal() -> None:
    found = retained(
        """
        outs = []
        for x in loader:
            outs += [model(x)]
            outs.extend([model(x), 1])
        """
    )
    assert [name for name, _ in found] == ["outs", "outs"]


def test_no_grad_and_a_fresh_list_per_iteration_are_silent() -> None:
    found = retained(
        """
        kept = []
        with torch.no_grad():
            for x in loader:
                kept.append(model(x))
        for x in loader:
            fresh = []
            fresh.append(model(x))
        """
    )
    assert found == []


def test_a_list_back_propagated_later_is_silent() -> None:
    found = retained(
        """
        for episode in range(10):
            log_probs = []
            for t in range(100):
                log_probs.append(model(t))
            loss = torch.stack(log_probs).sum()
            loss.backward()
        """
    )
    assert found == []


def test_attribute_appends_matched_by_another_objects_name() -> None:
    found = retained(
        """
        class Agent:
            def __init__(self):
                self.saved = []

            def act(self, s):
                self.saved.append(model(s))

        agent = Agent()
        for step in range(100):
            agent.act(step)
        torch.cat(agent.saved).sum().backward()
        """
    )
    assert found == []


def test_a_loop_over_a_written_out_list_is_bounded() -> None:
    found = retained(
        """
        other = nn.Linear(4, 2)
        for epoch in range(3):
            outs = []
            for net in [model, other]:
                outs.append(net(probe))
        """
    )
    assert found == []


def test_moved_to_cpu_is_kept_on_cpu() -> None:
    model = TrainingModel.from_source(
        HEADER + "cache = []\nfor x in loader:\n    cache.append(model(x).cpu())\n"
    )
    (found,) = model.retained_appends
    assert found.kept_on_cpu


def test_handed_to_an_unknown_learner_is_silent() -> None:
    found = retained(
        """
        for update in range(10):
            values = []
            for t in range(5):
                values.append(model(t))
            learner.update(values)
        """
    )
    assert found == []


def test_a_metric_of_another_library_does_not_consume_the_list() -> None:
    model = TrainingModel.from_source(
        HEADER
        + "from sklearn.metrics import roc_auc_score\n"
        + "def validate(loader):\n"
        + "    scores = []\n"
        + "    for x, y in loader:\n"
        + "        scores.append(torch.sigmoid(model(x)))\n"
        + "    return roc_auc_score(y, torch.cat(scores).detach().numpy())\n"
    )
    assert [r.name for r in model.retained_appends] == ["scores"]
