"""The loss definition chain: divisions, reductions, token-level sources, Accelerate scaling."""

from __future__ import annotations

import pytest
from model_helpers import build, expr, scope

from trainlint.model import Event, TrainingModel
from trainlint.model.dataflow.lossflow import (
    Flow,
    Reduction,
    backward_flow,
    criterion_reduction,
    expression_flow,
)
from trainlint.model.dataflow.scaling import (
    backward_scaling,
    divides_by_accumulation,
    divides_by_window,
)

HEADER = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from accelerate import Accelerator
import lightning as L
"""


def first_backward(source: str) -> tuple[TrainingModel, Event, Flow]:
    model = build(HEADER + source)
    (step,) = model.train_steps
    event = step.backwards[0]
    return model, event, backward_flow(model, event, step.loop.scope)


def divisors(model: TrainingModel, flow: Flow) -> list[str]:
    return [model.module.code_for_node(d.divisor) for d in flow.divisions]


LOOP = """
criterion = nn.CrossEntropyLoss()
for i, (x, y) in enumerate(loader):
    out = model(x)
    {lines}
    if (i + 1) % k == 0:
        optimizer.step()
        optimizer.zero_grad()
"""


@pytest.mark.parametrize(
    ("lines", "reduction", "divided_by"),
    [
        ("loss = criterion(out, y)\n    loss.backward()", Reduction.MEAN, []),
        ("loss = criterion(out, y)\n    (loss / k).backward()", Reduction.MEAN, ["k"]),
        ("loss = criterion(out, y) / k\n    loss.backward()", Reduction.MEAN, ["k"]),
        ("loss = criterion(out, y)\n    loss /= k\n    loss.backward()", Reduction.MEAN, ["k"]),
        (
            "loss = criterion(out, y)\n    loss = loss / k\n    loss.backward()",
            Reduction.MEAN,
            ["k"],
        ),
        ("loss = criterion(out, y) * (1.0 / k)\n    loss.backward()", Reduction.MEAN, ["k"]),
        ("scale = 1 / k\n    (criterion(out, y) * scale).backward()", Reduction.MEAN, ["k"]),
        ("torch.div(criterion(out, y), k).backward()", Reduction.MEAN, ["k"]),
        ("loss = criterion(out, y)\n    loss.div_(k)\n    loss.backward()", Reduction.MEAN, ["k"]),
        (
            "loss = criterion(out, y)\n    loss.mul_(1 / k)\n    loss.backward()",
            Reduction.MEAN,
            ["k"],
        ),
        ("loss = (criterion(out, y) / k).mean()\n    loss.backward()", Reduction.MEAN, ["k"]),
        ("loss = F.mse_loss(out, y, reduction='sum')\n    loss.backward()", Reduction.SUM, []),
        ("loss = ((out - y) ** 2).mean()\n    loss.backward()", Reduction.MEAN, []),
        ("loss = ((out - y) ** 2).sum()\n    loss.backward()", Reduction.SUM, []),
        ("loss = helper_unknown(out, y)\n    loss.backward()", Reduction.UNKNOWN, []),
        # a torch.distributions log-probability is one value per sample, also times a return
        (
            "d = torch.distributions.Categorical(out)\n    (-d.log_prob(y) * g).backward()",
            Reduction.NONE,
            [],
        ),
        (
            "d = torch.distributions.Normal(out, 1.0)\n    d.log_prob(y).mean().backward()",
            Reduction.MEAN,
            [],
        ),
        ("(-unknown_thing.log_prob(y) * g).backward()", Reduction.UNKNOWN, []),
    ],
)
def test_divisions_and_reductions(lines: str, reduction: Reduction, divided_by: list[str]) -> None:
    model, _, flow = first_backward(LOOP.format(lines=lines))
    assert flow.reduction is reduction
    assert divisors(model, flow) == divided_by


def test_sum_of_terms_is_divided_only_when_every_term_is() -> None:
    model, _, flow = first_backward(
        LOOP.format(lines="loss = criterion(out, y) / k + F.l1_loss(out, y)\n    loss.backward()")
    )
    assert flow.reduction is Reduction.MEAN and divisors(model, flow) == []
    model, _, flow = first_backward(
        LOOP.format(
            lines="loss = (criterion(out, y) + 0.1 * F.l1_loss(out, y)) / k\n    loss.backward()"
        )
    )
    assert divisors(model, flow) == ["k"]


def test_through_helper_returns_and_tuple_unpacking() -> None:
    model, _, flow = first_backward("""
