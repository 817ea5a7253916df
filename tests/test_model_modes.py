"""Eval regions, train/eval and grad mode along functions and callers, module structure."""

from __future__ import annotations

from model_helpers import build, expr, scope

from trainlint.model.loops.modes import Mode, forward_target, model_value, same_model
from trainlint.model.loops.regions import RegionKind

REGIONS = """
import torch
import torch.nn as nn


def validate(model, loader):
    return [model(x) for x, _ in loader]


def run_batch(model, batch):
    return model(batch)


def main(model, train_loader, val_loader, optimizer):
    for epoch in range(3):
        for x, y in train_loader:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
        dev = model(x_dev)
        for x, _ in val_loader:
            run_batch(model, x)
    for x, _ in loaders["test"]:
        model(x)


def evaluate_and_train(model, loader, optimizer):
    for x in loader:
        model(x).sum().backward()
        optimizer.step()
"""


def test_regions_of_each_kind() -> None:
    model = build(REGIONS)
    found = [(r.kind, r.scope.name, model.line_of(r.node)) for r in model.eval_regions]
    assert found == [
        (RegionKind.FUNCTION, "validate", 6),
        (RegionKind.LOADER, "main", 21),
        (RegionKind.LOADER, "main", 23),
        (RegionKind.AFTER_TRAINING, "main", 20),
    ]


def test_after_training_region_holds_the_model_calls_after_the_train_loop() -> None:
    model = build(REGIONS)
    (after,) = [r for r in model.eval_regions if r.kind is RegionKind.AFTER_TRAINING]
    assert [model.text_of(e.node) for e in after.forwards] == [
        "model(x_dev)",
        "model(batch)",
    ]
    assert after.after is not None and model.line_of(after.after.node) == 16


def test_no_regions_without_torch_or_in_frameworks_and_tests() -> None:
    assert build("def validate(model, x):\n    return model(x)\n").eval_regions == []
    source = """
    import torch
    import pytest
    from lightning.pytorch import LightningModule


    class Lit(LightningModule):
        def validation_step(self, batch, i):
            return self.model(batch)


    class Net(torch.nn.Module):
        def predict(self, x):
            return self(x)


    def test_shapes():
        model = Net()
        assert model(torch.zeros(1)).shape
    """
    assert build(source).eval_regions == []


def test_a_function_whose_unpacked_results_are_back_propagated_is_training() -> None:
    source = """
    import torch


    def evaluate(policy, states):
        mean, log_std = policy(states)
        return mean.tanh(), log_std.sum()


    def update(policy, opt, batches):
        for states in batches:
            action, log_prob = evaluate(policy, states)
            opt.zero_grad()
            (log_prob - action.mean()).backward()
            opt.step()
    """
    assert build(source).eval_regions == []


MODES = """
import torch


def evaluate(net, loader):
    return [net(x) for x in loader]


def checked(model, loader):
    model.train()
    evaluate(model, loader)


def run(model, loader):
    model.eval()
    evaluate(model, loader)


def both(model, loader):
    model.eval()
    with torch.no_grad():
        evaluate(model, loader)
"""


def _first_forward(model, name):
    (region,) = [r for r in model.eval_regions if r.scope.name == name]
    return region, region.forwards[0]


def test_mode_comes_from_every_same_file_caller() -> None:
    model = build(MODES)
    region, first = _first_forward(model, "evaluate")
    state = model.modes.mode_before(region.scope, first.node, first.subject)
    assert state.mode is Mode.TRAIN  # ``checked`` calls it after ``model.train()``
    source = MODES.replace("    model.train()\n", "    model.eval()\n")
    model = build(source)
    region, first = _first_forward(model, "evaluate")
    state = model.modes.mode_before(region.scope, first.node, first.subject)
    assert state.mode is Mode.EVAL
    assert state.switch is not None and model.text_of(state.switch.node) == "model.eval()"


def test_mode_is_unknown_with_no_switch_and_no_caller() -> None:
    model = build("import torch\ndef predict(model, x):\n    return model(x)\n")
    region, first = _first_forward(model, "predict")
    assert model.modes.mode_before(region.scope, first.node, "model").mode is Mode.UNKNOWN


