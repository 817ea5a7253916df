"""The ordered events of one loop iteration (model/events.py), independent of any rule."""

from __future__ import annotations

from model_helpers import build

from trainlint.model import EventKind, TrainingModel

K = EventKind


def summary(model: TrainingModel, loop_index: int = -1) -> list[tuple[str, str | None]]:
    """``(kind, subject)`` of each event of a loop (by default the innermost, last one)."""
    loop = model.loops[loop_index]
    return [(e.kind.value, e.subject) for e in model.iteration(loop)]


def kinds(model: TrainingModel, loop_index: int = -1) -> list[EventKind]:
    return [e.kind for e in model.iteration(model.loops[loop_index])]


def line(model: TrainingModel, event) -> int:
    return model.line_of(event.node)


def test_direct_code_in_source_order():
    model = build(
        """
        import torch
        model = torch.nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        criterion = torch.nn.CrossEntropyLoss()
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            loss = criterion(out, y)
            loss.backward()
            optimizer.step()
        """
    )
    assert summary(model) == [
        ("zero_grad", "optimizer"),
        ("forward", "model"),
        ("backward", None),
        ("step", "optimizer"),
    ]
    backward = model.iteration(model.loops[0])[2]
    assert model.module.code_for_node(backward.operand) == "loss"
    assert all(not e.conditions and not e.via for e in model.iteration(model.loops[0]))


def test_nested_loops_are_tagged_and_innermost_train_step_kept():
    model = build(
        """
        import torch
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.Adam(model.parameters())
        for epoch in range(10):
            model.train()
            for x, y in loader:
                opt.zero_grad()
                model(x).sum().backward()
                opt.step()
        """
    )
    outer, inner = model.loops
    events = model.iteration(outer)
    assert [e.kind for e in events] == [K.TRAIN_MODE, K.ZERO_GRAD, K.FORWARD, K.BACKWARD, K.STEP]
    assert events[0].loops == ()
    assert all(e.loops == (inner,) for e in events[1:])
    assert [t.loop for t in model.train_steps] == [inner]


def test_helpers_inlined_two_calls_deep_with_parameter_renaming():
    model = build(
        """
        import torch
        net = torch.nn.Linear(4, 2)
        adam = torch.optim.Adam(net.parameters())

        def clear(o):
            o.zero_grad()

        def update(optim, value):
            value.backward()
            optim.step()
            clear(optim)

        for batch in loader:
            loss = net(batch).mean()
            update(adam, loss)
        """
    )
    events = model.iteration(model.loops[0])
    assert [(e.kind, e.subject) for e in events] == [
        (K.FORWARD, "net"),
        (K.BACKWARD, None),
        (K.STEP, "adam"),
        (K.ZERO_GRAD, "adam"),
    ]
    update_call = events[1].via[0]
    assert model.module.code_for_node(update_call) == "update(adam, loss)"
    assert len(events[3].via) == 2  # update(...) then clear(optim)
    assert events[3].scope.name == "clear"


def test_self_step_method_reaches_attributes():
    model = build(
        """
        import torch

        class Trainer:
            def __init__(self, model):
                self.model = model
                self.optimizer = torch.optim.AdamW(model.parameters())

            def _step(self, batch):
                self.optimizer.zero_grad()
                loss = self.model(batch).mean()
                loss.backward()
                self.optimizer.step()

            def fit(self, loader):
                for batch in loader:
                    self._step(batch)
        """
    )
    assert summary(model) == [
        ("zero_grad", "self.optimizer"),
        ("forward", "self.model"),
        ("backward", None),
        ("step", "self.optimizer"),
    ]
    assert len(model.train_steps) == 1


