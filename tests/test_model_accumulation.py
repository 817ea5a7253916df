"""Accumulation windows: guards, counters, inner micro-step loops, Accelerate, epoch starts."""

from __future__ import annotations

import pytest
from model_helpers import build

from trainlint.model import TrainingModel, TrainStep, WindowKind
from trainlint.model.loops.training import epoch_start, is_window_condition, scales_gradients

HEADER = """
import torch
from accelerate import Accelerator
"""


def only_step(source: str) -> tuple[TrainingModel, TrainStep]:
    model = build(HEADER + source)
    steps = model.train_steps
    assert len(steps) == 1, [model.line_of(s.loop.node) for s in steps]
    return model, steps[0]


def text(model: TrainingModel, node: object) -> str:
    return model.module.code_for_node(node)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("guard", "steps", "counter"),
    [
        ("(i + 1) % k == 0", "k", "i"),
        ("i % k == k - 1", "k", "i"),
        ("(i + 1) % args.accum == 0", "args.accum", "i"),
        ("not (i + 1) % k", "k", "i"),
    ],
)
def test_modulo_guards_on_the_loop_index(guard: str, steps: str, counter: str) -> None:
    model, step = only_step(f"""
def train(model, loader, optimizer, criterion, k, args):
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y) / k
        loss.backward()
        if {guard}:
            optimizer.step()
            optimizer.zero_grad()
""")
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.MODULO
    assert text(model, window.steps) == steps
    assert window.counter == counter
    assert window.optimizers == ("optimizer",)
    assert not window.flushes_last
    assert [text(model, e.node) for e in window.micro_backwards] == ["loss.backward()"]


def test_modulo_after_an_increment_counts_with_the_incremented_name() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, k):
    global_step = 0
    for x, y in loader:
        model(x).mean().backward()
        global_step += 1
        if global_step % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    assert step.accumulation is not None
    assert step.accumulation.kind is WindowKind.MODULO
    assert step.accumulation.counter == "global_step"


def test_last_batch_alternative_flushes_the_partial_window() -> None:
    _, step = only_step("""
def train(model, loader, optimizer, k):
    for i, (x, y) in enumerate(loader):
        model(x).mean().backward()
        if (i + 1) % k == 0 or i + 1 == len(loader):
            optimizer.step()
            optimizer.zero_grad()
""")
    assert step.accumulation is not None and step.accumulation.flushes_last


def test_flag_assigned_from_a_guard_and_early_continue() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, accum_steps):
    last_idx = len(loader) - 1
    for batch_idx, (x, y) in enumerate(loader):
        need_update = batch_idx == last_idx or (batch_idx + 1) % accum_steps == 0
        model(x).mean().backward()
        if not need_update:
            continue
        optimizer.step()
        optimizer.zero_grad()
""")
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.MODULO
    assert text(model, window.steps) == "accum_steps"
    assert window.flushes_last
    clearing = next(e for e in step.events if e.kind.name == "ZERO_GRAD")
    assert any(
        is_window_condition(model, c, clearing.scope, step.events) for c in clearing.conditions
    )


def test_modulo_true_between_boundaries_skips_with_continue() -> None:
    _, step = only_step("""
def train(model, loader, optimizer, k):
    for i, x in enumerate(loader):
        model(x).mean().backward()
        if (i + 1) % k:
            continue
        optimizer.step()
        optimizer.zero_grad()
""")
    assert step.accumulation is not None and step.accumulation.kind is WindowKind.MODULO


def test_counter_compared_and_reset_after_the_step() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, k):
    count = 0
    for x in loader:
        model(x).mean().backward()
        count += 1
        if count == k:
            optimizer.step()
            optimizer.zero_grad()
            count = 0
""")
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.COUNTER
    assert window.counter == "count"
    assert text(model, window.steps) == "k"


@pytest.mark.parametrize(
    ("header", "steps"),
    [
        ("for _ in range(micro_steps):", "micro_steps"),
        ("for micro in batch.chunk(4):", "4"),
    ],
)
def test_inner_micro_step_loop(header: str, steps: str) -> None:
    model, step = only_step(f"""
def train(model, loader, optimizer, micro_steps):
    for batch in loader:
        optimizer.zero_grad()
        {header}
            loss = model(batch).mean() / micro_steps
            loss.backward()
        optimizer.step()
""")
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.INNER_LOOP
    assert text(model, window.steps) == steps
    assert window.micro_batched and not window.whole_epoch
    assert window.inner_loop is not None


def test_step_after_the_batch_loop_is_a_whole_epoch_window() -> None:
    _, step = only_step("""
def train(model, train_loader, optimizer, epochs):
    for epoch in range(epochs):
        optimizer.zero_grad()
        for x, y in train_loader:
            model(x).mean().backward()
        optimizer.step()
""")
    window = step.accumulation
    assert window is not None and window.kind is WindowKind.INNER_LOOP and window.whole_epoch


def test_several_losses_of_one_batch_are_not_micro_batches() -> None:
    _, step = only_step("""
def train(model, loader, optimizer):
    for x in loader:
        optimizer.zero_grad()
        for term in model(x):
            term.backward(retain_graph=True)
        optimizer.step()
""")
    assert step.accumulation is not None and not step.accumulation.micro_batched


def test_accelerate_accumulate_block() -> None:
    _, step = only_step("""
accelerator = Accelerator(gradient_accumulation_steps=4)
for batch in loader:
    with accelerator.accumulate(model):
        loss = model(**batch).loss
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
""")
    assert step.accumulation is not None and step.accumulation.kind is WindowKind.ACCELERATE


