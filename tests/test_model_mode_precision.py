"""Forms of real code the mode analysis reads: wrappers kept in eval, BatchNorm statistics
refreshed on purpose, snapshots, helpers that each start with ``.train()``, demos run before
training, models whose mode changes nothing."""

from __future__ import annotations

from model_helpers import build, scope

from trainlint.model.loops.event_types import EventKind
from trainlint.model.loops.modes import Mode
from trainlint.model.loops.regions import RegionKind


def _first_forward_mode(model, region):
    first = region.forwards[0]
    return model.modes.mode_before(region.scope, first.node, first.subject)


WRAPPER = """
import torch


class Scorer:
    def __init__(self, net):
        self._net = net
        self._net.eval()

    def predict(self, loader):
        return [self._net(x) for x in loader]
"""


def test_constructor_keeps_a_wrapped_model_in_eval() -> None:
    model = build(WRAPPER)
    (region,) = model.eval_regions
    state = _first_forward_mode(model, region)
    assert state.mode is Mode.EVAL
    assert state.switch is not None and model.text_of(state.switch.node) == "self._net.eval()"
    trained = build(WRAPPER + "\n    def fit(self):\n        self._net.train()\n")
    (region,) = [r for r in trained.eval_regions if r.scope.short_name == "predict"]
    assert _first_forward_mode(trained, region).mode is Mode.UNKNOWN


REFRESH = """
import torch


def fit(net, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    with torch.no_grad():
        net.train()
        for x, _ in loader:
            net(x)


def helper_switch(net):
    net.train()


def fit_helper(net, loader, opt):
    for x, y in loader:
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    with torch.no_grad():
        helper_switch(net)
        for x, _ in loader:
            net(x)
"""


def test_train_mode_written_before_no_grad_forwards_recalibrates() -> None:
    model = build(REFRESH)
    found = {}
    for region in model.eval_regions:
        assert region.kind is RegionKind.AFTER_TRAINING
        state = _first_forward_mode(model, region)
        assert state.mode is Mode.TRAIN
        found[region.scope.name] = model.modes.recalibrates(region, region.forwards[0], state)
    assert found == {"fit": True, "fit_helper": False}


RESTORING = """
import copy
import torch
import torch.nn as nn


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


class Dropping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2))

    def forward(self, x):
        return self.fc(x)


def snapshots(model, loader, opt):
    model.train()
    for cycle in range(3):
        for x, y in loader:
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
        snap = copy.deepcopy(model)
        snap.eval()


def warm(model, loader, opt):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()


def cool(model, loader, opt):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        (2 * model(x).sum()).backward()
        opt.step()


def branches(kind, model, loader, opt):
    for epoch in range(3):
        if kind == "warm":
            warm(model, loader, opt)
        elif kind == "cool":
            cool(model, loader, opt)
        model.eval()


def never_back(loader):
    plain, dropping = Plain(), Dropping()
    opt = torch.optim.SGD([*plain.parameters(), *dropping.parameters()], lr=0.1)
    plain.train()
    dropping.train()
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            plain(x).sum().backward()
            opt.step()
        plain.eval()
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            dropping(x).sum().backward()
            opt.step()
        dropping.eval()
"""


def test_restoring_skips_snapshots_and_branches_that_each_train_first() -> None:
    model = build(RESTORING)
    found = {
        (item.switch.scope.name, model.text_of(item.switch.node))
        for item in model.restoring.unrestored_switches()
    }
    assert found == {("never_back", "plain.eval()"), ("never_back", "dropping.eval()")}


def test_layers_switched_tells_when_eval_mode_changes_nothing() -> None:
    model = build(RESTORING)
    restoring = model.restoring
    free = {
        model.text_of(item.switch.node): restoring.layers_switched(item).known_free
        for item in restoring.unrestored_switches()
    }
    assert free == {"plain.eval()": True, "dropping.eval()": False}


DEMO = """
import torch
import torch.nn as nn

net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1))


def test():
    print(net(torch.zeros(1, 4)).shape)


def test_steps():
    fresh = nn.GRU(4, 4)
    h = torch.zeros(1, 1, 4)
    for t in range(3):
        out, h = fresh(torch.zeros(1, 1, 4), h)


test()
test_steps()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
for x, y in loader:
    opt.zero_grad()
    net(x).sum().backward()
    opt.step()
"""


def test_demos_run_before_training_are_not_evaluations() -> None:
    model = build(DEMO)
    assert [r.kind for r in model.eval_regions] == []
    after = build(DEMO + "test()\n")  # called after training too: an evaluation
    functions = [r.scope.name for r in after.eval_regions if r.kind is RegionKind.FUNCTION]
    assert functions == ["test"]


