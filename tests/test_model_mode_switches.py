"""Mode switches chosen by a helper's argument, collective switches, caller-decided flags."""

from __future__ import annotations

import libcst as cst
from model_helpers import build, expr, scope

from trainlint.model.loops.caller_flags import parameter_flag, runs_whenever_caller_allows
from trainlint.model.loops.event_types import Condition, EventKind
from trainlint.model.loops.mode_switches import (
    UNKNOWN,
    collective_receiver,
    fold,
    literal_arguments,
)
from trainlint.model.loops.modes import Mode

TRAINER = """
import torch
import torch.nn as nn


class Trainer:
    def __init__(self):
        self.net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
        self._models = {"net": self.net}

    def set_model_mode(self, mode="train", names=None):
        for name in names or self._models:
            self._models[name].eval() if mode == "eval" else self._models[name].train()

    def set_all(self, training):
        for m in self._models.values():
            m.train(training)

    def freeze_norms(self):
        for layer in self.net.modules():
            if isinstance(layer, nn.BatchNorm1d):
                layer.eval()

    def by_literal(self, loader):
        self.set_model_mode("eval")
        return [self.net(x) for x in loader]

    def by_default(self, loader):
        self.set_model_mode()
        return [self.net(x) for x in loader]

    def by_keyword_flag(self, loader):
        self.set_all(training=False)
        return [self.net(x) for x in loader]

    def at_run_time(self, loader, mode):
        self.set_model_mode(mode)
        return [self.net(x) for x in loader]
"""


def _switches(model, name):
    events = model.function_events(scope(model, name))
    return [
        (e.kind, e.subject, e.collective)
        for e in events
        if e.kind in (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)
    ]


def test_collective_switch_stands_for_every_model() -> None:
    model = build(TRAINER)
    assert _switches(model, "Trainer.set_all") == [(EventKind.TRAIN_MODE, None, True)]
    # a walk over a module's own layers is not a collection of models: only ``layer``
    assert _switches(model, "Trainer.freeze_norms") == [(EventKind.EVAL_MODE, "layer", False)]


def test_literal_arguments_fold_the_helpers_tests() -> None:
    model = build(TRAINER)
    assert _switches(model, "Trainer.by_literal") == [(EventKind.EVAL_MODE, None, True)]
    assert _switches(model, "Trainer.by_default") == [(EventKind.TRAIN_MODE, None, True)]
    assert _switches(model, "Trainer.by_keyword_flag") == [(EventKind.EVAL_MODE, None, True)]
    # not folded: both branches stay, each under its condition
    events = [
        e
        for e in model.function_events(scope(model, "Trainer.at_run_time"))
        if e.kind in (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)
    ]
    assert [(e.kind, [c.negated for c in e.conditions]) for e in events] == [
        (EventKind.EVAL_MODE, [False]),
        (EventKind.TRAIN_MODE, [True]),
    ]


def _mode_of_first_forward(model, name):
    where = scope(model, name)
    forward = next(e for e in model.function_events(where) if e.kind is EventKind.FORWARD)
    return model.modes.mode_before(where, forward.node, forward.subject)


def test_mode_before_reads_helper_switches() -> None:
    model = build(TRAINER)
    assert _mode_of_first_forward(model, "Trainer.by_literal").mode is Mode.EVAL
    assert _mode_of_first_forward(model, "Trainer.by_default").mode is Mode.TRAIN
    assert _mode_of_first_forward(model, "Trainer.by_keyword_flag").mode is Mode.EVAL
    assert _mode_of_first_forward(model, "Trainer.at_run_time").mode is Mode.EITHER


def test_collective_receivers() -> None:
    source = """
    def f(self, nets, name):
        for m in nets:
            pass
        for layer in self.model.modules():
            pass
        for k, v in [(1, 2)]:
            pass
    """
    model = build(source)
    where = scope(model, "f")
    assert collective_receiver(expr("self._models[name]"), where)
    assert collective_receiver(expr("m"), where)
    assert not collective_receiver(expr("layer"), where)
    assert not collective_receiver(expr("self.model"), where)
    assert not collective_receiver(expr("self.model.modules()[0]"), where)


def test_fold() -> None:
    values = {"mode": "eval", "training": False}
    assert fold(expr('mode == "eval"'), values) is True
    assert fold(expr('mode in ["test", "eval"]'), values) is True
    assert fold(expr('mode != "eval" or training'), values) is False
    assert fold(expr("not training"), values) is True
    assert fold(expr("training and other"), values) is False
    assert fold(expr("other"), values) is UNKNOWN
    assert fold(expr("mode == other"), values) is UNKNOWN
    assert fold(expr("mode < 3"), values) is UNKNOWN


def test_literal_arguments_take_passed_literals_and_defaults() -> None:
    model = build("def helper(a, mode='train', flag=True, other=None):\n    pass\n")
    helper = scope(model, "helper")
    call = cst.parse_expression("helper(x, 'eval', other=y)")
    assert isinstance(call, cst.Call)
    assert literal_arguments(call, helper) == {"mode": "eval", "flag": True}
    starred = cst.parse_expression("helper(*args, **kwargs)")
    assert isinstance(starred, cst.Call)
    assert literal_arguments(starred, helper) == {}


FLAGS = """
def run(net, loader, optimizer, clear=True, cfg=None):
    local = False
    for x, y in loader:
        if clear:
            optimizer.zero_grad()
        if not cfg.keep:
            optimizer.zero_grad()
        if local:
            optimizer.zero_grad()
        net(x).sum().backward()
        optimizer.step()
"""


def test_parameter_flags_are_the_callers_decision() -> None:
    model = build(FLAGS)
    (loop,) = model.loops
    events = model.iteration(loop)
    clears = [e for e in events if e.kind is EventKind.ZERO_GRAD]
    (step,) = [e for e in events if e.kind is EventKind.STEP]
    where = scope(model, "run")
    assert [parameter_flag(e.conditions[0], where) for e in clears] == [True, True, False]
    assert [runs_whenever_caller_allows(e, step) for e in clears] == [True, True, False]
    assert not parameter_flag(Condition(expr("self.flag")), where)


AGENTS = """
import torch


class Known:
    def eval(self):
        return 1.0


def run(agent, policy, buffer, known: Known):
    agent.eval()
    policy.train(buffer, 64)
    agent.train(False)
    agent.train()
    known = Known()
    known.eval()
"""


def test_an_unknown_objects_own_mode_methods_are_presumed_switches() -> None:
    model = build(AGENTS)
    events = [
        (e.kind, e.subject, e.presumed)
        for e in model.modes.scope_events(scope(model, "run"))
        if e.kind in (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)
    ]
    # ``policy.train(buffer, 64)`` is a training routine; ``Known.eval`` is a visible method
    assert events == [
        (EventKind.EVAL_MODE, "agent", True),
        (EventKind.EVAL_MODE, "agent", True),
        (EventKind.TRAIN_MODE, "agent", True),
    ]
    tf1 = build("import tensorflow as tf\n" + AGENTS)  # TF1: ``accuracy.eval()`` is a value
    assert not [e for e in tf1.modes.scope_events(scope(tf1, "run")) if e.presumed]