def test_grad_mode_around_every_caller() -> None:
    model = build(MODES)
    region, first = _first_forward(model, "evaluate")
    assert not model.modes.grad_disabled(region.scope, first, region.node)
    only_no_grad = MODES.split("def checked")[0] + "def both" + MODES.split("def both")[1]
    model = build(only_no_grad)
    region, first = _first_forward(model, "evaluate")
    assert model.modes.grad_disabled(region.scope, first, region.node)


def test_same_model_names() -> None:
    assert same_model("model", "model.module")
    assert same_model(None, "net")
    assert not same_model("netG", "netD")
    assert not same_model("model", "model_ema")


STRUCTURE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class Plain(nn.Module):
    def __init__(self, dim, hidden: int = 4):
        super().__init__()
        self.dim = dim
        self.fc = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(3)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.fc(x)


def make_layers(cfg):
    layers = []
    for v in cfg:
        layers.append(nn.Conv2d(3, v, 3))
        layers.append(nn.BatchNorm2d(v))
    return nn.Sequential(*layers)


class WithFactory(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = make_layers([8, 16])


class Wrapper(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone(x)


class FunctionalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return F.dropout(self.fc(x), 0.5, training=self.training)


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Plain(3)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2), 2)
        self.rnn = nn.LSTM(8, 8)