def test_collective_restore_in_the_other_branch_counts() -> None:
    source = """
    import torch


    class T:
        def __init__(self, nets, data, opt):
            self.nets, self.data, self.opt = nets, data, opt

        def set_mode(self, mode):
            for name in self.nets:
                if mode == "train":
                    self.nets[name].train()
                else:
                    self.nets[name].eval()

        def run(self):
            for epoch in range(3):
                self.set_mode("train")
                for x in self.data:
                    self.opt.zero_grad()
                    self.nets["a"](x).sum().backward()
                    self.opt.step()
                self.set_mode("eval")
    """
    model = build(source)
    kinds = [
        e.kind
        for e in model.function_events(scope(model, "T.run"))
        if e.kind in (EventKind.EVAL_MODE, EventKind.TRAIN_MODE)
    ]
    assert kinds == [EventKind.TRAIN_MODE, EventKind.EVAL_MODE]
    assert model.restoring.unrestored_switches() == []


FROZEN = """
import torch
import torch.nn as nn


def probe(backbone, head, loader, opt):
    for p in backbone.parameters():
        p.requires_grad = False
    for epoch in range(3):
        backbone.eval()
        for x, y in loader:
            opt.zero_grad()
            head(backbone(x)).sum().backward()
            opt.step()


def partial(model, loader, opt):
    model.requires_grad_(False)
    model.top.requires_grad_(True)
    model.train()
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
        model.eval()
"""


def test_frozen_parameters_mean_eval_mode_on_purpose() -> None:
    model = build(FROZEN)
    found = [item.switch.scope.name for item in model.restoring.unrestored_switches()]
    assert found == ["partial"]  # ``backbone`` is frozen; ``model.top`` still trains


TWO_NETWORKS = """
import torch
import torch.nn as nn


def fit(gen: nn.Module, critic: nn.Module, teacher: nn.Module, loader):
    g_opt = torch.optim.Adam(gen.parameters())
    c_opt = torch.optim.Adam(critic.parameters())
    gen.train()
    critic.train()
    for epoch in range(3):
        for real in loader:
            c_opt.zero_grad()
            (critic(real).mean() + teacher(real).mean()).backward()
            c_opt.step()
            g_opt.zero_grad()
            (-critic(gen(real)).mean()).backward()
            g_opt.step()
        gen.eval()
        teacher.eval()
"""


def test_every_network_the_train_step_optimizes_is_followed() -> None:
    model = build(TWO_NETWORKS)
    found = [
        (item.subject, model.text_of(item.switch.node))
        for item in model.restoring.unrestored_switches()
    ]
    # ``gen`` is stepped by ``g_opt``; ``teacher`` is in no optimizer: kept in eval on purpose
    assert found == [("gen", "gen.eval()")]


def test_layers_switched_through_a_train_step_helper_reads_the_looping_code_model() -> None:
    model = build(
        """
        import torch
        import torch.nn as nn

        def train_step(model, loader, optimizer):
            for X, y in loader:
                optimizer.zero_grad()
                model(X).sum().backward()
                optimizer.step()

        def test_step(model, loader):
            model.eval()
            return [model(X) for X, _ in loader]

        plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        dropping = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        optimizer = torch.optim.SGD(plain.parameters(), lr=0.1)
        for epoch in range(3):
            train_step(plain, loader, optimizer)
            test_step(plain, loader)
        for epoch in range(3):
            train_step(dropping, loader, optimizer)
            test_step(dropping, loader)
        """
    )
    restoring = model.restoring
    free = {
        item.subject: restoring.layers_switched(item).known_free
        for item in restoring.unrestored_switches()
    }
    assert free == {"plain": True, "dropping": False}


EVAL_FOR_TRAINING = """
import torch.nn.functional as F
from elsewhere import report


def probe(net, loader, opt):
    net.eval()
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()


def before_report(net, loader, opt):
    for epoch in range(3):
        net.eval()
        report(net)
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
"""


def test_an_eval_switch_made_for_the_train_step_is_chosen_on_purpose() -> None:
    model = build(EVAL_FOR_TRAINING)
    found = [item.switch.scope.name for item in model.restoring.unrestored_switches()]
    # ``probe`` trains in eval mode on purpose (a linear evaluation); in ``before_report``
    # the model is handed to a call between the switch and the step: an evaluation's switch
    assert found == ["before_report"]


PRESUMED = """
import torch.nn.functional as F


def learn(agent, loader, opt):
    for epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(agent.online(x), y).backward()
            opt.step()
        agent.eval()
"""


def test_a_presumed_switch_of_an_unseen_class_is_not_reported_unrestored() -> None:
    model = build(PRESUMED)
    assert [
        e.presumed
        for e in model.modes.scope_events(scope(model, "learn"))
        if e.kind is EventKind.EVAL_MODE
    ] == [True]
    assert model.restoring.unrestored_switches() == []