def compute(model, batch, k):
    logits = model(batch["x"])
    loss = F.cross_entropy(logits, batch["y"], ignore_index=-100)
    return loss / k, logits

for i, batch in enumerate(loader):
    loss, logits = compute(model, batch, k)
    loss.backward()
    if (i + 1) % k == 0:
        optimizer.step()
        optimizer.zero_grad()
""")
    assert flow.reduction is Reduction.MEAN
    assert divisors(model, flow) == ["k"]
    (source,) = flow.sources
    assert source.label == "F.cross_entropy" and source.token_level == "ignore_index"


def test_backward_inside_a_helper_follows_the_argument_back() -> None:
    model, event, flow = first_backward("""
def backward_step(value, optimizer, update):
    value.backward()
    if update:
        optimizer.step()
        optimizer.zero_grad()

for i, (x, y) in enumerate(loader):
    loss = F.mse_loss(model(x), y) / accum
    backward_step(loss, optimizer, (i + 1) % accum == 0)
""")
    assert event.scope.name == "backward_step"
    assert flow.reduction is Reduction.MEAN and divisors(model, flow) == ["accum"]


def test_closure_defined_in_the_loop() -> None:
    model, _, flow = first_backward("""
def train(model, loader, optimizer, accum_steps):
    for batch_idx, (x, y) in enumerate(loader):
        need_update = (batch_idx + 1) % accum_steps == 0

        def _forward():
            _loss = F.cross_entropy(model(x), y)
            if accum_steps > 1:
                _loss /= accum_steps
            return _loss

        def _backward(_loss):
            _loss.backward()
            if need_update:
                optimizer.step()

        loss = _forward()
        _backward(loss)
        if need_update:
            optimizer.zero_grad()
""")
    assert flow.reduction is Reduction.MEAN and divisors(model, flow) == ["accum_steps"]


def test_same_file_model_forward_returning_a_loss() -> None:
    model, _, flow = first_backward("""
class Net(nn.Module):
    def forward(self, x, y):
        logits = self.head(x)
        return logits, F.cross_entropy(logits, y, ignore_index=-1)

net = Net()
for it, (x, y) in enumerate(loader):
    logits, loss = net(x, y)
    (loss / micro).backward()
    if it % micro == micro - 1:
        optimizer.step()
        optimizer.zero_grad()
""")
    assert flow.reduction is Reduction.MEAN and divisors(model, flow) == ["micro"]
    assert flow.sources[0].token_level == "ignore_index"


@pytest.mark.parametrize(
    ("lines", "reduction"),
    [
        ("outputs = model(**batch)\n    loss = outputs.loss", Reduction.MEAN),
        ("loss = model(**batch).loss", Reduction.MEAN),
        ("outputs = model(**batch)\n    loss = outputs['loss']", Reduction.MEAN),
        ("outputs = model(**batch, num_items_in_batch=n)\n    loss = outputs.loss", Reduction.SUM),
    ],
)
def test_model_outputs_loss(lines: str, reduction: Reduction) -> None:
    _, _, flow = first_backward(f"""
for i, batch in enumerate(loader):
    {lines}
    loss.backward()
    if (i + 1) % k == 0:
        optimizer.step()
        optimizer.zero_grad()