@pytest.mark.parametrize(
    "body",
    [
        # a generator trained every n_critic iterations: backward and step share the guard
        """
        opt_d.zero_grad()
        critic(x).mean().backward()
        opt_d.step()
        if i % n_critic == 0:
            opt_g.zero_grad()
            critic(generator(x)).mean().backward()
            opt_g.step()
""",
        # logging every k steps, stepping every iteration
        """
        optimizer.zero_grad()
        model(x).mean().backward()
        optimizer.step()
        if i % log_every == 0:
            print(i)
""",
        # a configuration test, not a window boundary
        """
        optimizer.zero_grad()
        model(x).mean().backward()
        if args.accum_steps >= 1:
            optimizer.step()
""",
    ],
)
def test_not_accumulation(body: str) -> None:
    source = "def train(model, critic, generator, loader, optimizer, opt_d, opt_g, args):\n"
    source += "    for i, x in enumerate(loader):" + body.replace("\n        ", "\n        ")
    _, step = only_step(source)
    assert step.accumulation is None


def test_innermost_loop_through_a_helper() -> None:
    model = build(
        HEADER
        + """
def train_one_epoch(model, loader, optimizer, k):
    for i, x in enumerate(loader):
        model(x).mean().backward()
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()


def main(model, loader, optimizer):
    for epoch in range(10):
        train_one_epoch(model, loader, optimizer, 4)
"""
    )
    assert [s.loop.scope.name for s in model.train_steps] == ["train_one_epoch"]


# ---------------------------------------------------------------------- epoch starts
EPOCH = """
def train(model, loader, optimizer, k, epochs):
    global_step = 0
    for epoch in range(epochs):
        optimizer.zero_grad()
        for i, x in enumerate(loader):
            model(x).mean().backward()
            {increment}
            if {guard}:
                optimizer.step()
                optimizer.zero_grad()
        {after}
"""


@pytest.mark.parametrize(
    ("increment", "guard", "after", "across", "flushed"),
    [
        ("global_step += 1", "global_step % k == 0", "pass", True, False),
        ("global_step += 1", "global_step % k == 0 or i + 1 == len(loader)", "pass", True, True),
        ("global_step += 1", "global_step % k == 0", "optimizer.step()", True, True),
        ("pass", "(i + 1) % k == 0", "pass", False, False),
        ("it = epoch * len(loader) + i", "(it + 1) % k == 0", "pass", True, False),
    ],
)
def test_epoch_start(increment: str, guard: str, after: str, across: bool, flushed: bool) -> None:
    model, step = only_step(EPOCH.format(increment=increment, guard=guard, after=after))
    start = epoch_start(model, step)
    assert start is not None
    assert [text(model, e.node) for e in start.clears] == ["optimizer.zero_grad()"]
    assert start.counter_runs_across is across
    assert start.flushed is flushed


def test_epoch_start_in_a_function_called_per_epoch() -> None:
    model, step = only_step("""
class Trainer:
    def train_epoch(self, loader):
        self.optimizer.zero_grad()
        for x in loader:
            self.model(x).mean().backward()
            self.step += 1
            if self.step % self.accum == 0:
                self.optimizer.step()
                self.optimizer.zero_grad()
""")
    start = epoch_start(model, step)
    assert start is not None and len(start.clears) == 1
    assert start.counter_runs_across and not start.flushed


def test_counter_local_to_the_epoch_function_restarts() -> None:
    model, step = only_step("""
def train_epoch(model, loader, optimizer, k):
    optimizer.zero_grad()
    seen = 0
    for x in loader:
        model(x).mean().backward()
        seen += 1
        if seen % k == 0:
            optimizer.step()
            optimizer.zero_grad()
""")
    start = epoch_start(model, step)
    assert start is not None and not start.counter_runs_across


# ---------------------------------------------------------------------- gradient scaling
@pytest.mark.parametrize(
    "statement",
    [
        "p.grad.data.mul_(1.0 / n)",
        "p.grad.div_(n)",
        "p.grad /= n",
        "p.grad = p.grad / n",
    ],
)
def test_gradients_scaled_in_place(statement: str) -> None:
    model, step = only_step(f"""
def train(model, loader, optimizer, n):
    for batch in loader:
        optimizer.zero_grad()
        for x in batch.chunk(n):
            model(x).mean().backward()
        for p in model.parameters():
            {statement}
        optimizer.step()
""")
    assert scales_gradients(model, step)


def test_gradient_clipping_is_not_scaling() -> None:
    model, step = only_step("""
def train(model, loader, optimizer, n):
    for batch in loader:
        optimizer.zero_grad()
        for x in batch.chunk(n):
            model(x).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
""")
    assert not scales_gradients(model, step)


@pytest.mark.parametrize(
    ("init", "returned", "across"),
    [("seen = 0", "seen", False), ("pass", "seen", True), ("pass", "None", False)],
)
def test_epoch_function_called_from_an_epoch_loop(init: str, returned: str, across: bool) -> None:
    model = build(
        HEADER
        + f"""
def train_epoch(model, loader, optimizer, k, seen=0):
    optimizer.zero_grad()
    {init}
    for x in loader:
        model(x).mean().backward()
        seen += 1
        if seen % k == 0:
            optimizer.step()
            optimizer.zero_grad()
    return {returned}


def main(model, loader, optimizer):
    seen = 0
    for epoch in range(5):
        seen = train_epoch(model, loader, optimizer, 4, seen)
"""
    )
    (step,) = model.train_steps
    start = epoch_start(model, step)
    assert start is not None and len(start.clears) == 1
    assert start.counter_runs_across is across