def test_gan_with_two_optimizers():
    model = build(
        """
        import torch
        from torch import nn
        netG = nn.Linear(8, 4)
        netD = nn.Linear(4, 1)
        optimizerG = torch.optim.Adam(netG.parameters())
        optimizerD = torch.optim.Adam(netD.parameters())
        for real in loader:
            netD.zero_grad()
            errD = netD(real).mean() - netD(netG(noise()).detach()).mean()
            errD.backward()
            optimizerD.step()
            netG.zero_grad()
            errG = -netD(netG(noise())).mean()
            errG.backward()
            optimizerG.step()
        """
    )
    events = model.iteration(model.loops[0])
    clears = [(e.kind, e.subject) for e in events if e.kind is K.MODEL_ZERO_GRAD]
    assert clears == [(K.MODEL_ZERO_GRAD, "netD"), (K.MODEL_ZERO_GRAD, "netG")]
    (train,) = model.train_steps
    assert train.optimizers() == ["optimizerD", "optimizerG"]
    assert len(train.backwards) == 2


def test_amp_scaler_step_and_scaled_backward():
    model = build(
        """
        import torch
        scaler = torch.cuda.amp.GradScaler()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in loader:
            optimizer.zero_grad()
            with torch.autocast("cuda"):
                loss = model(x).mean()
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
        """
    )
    events = model.iteration(model.loops[0])
    backward = next(e for e in events if e.kind is K.BACKWARD)
    assert backward.scaled_by == "scaler"
    assert model.module.code_for_node(backward.operand) == "loss"
    step = next(e for e in events if e.kind is K.STEP)
    assert (step.subject, step.scaled_by) == ("optimizer", "scaler")
    assert [e.kind for e in events][-3:] == [K.UNSCALE, K.STEP, K.SCALER_UPDATE]
    assert "autocast" in next(e for e in events if e.kind is K.FORWARD).contexts


def test_closure_step_is_marked():
    model = build(
        """
        import torch
        optimizer = torch.optim.LBFGS(model.parameters())
        for i in range(20):
            def closure():
                optimizer.zero_grad()
                loss = model(x).sum()
                loss.backward()
                return loss
            optimizer.step(closure)
        """
    )
    events = model.iteration(model.loops[0])
    assert [(e.kind, e.closure) for e in events] == [(K.STEP, True)]
    assert model.train_steps == []  # the closure's backward is not part of the iteration


def test_deepspeed_engine_calls():
    model = build(
        """
        import deepspeed
        engine, optimizer, _, _ = deepspeed.initialize(model=net, model_parameters=params)
        for batch in loader:
            loss = engine(batch)
            engine.backward(loss)
            engine.step()
        """
    )
    events = model.iteration(model.loops[0])
    backward = next(e for e in events if e.kind is K.BACKWARD)
    assert backward.managed
    assert K.ENGINE_STEP in [e.kind for e in events]
    assert K.STEP not in [e.kind for e in events]


def test_clearing_forms():
    model = build(
        """
        import torch
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in loader:
            optimizer.zero_grad(set_to_none=True)
            model.zero_grad()
            for p in model.parameters():
                p.grad = None
            for p in model.parameters():
                p.grad.zero_()
            for p in model.parameters():
                p.grad.data.zero_()
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
        """
    )
    assert kinds(model, 0) == [
        K.ZERO_GRAD,
        K.MODEL_ZERO_GRAD,
        K.GRAD_CLEAR,
        K.GRAD_CLEAR,
        K.GRAD_CLEAR,
        K.GRAD,
    ]


def test_conditions_of_guarded_events():
    model = build(
        """
        import torch
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for i, x in enumerate(loader):
            loss = model(x).mean() / 4
            loss.backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
            else:
                log(i)
        """
    )
    events = model.iteration(model.loops[0])
    step = next(e for e in events if e.kind is K.STEP)
    zero = next(e for e in events if e.kind is K.ZERO_GRAD)
    backward = next(e for e in events if e.kind is K.BACKWARD)
    assert not backward.guarded
    assert step.guarded and step.conditions == zero.conditions
    assert not step.conditions[0].negated
    (train,) = model.train_steps
    assert train.accumulation is not None


def test_lightning_training_step_is_managed():
    model = build(
        """
        import lightning as L
        import torch

        class LitModel(L.LightningModule):
            def training_step(self, batch, batch_idx):
                for chunk in batch:
                    loss = self.net(chunk).mean()
                    loss.backward()
                    self.inner_opt.step()
                return loss

        class Manual(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.automatic_optimization = False

            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(self.net(batch).mean())
                opt.step()
        """
    )
    auto = next(s for s in model.scopes if s.name == "LitModel.training_step")
    manual = next(s for s in model.scopes if s.name == "Manual.training_step")
    assert model.is_framework_managed(auto)
    assert not model.is_framework_managed(manual)
    assert model.train_steps == []
    events = model.function_events(manual)
    assert [e.kind for e in events] == [K.ZERO_GRAD, K.FORWARD, K.BACKWARD, K.STEP]
    assert events[2].managed


