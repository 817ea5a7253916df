"""model/gradients.py: which optimizer a clearing clears, and where gradients come from."""

from __future__ import annotations

from model_helpers import build, scope

from trainlint.model import EventKind
from trainlint.model.loops.gradients import (
    backward_reaches_loop,
    clears,
    is_torch_step,
    local_anchor,
    parameter_sources,
    runs_whenever,
    same_object,
)
from trainlint.model.loops.unseen_code import may_clear_unseen

GAN = """
import itertools
import torch
from torch import nn

netG = nn.Linear(8, 4)
netD = nn.Linear(4, 1)
head = nn.Linear(4, 2)
optimizerG = torch.optim.Adam(netG.parameters())
optimizerD = torch.optim.Adam([{"params": netD.parameters()}, {"params": head.parameters()}])
groups = [p for p in itertools.chain(netG.parameters(), netD.parameters())]
joint = torch.optim.SGD(groups, lr=0.1)
sub = torch.optim.SGD(netG.fc.parameters(), lr=0.1)
alias = optimizerG
ddp = torch.nn.parallel.DistributedDataParallel(netG)

for real in loader:
    netD.zero_grad()
    netG.zero_grad()
    ddp.zero_grad()
    netG.fc.zero_grad()
    optimizerG.zero_grad()
"""


def _events(model):
    return model.iteration(model.loops[0])


def test_parameter_sources_through_groups_chain_and_comprehensions():
    model = build(GAN)
    module = model.module_scope
    assert parameter_sources(model, "optimizerG", module) == {"netG"}
    assert parameter_sources(model, "optimizerD", module) == {"netD", "head"}
    assert parameter_sources(model, "joint", module) == {"netG", "netD"}
    assert parameter_sources(model, "unknown_optimizer", module) is None


def test_model_zero_grad_clears_the_optimizer_its_parameters_built():
    model = build(GAN)
    module = model.module_scope
    zero_d, zero_g, zero_ddp, zero_fc, zero_opt = _events(model)
    assert clears(model, zero_d, "optimizerD", module) is True
    assert clears(model, zero_d, "optimizerG", module) is False
    assert clears(model, zero_g, "optimizerG", module) is True
    assert clears(model, zero_g, "joint", module) is True
    assert clears(model, zero_ddp, "optimizerG", module) is True  # DDP wraps netG
    assert clears(model, zero_g, "sub", module) is True  # a parent clears its submodule
    assert clears(model, zero_fc, "optimizerG", module) is False  # a submodule only
    assert clears(model, zero_opt, "alias", module) is True
    assert clears(model, zero_opt, "optimizerD", module) is False


def test_unknown_optimizers_are_unknown_not_false():
    model = build(
        """
        def train(model, optimizer, loader):
            for batch in loader:
                model.zero_grad()
                optimizer.step()
        """
    )
    train = scope(model, "train")
    zero = model.iteration(model.loops[0])[0]
    assert clears(model, zero, "optimizer", train) is None


def test_same_object_through_aliases_and_loop_variables():
    model = build(
        """
        import torch
        class T:
            def __init__(self, model):
                self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            def run(self, optimizers):
                optimizer = self.optimizer
                for opt in optimizers:
                    opt.zero_grad()
                return optimizer
        """
    )
    run = scope(model, "T.run")
    assert same_object(model, "optimizer", "self.optimizer", run) is True
    assert same_object(model, "opt", "self.optimizer", run) is None


def test_torch_steps_exclude_tensorflow_apply_gradients():
    model = build(
        """
        import torch
        import tensorflow as tf
        optimizer = torch.optim.SGD(params, lr=0.1)
        tf_opt = tf.keras.optimizers.Adam()
        for x in data:
            optimizer.step()
            scaler.step(optimizer)
            tf_opt.apply_gradients(pairs)
        """
    )
    steps = [e for e in _events(model) if e.kind is EventKind.STEP]
    assert [is_torch_step(e) for e in steps] == [True, True, False]


