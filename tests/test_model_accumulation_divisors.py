"""Accumulation windows: what a backward is divided by, and windows run once per call.

(Split from test_model_accumulation.py to keep both under the module size limit.)
"""

from __future__ import annotations

import pytest
from model_helpers import build, expr

from trainlint.model import TrainingModel, TrainStep, WindowKind
from trainlint.model.dataflow.lossflow import Reduction, backward_flow
from trainlint.model.dataflow.scaling import (
    backward_scaling,
    divided_on_some_path,
    divides_by_running_counter,
    divides_by_window,
    presumed_mean,
)
from trainlint.model.loops.counters import counts_micro_steps
from trainlint.rule import Severity, load_registry

HEADER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
"""


def only_step(source: str) -> tuple[TrainingModel, TrainStep]:
    model = build(HEADER + source)
    steps = model.window_steps
    assert len(steps) == 1, [model.line_of(s.loop.node) for s in steps]
    return model, steps[0]


def tl105(source: str) -> list[tuple[str, Severity | None]]:
    """TL105's findings on ``source``: (message, severity override)."""
    rule = load_registry()["TL105"]()
    model = build(HEADER + source)
    return [(v.message, v.severity) for v in rule.check(model)]


MODULO_LOOP = """
def train(model, loader, optimizer, k, args):
    criterion = nn.CrossEntropyLoss()
    step = 0
    for i, (x, y) in enumerate(loader):
        step += 1
        micro = i % k + 1
        loss = criterion(model(x), y)
        ({operand}).backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
"""


@pytest.mark.parametrize(
    ("operand", "running"),
    [
        ("loss / (i + 1)", True),
        ("loss / step", True),
        ("loss / float(step)", True),
        ("loss / micro", True),
        ("loss / (i % k + 1)", True),
        ("loss / k", False),
        ("loss / args.accum_iter", False),
        ("loss / 4", False),
    ],
)
def test_running_counter_divisors(operand: str, running: bool) -> None:
    model, step = only_step(MODULO_LOOP.format(operand=operand))
    assert {"i", "step", "micro"} <= step.micro_step_counters()
    flow = backward_flow(model, step.backwards[0], step.loop.scope)
    counters = step.micro_step_counters()
    assert (divides_by_running_counter(flow, counters) is not None) is running
    assert step.accumulation is not None
    assert (divides_by_window(flow, step.accumulation.steps, counters) is None) is running


def test_a_size_computed_from_the_index_is_not_a_counter() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, k, masks):
    for i, (x, y) in enumerate(loader):
        n_tokens = masks[i].sum()
        loss = F.cross_entropy(model(x), y, reduction="sum") / n_tokens
        loss.backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    assert "n_tokens" not in step.micro_step_counters()


@pytest.mark.parametrize(
    ("divisor", "counts"),
    [("i + 1", True), ("1 + i", True), ("max(1, i)", True), ("len(i)", False), ("i * k", False)],
)
def test_counts_micro_steps(divisor: str, counts: bool) -> None:
    assert counts_micro_steps(expr(divisor), frozenset({"i"})) is counts


def test_model_output_index_is_a_presumed_mean() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, k):
    for i, batch in enumerate(loader):
        outputs = model(**batch)
        loss = outputs[0]
        loss.backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    flow = backward_flow(model, step.backwards[0], step.loop.scope)
    assert flow.reduction is Reduction.MEAN and presumed_mean(flow)


def test_a_function_whose_only_loop_is_the_micro_step_loop_is_a_window() -> None:
    model, step = only_step("""
def train_step(model, optimizer, batch, criterion):
    chunks = batch.chunk(4)
    optimizer.zero_grad()
    for micro in chunks:
        loss = criterion(model(micro))
        loss.backward()
    optimizer.step()
""")
    assert step.per_call and model.train_steps == []
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.INNER_LOOP and window.micro_batched
    assert model.text_of(window.steps) == "4"  # through ``chunks = batch.chunk(4)``


def test_a_step_function_called_from_a_loop_is_part_of_that_loop() -> None:
    model = build(
        HEADER
        + """
def train_step(model, optimizer, batch, criterion):
    for micro in batch.chunk(4):
        criterion(model(micro)).backward()
    optimizer.step()
    optimizer.zero_grad()

def fit(model, optimizer, loader, criterion):
    for batch in loader:
        train_step(model, optimizer, batch, criterion)
"""
    )
    assert len(model.train_steps) == 1 and not model.train_steps[0].per_call
    assert model.window_steps == model.train_steps


def test_micro_step_count_of_a_local_sequence_is_its_length() -> None:
    model, step = only_step("""
def train(model, optimizer, loader):
    for batch in loader:
        micro_batches = make_micro_batches(batch)
        for mb in micro_batches:
            model(mb).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
""")
    assert step.accumulation is not None
    assert model.text_of(step.accumulation.steps) == "len(micro_batches)"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("loss = criterion(model(x), y)\n        (loss / step).backward()", "error"),
        ("loss = compute_loss(model, x)\n        loss.backward()", "warning"),
        ("loss = model(**x)[0]\n        loss.backward()", "warning"),
        ("loss = criterion(model(x), y)\n        loss.backward()", "error"),
        ("loss = compute_loss(model, x) / k\n        loss.backward()", None),
        ("loss = F.mse_loss(model(x), y, reduction='sum')\n        loss.backward()", None),
        ("loss = criterion(model(x), y) / k\n        loss.backward()", None),
    ],
)
def test_tl105_confidence(body: str, expected: str | None) -> None:
    found = tl105(f"""
from lib import compute_loss

def train(model, loader, optimizer, k):
    criterion = nn.CrossEntropyLoss()
    step = 0
    for x, y in loader:
        step += 1
        {body}
        if step % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        severity = found[0][1]
        assert (severity is Severity.WARNING) is (expected == "warning")


def test_tl105_running_counter_has_its_own_message() -> None:
    found = tl105("""
def train(model, loader, optimizer, k):
    for i, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y) / (i + 1)
        loss.backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    assert len(found) == 1
    message, severity = found[0]
    assert "running micro-step counter" in message and "unequal weights" in message
    assert severity is None  # the rule's own severity: error


def test_a_division_on_another_branch_or_under_apex_counts() -> None:
    model, step = only_step("""
from apex import amp

def train(model, loader, optimizer, args, engine):
    for i, batch in enumerate(loader):
        loss = compute(model, batch)
        if args.accum > 1:
            loss = loss / args.accum
        if args.apex:
            with amp.scale_loss(loss, optimizer) as scaled_loss:
                scaled_loss.backward()
        elif engine is not None:
            loss = engine.backward(loss)
        else:
            loss.backward()
        if (i + 1) % args.accum == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    by_text = {model.text_of(e.node): e for e in step.backwards}
    assert divided_on_some_path(model, by_text["scaled_loss.backward()"])
    assert divided_on_some_path(model, by_text["loss.backward()"])
    engine = by_text["engine.backward(loss)"]
    assert backward_scaling(model, engine).divides is None  # an unknown engine's own backward


def test_an_undivided_loss_is_not_divided_on_any_path() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, k):
    for i, batch in enumerate(loader):
        loss = compute(model, batch)
        loss = loss.mean()
        loss.backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    assert not divided_on_some_path(model, step.backwards[0])