def test_hf_trainer_subclass_is_managed():
    model = build(
        """
        import torch
        from transformers import Trainer

        class MyTrainer(Trainer):
            def training_step(self, model, inputs, num_items_in_batch=None):
                for micro in split(inputs):
                    loss = model(**micro).loss
                    self.accelerator.backward(loss)
                    self.extra_optimizer.step()
                return loss.detach()
        """
    )
    method = next(s for s in model.scopes if s.name == "MyTrainer.training_step")
    assert model.is_framework_managed(method)
    assert model.train_steps == []


def test_tensorflow_tape_and_apply_gradients():
    model = build(
        """
        import tensorflow as tf
        optimizer = tf.keras.optimizers.Adam()
        for x, y in dataset:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
        """
    )
    events = model.iteration(model.loops[0])
    assert [(e.kind, e.subject) for e in events if e.kind in (K.BACKWARD, K.STEP)] == [
        (K.BACKWARD, "tape"),
        (K.STEP, "optimizer"),
    ]
    assert len(model.train_steps) == 1


def test_helper_parameter_roles_come_from_the_call_site():
    model = build(
        """
        import torch
        sgd = torch.optim.SGD(params, lr=0.1)

        def advance(o):
            o.step()
            o.zero_grad()

        def phase(x, value):
            value.backward()
            advance(x)

        for batch in loader:
            phase(sgd, compute(batch))
        """
    )
    assert [(e.kind, e.subject) for e in model.iteration(model.loops[0])] == [
        (K.BACKWARD, None),
        (K.STEP, "sgd"),
        (K.ZERO_GRAD, "sgd"),
    ]
    advance = next(s for s in model.scopes if s.name == "advance")
    # on its own, ``o`` could be anything: no step, and zero_grad of an unknown object
    assert [e.kind for e in model.function_events(advance)] == [K.MODEL_ZERO_GRAD]


def test_environment_step_is_not_an_optimizer_step():
    model = build(
        """
        def rollout(env, policy, steps):
            for _ in range(steps):
                action = policy(obs)
                obs, reward, done, info = env.step(action)
        """
    )
    assert K.STEP not in kinds(model)


def test_one_line_suites_hold_events():
    """``with amp.scale_loss(l, o) as s: s.backward()`` and ``if c: o.zero_grad()`` on one
    line: the suite's statements are events like an indented block's."""
    model = build(
        """
        import torch
        from apex import amp

        def fit(net, loader, opt, flag):
            for x in loader:
                if flag: opt.zero_grad()
                loss = net(x).sum()
                with amp.scale_loss(loss, opt) as scaled: scaled.backward()
                opt.step()
        """
    )
    (loop,) = model.loops
    events = model.iteration(loop)
    assert [(e.kind.value, e.subject) for e in events] == [
        ("zero_grad", "opt"),
        ("forward", "net"),
        ("backward", None),
        ("step", "opt"),
    ]
    assert events[0].conditions and "apex_scale" in events[2].contexts


def test_a_model_class_given_as_a_parameter_is_built_not_run():
    from model_helpers import build as build_plain

    model = build_plain(
        """
        import torch
        import torch.nn as nn

        def evaluate(envs, Model: nn.Module, path):
            net = Model(envs).to("cpu")
            net.load_state_dict(torch.load(path))
            net.eval()
            return net(envs.obs)
        """
    )
    scope = next(s for s in model.scopes if s.name == "evaluate")
    forwards = [e for e in model.function_events(scope) if e.kind.value == "forward"]
    # ``Model(envs)`` builds the module (its result gets ``load_state_dict``); ``net(...)`` runs it
    assert [model.text_of(e.node) for e in forwards] == ["net(envs.obs)"]