def test_runs_whenever_treats_repeated_tests_as_one():
    model = build(
        """
        for x in data:
            if args.use_optimizer:
                optimizer.zero_grad()
            else:
                model.zero_grad()
            loss.backward()
            if args.use_optimizer:
                optimizer.step()
        """
    )
    zero, model_zero, _backward, step = _events(model)
    assert runs_whenever(zero, step)
    assert not runs_whenever(model_zero, step)
    assert runs_whenever(_backward, step)
    assert not runs_whenever(step, _backward)


def test_local_anchor_is_the_loop_line_leading_to_a_helper():
    model = build(
        """
        def update(o):
            o.zero_grad()
            o.step()

        for x in data:
            loss.backward()
            update(optimizer)
        """
    )
    backward, zero, step = _events(model)
    assert local_anchor(zero, step) is zero.node  # both inside the same helper call
    assert model.module.code_for_node(local_anchor(zero, backward)) == "update(optimizer)"


def test_may_clear_unseen_for_imported_helpers_only():
    model = build(
        """
        from utils import zero_grads, log_metrics
        for x in data:
            zero_grads(optimizer)
            log_metrics(optimizer)
            loss.backward()
            optimizer.step()
        for x in data:
            torch.zeros(3)
            loss.backward()
            optimizer.step()
        """
    )
    first, second = model.loops
    assert may_clear_unseen(model, first, model.iteration(first), "optimizer")
    assert not may_clear_unseen(model, second, model.iteration(second), "optimizer")


def test_backward_reaches_loop_through_function_and_callers():
    model = build(
        """
        import torch

        def step_all(optimizers):
            for opt in optimizers:
                loss = None
                opt.step()

        def train_step(model, optimizers, batch):
            loss = model(batch).mean()
            loss.backward()
            for opt in optimizers:
                opt.step()

        def caller(model, optimizers, batch):
            loss = model(batch).mean()
            loss.backward()
            step_all(optimizers)

        def forgot(model, optimizer, loader):
            for batch in loader:
                loss = model(batch).mean()
                optimizer.step()

        def hook(*_):
            for opt in optimizers:
                loss = 0
                opt.step()

        register(hook)
        """
    )
    loops = {loop.scope.name: loop for loop in model.loops}
    assert backward_reaches_loop(model, loops["step_all"])  # its caller ran backward
    assert backward_reaches_loop(model, loops["train_step"])  # earlier in the function
    assert backward_reaches_loop(model, loops["hook"])  # passed around as a value
    assert not backward_reaches_loop(model, loops["forgot"])


def test_another_optimizers_zero_grad_clears_shared_parameter_groups():
    model = build(
        """
        import itertools
        import torch
        from torch import nn
        G = nn.Linear(8, 4)
        D = nn.Linear(4, 1)
        net = nn.Module()
        opt_g = torch.optim.Adam(G.parameters())
        opt_d = torch.optim.Adam(D.parameters())
        opt_info = torch.optim.Adam(itertools.chain(G.parameters(), D.parameters()))
        opt_all = torch.optim.SGD(net.parameters(), lr=0.1)
        opt_head = torch.optim.SGD(net.head.parameters(), lr=0.1)
        opt_body = torch.optim.SGD(net.body.parameters(), lr=0.1)
        for batch in loader:
            opt_g.zero_grad()
            opt_all.zero_grad()
            opt_info.zero_grad()
            opt_body.zero_grad()
            opt_unknown.zero_grad()
        """
    )
    module = model.module_scope
    zero_g, zero_all, zero_info, zero_body, zero_unknown = _events(model)
    assert clears(model, zero_g, "opt_info", module) is None  # only G's share of it
    assert clears(model, zero_info, "opt_g", module) is True  # G's parameters are in it
    assert clears(model, zero_all, "opt_head", module) is True  # the whole model
    assert clears(model, zero_body, "opt_head", module) is False  # a sibling submodule
    assert clears(model, zero_g, "opt_d", module) is False  # disjoint
    assert clears(model, zero_body, "opt_all", module) is None  # a part of the model
    assert clears(model, zero_unknown, "opt_g", module) is False  # unknown: not shared