plain = Plain(3)
vgg = WithFactory()
wrapped = Wrapper(nn.Linear(2, 2))
functional = FunctionalDropout()
nested = Nested()
resnet = torchvision.models.resnet18()
seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
"""


def test_mode_dependent_layers_of_models() -> None:
    model = build(STRUCTURE)
    module = scope(model, "<module>")

    def layers(name):
        value = model.value_of(module.bindings[name][0].value, module)
        return model.module_structure.of_value(value)

    assert layers("plain").known_free  # ``self.dim = dim`` is not used like a layer
    assert layers("seq").known_free
    assert layers("vgg").layers == ("BatchNorm2d",)
    # the class alone holds an unknown backbone; this construction passes a Linear
    assert not model.module_structure.of_class(model.classes["Wrapper"]).complete
    assert layers("wrapped").known_free
    assert layers("functional").layers == ("dropout",)
    assert layers("nested").layers == ("TransformerEncoderLayer(dropout)",)
    assert layers("resnet").has_any


def test_model_value_follows_parameters_and_constructor_arguments() -> None:
    source = """
    import torch.nn as nn


    class Net(nn.Module):
        pass


    class Runner:
        def __init__(self, model):
            self.model = model

        def evaluate(self, x):
            return self.model(x)


    def predict(net, x):
        return net(x)


    runner = Runner(Net())
    predict(Net(), 1)
    """
    model = build(source)
    for name in ("Runner.evaluate", "predict"):
        (region,) = [r for r in model.eval_regions if r.scope.name == name]
        first = region.forwards[0]
        value = model_value(model, forward_target(first.node), first.scope)
        assert value is not None and value.kind == "Net", name


def test_plain_functions_called_like_models_have_no_mode():
    from trainlint.model.loops.mode_exemptions import plain_function
    from trainlint.model.syntax.nodes import dotted

    model = build(
        """
        import torch
        import torch.nn as nn

        def net(X):
            return X @ W

        def linreg(X, w, b):
            return X @ w + b

        def evaluate(data, model):
            return [model(x) for x in data]

        def mixed(data, model):
            return [model(x) for x in data]

        def fit(X):
            regress, loss = linreg, None
            module = nn.Linear(2, 2)
            return regress(X), module(X)

        evaluate(test_iter, net)
        mixed(test_iter, net)
        mixed(test_iter, nn.Linear(2, 2))
        """
    )

    def called(function: str, name: str) -> bool:
        where = scope(model, function)
        call = next(s.node for s in model.calls if s.scope is where and dotted(s.node.func) == name)
        return plain_function(model, call.func, where)

    assert called("evaluate", "model")  # every caller passes ``def net``
    assert not called("mixed", "model")  # one caller passes a module
    assert called("fit", "regress")  # unpacked from ``linreg, None``
    assert not called("fit", "module")


def test_a_method_of_the_class_named_like_a_model_is_not_a_forward():
    from trainlint.model import EventKind

    model = build(
        """
        import torch

        class Solver:
            def __init__(self):
                self.G = torch.nn.Linear(2, 2)

            def restore_model(self, step):
                self.G.load_state_dict(torch.load(f"{step}.ckpt"))

            def test(self, x):
                self.restore_model(3)
                return self.G(x)
        """
    )
    events = model.function_events(scope(model, "Solver.test"))
    forwards = [e.subject for e in events if e.kind is EventKind.FORWARD]
    assert forwards == ["self.G"]


def test_mode_at_an_inlined_forward_is_the_mode_at_its_own_call():
    model = build(
        """
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Linear(2, 2)

            def run(self, x):
                return self.body(x)

        model = Net()
        for epoch in range(3):
            model.train()
            for x in loader:
                model.run(x).sum().backward()
        model.eval()
        model.run(x_test)
        """
    )
    events = model.modes.scope_events(model.module_scope)
    forwards = [e for e in events if e.kind.value == "forward"]
    assert len(forwards) == 2 and forwards[0].node is forwards[1].node  # one helper node
    modes = [model.modes.mode_at(model.module_scope, e).mode for e in forwards]
    assert modes == [Mode.TRAIN, Mode.EVAL]


def test_generator_sampled_from_noise_by_a_file_that_never_evaluates_it():
    from trainlint.model.loops.mode_exemptions import samples_noise

    source = """
        import torch
        import torch.nn as nn

        G = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8))
        opt = torch.optim.Adam(G.parameters())
        fixed = torch.randn(4, 8)
        for epoch in range(3):
            for x in loader:
                opt.zero_grad()
                G(x).mean().backward()
                opt.step()
            with torch.no_grad():
                G(fixed)
        """

    def sampled(text: str) -> list[bool]:
        model = build(text)
        return [samples_noise(model, r, r.forwards[0]) for r in model.eval_regions]

    assert sampled(source) == [True]  # bound to torch.randn
    assert sampled(source.replace("G(fixed)", "G(x_val)")) == [False]  # data, not noise
    assert sampled(source + "        G.eval()\n") == [False]  # the file does evaluate it
    # a name says nothing: ``z`` is data, ``codes`` a draw
    assert sampled(source.replace("G(fixed)", "z = x\n            G(z)")) == [False]
    renamed = source.replace("fixed", "codes")
    assert sampled(renamed) == [True]
    # the mode event of a helper switching it counts too
    # (the source ends in its last line's indent)
    helper = "def freeze(m):\n            m.eval()\n        freeze(G)\n"
    assert sampled(source + helper) == [False]


def test_random_draws_are_told_by_provenance_not_by_name():
    model = build(
        """
        import numpy as np
        import torch
        from torch.autograd import Variable

        Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor
        codes = torch.randn(4, 8).to("cuda")
        filled = torch.FloatTensor(4, 8)
        filled.normal_(0, 1)
        wrapped = Variable(Tensor(np.random.normal(0, 1, (4, 8))))
        z = batch[0]
        noise = images.mean(0)
        first, second = torch.rand(2), torch.zeros(2)

        def sample(n):
            return torch.randn(n, 8)

        drawn = sample(4)
        """
    )
    module = model.module_scope

    def draw(name: str) -> bool:
        return model.random_draw(expr(name), module)

    assert [draw(n) for n in ("codes", "filled", "wrapped", "drawn", "first")] == [True] * 5
    # named like noise, made from data: not a draw
    assert [draw(n) for n in ("z", "noise", "second")] == [False] * 3


def test_a_hugging_face_model_is_loaded_in_eval_mode():
    model = build(
        """
        from transformers import AutoModel

        net = AutoModel.from_pretrained("org/name").to("cuda")
        net(x)
        net.train()
        net(x)
        """
    )
    module = model.module_scope
    forwards = [e for e in model.modes.scope_events(module) if e.kind.value == "forward"]
    modes = [model.modes.mode_at(module, e).mode for e in forwards]
    assert modes == [Mode.EVAL, Mode.TRAIN]  # ``from_pretrained`` switches it to eval


def test_a_wrapper_that_loads_a_hugging_face_model_keeps_it_in_eval_mode():
    source = """
        from transformers import AutoModel


        class Embedder:
            def __init__(self, name):
                self.net = AutoModel.from_pretrained(name).to("cuda")

            def embed(self, x):
                return self.net(x)
        """
    trained = source + "\n            def fit(self):\n                self.net.train()\n"
    found = []
    for text in (source, trained):
        model = build(text)
        embed = scope(model, "Embedder.embed")
        (forward,) = [e for e in model.modes.scope_events(embed) if e.kind.value == "forward"]
        found.append(model.modes.mode_at(embed, forward).mode)
    assert found == [Mode.EVAL, Mode.UNKNOWN]  # a method that trains it leaves it open


def test_module_structure_reads_layers_bound_at_module_level():
    model = build(
        """
        import torch.nn as nn

        act = nn.ReLU()
        drop = nn.Dropout(0.1)

        class Plain(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(2, 2), act)

            def forward(self, x):
                return self.body(x)

        class Dropping(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(2, 2), drop)

            def forward(self, x):
                return self.body(x)

        class Given(nn.Module):
            def __init__(self, act):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(2, 2), act)  # the parameter, not the global

            def forward(self, x):
                return self.body(x)
        """
    )
    structure = model.module_structure
    assert structure.of_class(model.classes["Plain"]).known_free
    assert structure.of_class(model.classes["Dropping"]).layers == ("Dropout",)
    assert not structure.of_class(model.classes["Given"]).complete


def test_a_layerless_wrapper_of_models_in_eval_mode_runs_them_in_eval_mode():
    source = """
        import torch.nn as nn

        class Pair(nn.Module):
            def __init__(self, a, b):
                super().__init__()
                self.a, self.b = a, b

            def forward(self, x):
                return self.b(self.a(x))

        class Noisy(Pair):
            def __init__(self, a, b):
                super().__init__(a, b)
                self.drop = nn.Dropout(0.5)

        enc, dec = nn.Linear(2, 2), nn.Linear(2, 2)
        enc.eval()
        dec.eval()
        pair = Pair(enc, dec)
        noisy = Noisy(enc, dec)
        pair(x)
        noisy(x)
        """

    def modes(text: str) -> list[Mode]:
        model = build(text)
        module = model.module_scope
        calls = [s.node for s in model.calls if s.scope is module and s.dotted in ("pair", "noisy")]
        return [model.modes.mode_before(module, c, model.text_of(c.func)).mode for c in calls]

    assert modes(source) == [Mode.EVAL, Mode.UNKNOWN]  # Noisy has a Dropout of its own
    assert modes(source.replace("dec.eval()", "dec.train()")) == [Mode.UNKNOWN, Mode.UNKNOWN]


def test_module_structure_reads_a_construction_with_the_layers_it_passes():
    model = build(
        """
        import torch.nn as nn

        class Wrapper(nn.Module):
            def __init__(self, core, width):
                super().__init__()
                self.core = core
                self.head = nn.Linear(width, 2)

            def forward(self, x):
                return self.head(self.core(x))

        plain = Wrapper(nn.RNN(4, 8), 8)
        dropping = Wrapper(nn.LSTM(4, 8, num_layers=2, dropout=0.2), 8)
        unknown = Wrapper(make_core(), 8)
        """
    )
    structure = model.module_structure
    assert not structure.of_class(model.classes["Wrapper"]).complete  # the class alone
    layers = {
        name: structure.of_value(model.value_of(expr(name), model.module_scope))
        for name in ("plain", "dropping", "unknown")
    }
    assert layers["plain"].known_free
    assert layers["dropping"].layers == ("LSTM(dropout)",)
    assert not layers["unknown"].complete
