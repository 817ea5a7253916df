"""Totals carried from one epoch into the next (``model.carried_totals``)."""

from __future__ import annotations

from model_helpers import build

from trainlint.model.dataflow.carryover import TotalKind

LOOP = """
import numpy as np
import torch
import torchmetrics


def train(model, loader, optimizer, criterion, epochs):
{setup}
    for epoch in range(epochs):
{epoch_top}
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            loss = criterion(out, y)
            loss.backward()
            optimizer.step()
{batch}
{report}
"""


def carried(setup: str, batch: str, report: str, epoch_top: str = "        pass") -> dict:
    source = LOOP.format(setup=setup, batch=batch, report=report, epoch_top=epoch_top)
    model = build(source)
    return {c.name: c for c in model.carried_totals}


def test_a_loss_total_made_before_the_epochs_is_carried() -> None:
    found = carried(
        "    total = 0.0",
        "            total += loss.item()",
        "        print(total)",
    )
    assert set(found) == {"total"}
    total = found["total"]
    assert total.kind is TotalKind.TOTAL
    assert total.batch_loop.parent is total.epoch_loop


def test_step_and_sample_counters_are_not_measurements() -> None:
    found = carried(
        "    step = 0\n    seen = 0",
        "            step += 1\n            seen += x.size(0)",
        "        print(step, seen)",
    )
    assert found == {}


def test_any_restart_in_the_epoch_loop_keeps_it_silent() -> None:
    assert not carried(
        "    total = 0.0",
        "            total += loss.item()\n            if epoch % 2:\n                total = 0.0",
        "        print(total)",
    )
    assert not carried(
        "    total = 0.0",
        "            total += loss.item()",
        "        print(total)",
        epoch_top="        total = 0.0",
    )


def test_a_self_referencing_assignment_adds_and_a_divisor_counter_is_a_companion() -> None:
    found = carried(
        "    right = 0\n    seen = 0",
        "            right = right + (out.argmax(1) == y).sum().item()\n"
        "            seen += y.size(0)",
        "        print(right / seen)",
    )
    assert set(found) == {"right"}
    assert [name for name, _ in found["right"].companions] == ["seen"]


def test_metric_objects_updated_and_computed_per_epoch() -> None:
    found = carried(
        "    acc = torchmetrics.Accuracy(task='binary')",
        "            acc(out, y)",
        "        print(acc.compute())",
    )
    assert set(found) == {"acc"} and found["acc"].kind is TotalKind.METRIC
    assert not carried(
        "    acc = torchmetrics.Accuracy(task='binary')",
        "            acc(out, y)",
        "        print(acc.compute())\n        acc.reset()",
    )
    assert not carried(  # handed to a call that may reset it
        "    acc = torchmetrics.Accuracy(task='binary')",
        "            acc(out, y)",
        "        report(acc)",
    )
    assert not carried(  # the functional API keeps no state
        "    acc = torchmetrics.functional.accuracy(out, y)",
        "            acc(out, y)",
        "        print(acc.compute())",
    )


def test_a_total_read_only_inside_the_batch_loop_is_not_reported_per_epoch() -> None:
    assert not carried(
        "    total = 0.0",
        "            total += loss.item()\n            print(total)",
        "        pass",
    )


def test_meters_are_carried_unless_made_or_reset_per_epoch() -> None:
    meter = """
class Meter:
    def __init__(self):
        self.sum = 0.0
        self.n = 0

    def update(self, v, n=1):
        self.sum += v * n
        self.n += n

    def mean(self):
        return self.sum / self.n
"""

    def meters(epoch_top: str) -> dict:
        source = meter + LOOP.format(
            setup="    m = Meter()",
            epoch_top=epoch_top,
            batch="            m.update(loss.item(), x.size(0))",
            report="        print(m.mean())",
        )
        return {c.name: c for c in build(source).carried_totals}

    found = meters("        pass")
    assert set(found) == {"m"} and found["m"].kind is TotalKind.METER
    assert not meters("        m = Meter()")
    assert not meters("        m.reset()")


def test_a_total_over_a_global_step_count_is_a_running_mean_on_purpose() -> None:
    assert not carried(
        "    total = 0.0\n    step = 0",
        "            total += loss.item()\n            step += 1",
        "        print(total / step)",
    )


def test_a_total_that_is_back_propagated_is_a_loss_not_a_report() -> None:
    assert not carried(
        "    total = 0.0",
        "            total = total + criterion(model(x), y)",
        "        total.backward()",
    )


def test_a_list_averaged_whole_per_epoch_is_carried_a_history_is_not() -> None:
    found = carried(
        "    losses = []",
        "            losses.append(loss.item())",
        "        print(np.mean(losses))",
    )
    assert set(found) == {"losses"} and found["losses"].kind is TotalKind.LIST
    assert not carried(
        "    losses = []",
        "            losses.append(loss.item())",
        "        print(losses[-1], np.mean(losses[-10:]))",
    )
    assert not carried(
        "    losses = []",
        "            losses.append(loss.item())",
        "        print(np.mean(losses))\n        losses.clear()",
    )


def test_comparison_methods_count_correct_predictions() -> None:
    found = carried(
        "    right = 0",
        "            right += out.argmax(1).eq(y).sum().item()",
        "        print(right)",
    )
    assert set(found) == {"right"}