""")
    assert flow.reduction is reduction
    assert all(source.token_level is None for source in flow.sources)


@pytest.mark.parametrize(
    "lines",
    [
        "per = F.cross_entropy(out, y, reduction='none')\n    loss = (per * m).sum() / m.sum()",
        "per = F.cross_entropy(out, y, reduction='none')\n    loss = per[m.bool()].mean()",
        "per = F.cross_entropy(out, y, reduction='none')\n    loss = per[y != -100].mean()",
    ],
)
def test_masked_means_are_token_level(lines: str) -> None:
    _, _, flow = first_backward(LOOP.format(lines=lines + "\n    (loss / k).backward()"))
    assert flow.reduction is Reduction.MEAN
    assert [s.token_level for s in flow.sources if s.token_level] == ["mask"]


def test_fixed_denominator_is_not_token_level() -> None:
    _, _, flow = first_backward(
        LOOP.format(
            lines="loss = (F.mse_loss(out, y, reduction='none') * m).mean()\n"
            "    (loss / k).backward()"
        )
    )
    assert flow.reduction is Reduction.MEAN
    assert not any(s.token_level for s in flow.sources)


@pytest.mark.parametrize(
    ("constructor", "reduction"),
    [
        ("nn.CrossEntropyLoss()", Reduction.MEAN),
        ("nn.MSELoss(reduction='sum')", Reduction.SUM),
        ("nn.NLLLoss(reduction='none')", Reduction.NONE),
        ("nn.L1Loss(size_average=False)", Reduction.SUM),
        ("nn.BCELoss(reduce=False)", Reduction.NONE),
    ],
)
def test_criterion_reduction(constructor: str, reduction: Reduction) -> None:
    model = build(HEADER + f"criterion = {constructor}\n")
    value = model.value_of(expr("criterion"), scope(model, "<module>"))
    assert criterion_reduction(value) is reduction


def test_expression_flow_respects_order() -> None:
    model = build(HEADER + "loss = F.l1_loss(a, b, reduction='sum')\nloss = F.l1_loss(a, b)\n")
    module = scope(model, "<module>")
    assert expression_flow(model, expr("loss"), module).reduction is Reduction.MEAN


# ---------------------------------------------------------------------- scaling
ACCELERATE = """
accelerator = {constructor}
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
for step, batch in enumerate(loader):
    {context}
        loss = model(**batch).loss / accum
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
"""


@pytest.mark.parametrize(
    ("constructor", "context", "divides"),
    [
        ("Accelerator(gradient_accumulation_steps=accum)", "if True:", True),
        ("Accelerator(gradient_accumulation_plugin=plugin)", "if True:", True),
        ("Accelerator(mixed_precision='fp16')", "if True:", False),
        ("Accelerator(gradient_accumulation_steps=1)", "if True:", False),
        ("Accelerator(**kwargs)", "if True:", None),
        ("Accelerator(**kwargs)", "with accelerator.accumulate(model):", True),
        ("L.Fabric(devices=2)", "if True:", False),
    ],
)
def test_backward_scaling(constructor: str, context: str, divides: bool | None) -> None:
    model = build(HEADER + ACCELERATE.format(constructor=constructor, context=context))
    (step,) = model.train_steps
    scaling = backward_scaling(model, step.backwards[0])
    assert scaling.divides is divides


def test_backward_scaling_of_plain_and_scaler_backwards() -> None:
    model, event, _ = first_backward(
        LOOP.format(lines="scaler.scale(criterion(out, y)).backward()")
    )
    assert backward_scaling(model, event).divides is False


def test_divides_by_window_and_by_accumulation() -> None:
    model, _, flow = first_backward(LOOP.format(lines="(criterion(out, y) / 2).backward()"))
    assert divides_by_window(flow, expr("k")) is None  # ``/ 2``: an average of two losses
    assert divides_by_window(flow, expr("2")) is not None
    model, _, flow = first_backward(LOOP.format(lines="(criterion(out, y) / 8).backward()"))
    assert divides_by_window(flow, expr("k")) is not None
    assert divides_by_window(flow, expr("4")) is None
    model, _, flow = first_backward(
        LOOP.format(lines="(criterion(out, y) / args.accum_iter).backward()")
    )
    assert divides_by_accumulation(flow, None) is not None
    model, _, flow = first_backward(LOOP.format(lines="(criterion(out, y) / n_gpu).backward()"))
    assert divides_by_accumulation(flow, None) is None
    assert divides_by_accumulation(flow, expr("n_gpu")) is not None
