"""Schedulers and grad scalers in the model (:mod:`trainlint.model.loops.schedules`)."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from trainlint.model import Event, EventKind, TrainingModel
from trainlint.model.loops.event_plumbing import exclusive, loop_name
from trainlint.model.loops.scalers import scaled_for, scaler_is_live, scaler_name, scaling_of
from trainlint.model.loops.schedules import (
    ScheduleKind,
    batch_loss_names,
    is_batch_loop,
    loss_root,
    scheduler_of,
    unstepped_schedulers,
)


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source(textwrap.dedent(source))


def events_of(model: TrainingModel, kind: EventKind) -> list[Event]:
    """Every event of ``kind`` in any loop, once per anchor node, in source order."""
    found: dict[int, Event] = {}
    for loop in model.loops:
        for event in model.iteration(loop):
            if event.kind is kind:
                found.setdefault(id(event.node), event)
    return sorted(found.values(), key=lambda e: model.line_of(e.node))


LOOP = """
import torch
from torch.optim import lr_scheduler

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = {constructor}
for x, y in loader:
    optimizer.zero_grad()
    criterion(model(x), y).backward()
    optimizer.step()
    scheduler.step()
"""


@pytest.mark.parametrize(
    ("constructor", "kind", "name"),
    [
        ("lr_scheduler.StepLR(optimizer, step_size=30)", ScheduleKind.EPOCH, "StepLR"),
        ("lr_scheduler.StepLR(optimizer, 30 * len(loader))", ScheduleKind.PER_BATCH, "StepLR"),
        ("lr_scheduler.StepLR(optimizer, step_size=20000)", ScheduleKind.PER_BATCH, "StepLR"),
        ("lr_scheduler.MultiStepLR(optimizer, [30, 60, 90])", ScheduleKind.EPOCH, "MultiStepLR"),
        (
            "lr_scheduler.MultiStepLR(optimizer, milestones=[60000, 80000])",
            ScheduleKind.PER_BATCH,
            "MultiStepLR",
        ),
        (
            "lr_scheduler.MultiStepLR(optimizer, milestones=args.decay_iters)",
            ScheduleKind.PER_BATCH,
            "MultiStepLR",
        ),
        ("lr_scheduler.ExponentialLR(optimizer, gamma=0.95)", ScheduleKind.EPOCH, "ExponentialLR"),
        ("lr_scheduler.ExponentialLR(optimizer, 0.9999)", ScheduleKind.PER_BATCH, "ExponentialLR"),
        (
            "lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)",
            ScheduleKind.EPOCH,
            "CosineAnnealingLR",
        ),
        (
            "lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)",
            ScheduleKind.PER_BATCH,
            "CosineAnnealingLR",
        ),
        ("lr_scheduler.CosineAnnealingLR(optimizer, 200)", ScheduleKind.OTHER, "CosineAnnealingLR"),
        (
            "lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs - args.warmup_epochs)",
            ScheduleKind.EPOCH,
            "CosineAnnealingLR",
        ),
        (
            "lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * epochs)",
            ScheduleKind.PER_BATCH,
            "CosineAnnealingLR",
        ),
        ("lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=n)", ScheduleKind.PER_BATCH, ""),
        ("lr_scheduler.CyclicLR(optimizer, 1e-3, 0.1)", ScheduleKind.PER_BATCH, "CyclicLR"),
        ("lr_scheduler.ReduceLROnPlateau(optimizer)", ScheduleKind.PLATEAU, "ReduceLROnPlateau"),
        ("lr_scheduler.LambdaLR(optimizer, lambda e: 0.9**e)", ScheduleKind.OTHER, "LambdaLR"),
    ],
)
def test_scheduler_kind_from_constructor(constructor: str, kind: ScheduleKind, name: str) -> None:
    model = build(LOOP.format(constructor=constructor))
    (event,) = events_of(model, EventKind.SCHEDULER_STEP)
    info = scheduler_of(model, event)
    assert info.kind is kind
    assert info.name == (name or "OneCycleLR")
    assert info.optimizer == "optimizer"
    assert isinstance(info.call, cst.Call)


def test_transformers_schedules_are_per_batch() -> None:
    model = build(
        """
        from transformers import get_linear_schedule_with_warmup
        sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=10, num_training_steps=100)
        for batch in loader:
            model(**batch).loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
        """
    )
    (event,) = events_of(model, EventKind.SCHEDULER_STEP)
    assert scheduler_of(model, event).kind is ScheduleKind.PER_BATCH


def test_custom_and_third_party_schedulers() -> None:
    model = build(
        """
        from timm.scheduler import create_scheduler_v2, CosineLRScheduler

        class Warmup:
            def step(self):
                pass

        scheduler = Warmup()
        lr_scheduler, epochs = create_scheduler_v2(opt)
        cos_scheduler = CosineLRScheduler(opt, t_initial=100)
        for x in loader:
            loss(x).backward()
            opt.step()
            scheduler.step()
            lr_scheduler.step()
            cos_scheduler.step()
        """
    )
    events = events_of(model, EventKind.SCHEDULER_STEP)
    kinds = [scheduler_of(model, e).kind for e in events]
    # ``Warmup`` is a plain class: ``scheduler.step()`` runs its method, it steps no scheduler
    assert [e.subject for e in events] == ["lr_scheduler", "cos_scheduler"]
    assert kinds == [ScheduleKind.CUSTOM] * 2


def test_helper_parameter_resolves_through_callers() -> None:
    model = build(
        """
        import torch

        def train(model, loader, optimizer, scheduler):
            for x, y in loader:
                optimizer.zero_grad()
                model(x).sum().backward()
                optimizer.step()
                scheduler.step()

        def orphan(scheduler):
            for _ in range(3):
                scheduler.step()

        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, 10)
        train(net, data_loader, opt, scheduler=sched)
        """
    )
    helper, orphan = events_of(model, EventKind.SCHEDULER_STEP)
    assert scheduler_of(model, helper).kind is ScheduleKind.EPOCH
    assert scheduler_of(model, orphan).kind is ScheduleKind.UNKNOWN


# ---------------------------------------------------------------------- scalers
def test_scaler_enabled_false_is_not_live() -> None:
    model = build(
        """
        import torch
        on = torch.cuda.amp.GradScaler()
        off = torch.amp.GradScaler("cuda", enabled=False)
        maybe = torch.amp.GradScaler(enabled=args.amp)
        for x in loader:
            on.scale(f(x)).backward()
            off.scale(f(x)).backward()
            maybe.scale(f(x)).backward()
            unknown_scaler.scale(f(x)).backward()
            opt.step()
        """
    )
    live = [scaler_is_live(model, e) for e in events_of(model, EventKind.BACKWARD)]
    assert live == [True, False, True, True]


def test_scaling_through_a_variable_and_not_through_accelerate() -> None:
    model = build(
        """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        for x in loader:
            loss = f(x)
            scaled = scaler.scale(loss)
            scaled.backward()
            loss.backward()
            accelerator.backward(loss)
            opt.step()
        """
    )
    through_variable, plain, managed = events_of(model, EventKind.BACKWARD)
    assert dotted_text(scaling_of(model, through_variable)) == "scaler"
    assert scaling_of(model, plain) is None
    assert scaling_of(model, managed) is None


def test_scaler_name_follows_helper_arguments() -> None:
    model = build(
        """
        import torch

        def amp_backward(loss, scaler):
            scaler.scale(loss).backward()

        grad_scaler = torch.cuda.amp.GradScaler()
        for x in loader:
            amp_backward(f(x), grad_scaler)
            grad_scaler.step(opt)
            grad_scaler.update()
        """
    )
    loop = model.loops[0]
    (backward,) = [e for e in model.iteration(loop) if e.kind is EventKind.BACKWARD]
    assert backward.scaled_by == "scaler"
    assert loop_name(model, backward, loop.scope, backward.scaled_by) == "grad_scaler"
    assert scaler_name(model, backward, loop.scope) == "grad_scaler"
    assert scaler_is_live(model, backward)


def dotted_text(node: cst.CSTNode | None) -> str | None:
    return cst.Module([]).code_for_node(node) if node is not None else None


# ---------------------------------------------------------------------- branches
def test_if_else_branches_are_exclusive() -> None:
    model = build(
        """
        for x in loader:
            if use_amp:
                scaler.scale(f(x)).backward()
            else:
                f(x).backward()
            optimizer.step()
        """
    )
    scaled, plain = events_of(model, EventKind.BACKWARD)
    (step,) = events_of(model, EventKind.STEP)
    assert exclusive(scaled, plain)
    assert not exclusive(scaled, step)
    assert not exclusive(plain, step)


# ---------------------------------------------------------------------- never stepped
def test_unstepped_schedulers() -> None:
    model = build(
        """
        import torch
        from torch.optim.lr_scheduler import StepLR, OneCycleLR, ExponentialLR, LambdaLR

        class Custom:
            pass

        stepped = StepLR(opt, 10)
        only_read = ExponentialLR(opt, 0.9)
        passed_on = OneCycleLR(opt, 0.1, total_steps=100)
        prepared = LambdaLR(opt, lambda e: 1.0)
        custom_scheduler = Custom()
        model, opt, prepared = accelerator.prepare(model, opt, prepared)

        def build():
            returned = StepLR(opt, 5)
            return returned

        for epoch in range(3):
            run(passed_on)
            stepped.step()
            print(only_read.get_last_lr())
            prepared.step()
        """
    )
    found = [target for _, target in unstepped_schedulers(model)]
    assert found == ["only_read"]


# ---------------------------------------------------------------------- train steps
def test_batch_loops() -> None:
    model = build(
        """
        def nested(loader, epochs):
            for epoch in range(epochs):
                for x, y in loader:
                    opt.zero_grad()
                    f(x, y).backward()
                    opt.step()

        def iterations(max_iters):
            for it in range(max_iters):
                opt.zero_grad()
                f(it).backward()
                opt.step()

        def helper_loop(train_loader):
            for batch in train_loader:
                opt.zero_grad()
                f(batch).backward()
                opt.step()

        def whole_epoch(loader, epochs):
            for epoch in range(epochs):
                opt.zero_grad()
                for x in loader:
                    f(x).backward()
                opt.step()
        """
    )
    verdicts = {step.loop.scope.name: is_batch_loop(model, step) for step in model.train_steps}
    assert verdicts == {
        "nested": True,
        "iterations": False,
        "helper_loop": True,
        "whole_epoch": False,
    }


def test_batch_loss_names_and_roots() -> None:
    model = build(
        """
        for x, y in loader:
            opt.zero_grad()
            loss = criterion(model(x), y)
            (loss / 2).backward()
            batch_loss = loss.item()
            running += loss.item()
            opt.step()
        """
    )
    (step,) = model.train_steps
    assert batch_loss_names(model, step) == {"loss", "batch_loss"}


@pytest.mark.parametrize(
    ("expression", "root"),
    [
        ("loss", "loss"),
        ("loss.item()", "loss"),
        ("float(loss)", "loss"),
        ("loss.detach().cpu()", "loss"),
        ("loss.data", "loss"),
        ("outputs.loss", "outputs.loss"),
        ("val_losses[-1]", None),
        ("evaluate(model)", None),
    ],
)
def test_loss_root(expression: str, root: str | None) -> None:
    assert loss_root(cst.parse_expression(expression)) == root


def test_scaling_through_a_conditional_variable_needs_shared_conditions() -> None:
    model = build(
        """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        for x in loader:
            loss = f(x)
            if amp:
                loss = scaler.scale(loss)
            loss.backward()
            optimizer.step()
            if amp:
                scaler.step(optimizer)
            else:
                optimizer.step()
        """
    )
    (backward,) = events_of(model, EventKind.BACKWARD)
    unconditional, scaled_step, fallback = events_of(model, EventKind.STEP)
    assert scaled_for(model, backward, unconditional)
    assert scaled_for(model, backward, scaled_step) is False
    assert scaled_for(model, backward, fallback) is False


def test_attribute_schedulers_of_classes_with_foreign_bases_are_not_judged() -> None:
    model = build(
        """
        import torch
        from trainers import BaseTrainer

        class Local(torch.nn.Module):
            def __init__(self, opt):
                self.sched = torch.optim.lr_scheduler.StepLR(opt, 10)

        class Derived(BaseTrainer):
            def __init__(self, opt):
                self.other_sched = torch.optim.lr_scheduler.StepLR(opt, 10)
        """
    )
    assert [target for _, target in unstepped_schedulers(model)] == ["self.sched"]


def test_a_name_bound_to_schedulers_of_different_kinds_has_no_fixed_cadence() -> None:
    model = build(
        """
        import torch
        from torch.optim.lr_scheduler import OneCycleLR, StepLR

        class Trainer:
            def __init__(self, opt, cfg):
                if cfg.schedule == "step":
                    self.scheduler = StepLR(opt, 30)
                else:
                    self.scheduler = OneCycleLR(opt, 0.1, total_steps=cfg.steps)

            def fit(self, loader):
                for x in loader:
                    loss(x).backward()
                    self.opt.step()
                    self.scheduler.step()
        """
    )
    (event,) = events_of(model, EventKind.SCHEDULER_STEP)
    assert scheduler_of(model, event).kind is ScheduleKind.OTHER


def test_a_project_scheduler_class_in_another_branch_leaves_no_fixed_cadence() -> None:
    model = build(
        """
        import torch
        import schedules

        def fit(net, opt, loader, cfg):
            if cfg.policy == "poly":
                sched = schedules.PolyLR(opt, cfg.total_iters)
            else:
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size)
            for x in loader:
                net(x).sum().backward()
                opt.step()
                sched.step()
        """
    )
    (event,) = events_of(model, EventKind.SCHEDULER_STEP)
    assert scheduler_of(model, event).kind is ScheduleKind.OTHER
