"""Module summaries and the project index: what a definition of another module does, import
resolution inside the project root, laziness, and stable digests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst

from trainlint.cache import Cache
from trainlint.model import ClassSummary, FunctionSummary, TrainingModel
from trainlint.model.summaries import digest, from_json, to_json
from trainlint.project import ProjectIndex

UTILS = """
    import torch

    class AverageMeter:
        def __init__(self, name):
            self.name = name
            self.reset()

        def reset(self):
            self.sum = 0
            self.count = 0

        def update(self, val, n=1):
            self.sum += val * n
            self.count += n
            self.avg = self.sum / self.count

    def unrelated():
        return 1
"""
MODEL = """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.1)

        def forward(self, idx, targets=None):
            logits = self.head(self.drop(idx))
            loss = F.cross_entropy(logits, targets)
            return logits, loss

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            return torch.sigmoid(self.fc(self.bn(x)))
"""
ENGINE = """
    import torch

    def train_one_epoch(model, loader, optimizer, criterion):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def evaluate(model, loader):
        model.eval()
        for x, _ in loader:
            model(x)
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    return write(
        tmp_path,
        {"utils.py": UTILS, "model.py": MODEL, "engine.py": ENGINE, "train.py": "import torch\n"},
    )


def test_meter_class_summary(tmp_path: Path) -> None:
    view = ProjectIndex().view(project(tmp_path) / "train.py")
    found = view.lookup("utils.AverageMeter")
    assert found is not None
    meter, rest = found
    assert isinstance(meter, ClassSummary) and rest == []
    assert not meter.is_module
    update = meter.method("update")
    assert update is not None and update.params == ("val", "n") and update.default("n") == 1
    sums = [e for e in update.effects if e.kind == "accumulate"]
    assert [(e.subject, e.operand) for e in sums] == [("self.sum", "val * n"), ("self.count", "n")]
    assert meter.meter is not None and meter.meter.total == "sum"
    assert "avg" in meter.meter.averages


def test_module_class_summary(tmp_path: Path) -> None:
    view = ProjectIndex().view(project(tmp_path) / "train.py")
    gpt = view.lookup("model.GPT")[0]  # type: ignore[index]
    assert isinstance(gpt, ClassSummary) and gpt.is_module
    assert gpt.has_dropout and not gpt.has_batchnorm
    forward = gpt.forward
    assert forward is not None
    loss = forward.returned(1)
    assert loss is not None and loss.reduction == "mean" and "cross_entropy" in loss.loss
    assert forward.returned(0).activation == "logits"  # type: ignore[union-attr]
    classifier = view.lookup("model.Classifier")[0]  # type: ignore[index]
    assert classifier.final_activation == "probabilities"
    assert classifier.has_batchnorm


def test_function_effects(tmp_path: Path) -> None:
    view = ProjectIndex().view(project(tmp_path) / "train.py")
    train = view.lookup("engine.train_one_epoch")[0]  # type: ignore[index]
    assert isinstance(train, FunctionSummary)
    kinds = [(e.kind, e.subject, e.in_loop) for e in train.effects]
    assert ("train_mode", "model", False) in kinds
    assert ("zero_grad", "optimizer", True) in kinds
    assert ("step", "optimizer", True) in kinds
    assert "backward" in train.kinds()
    evaluate = view.lookup("engine.evaluate")[0]  # type: ignore[index]
    assert evaluate.disables_grad and "eval_mode" in evaluate.kinds()  # type: ignore[union-attr]


def test_relative_imports_and_reexports(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("")
    write(
        tmp_path,
        {
            "src/pkg/__init__.py": "",
            "src/pkg/meters/__init__.py": "from .average import AverageMeter\n",
            "src/pkg/meters/average.py": UTILS,
            "src/pkg/train.py": "from .meters import AverageMeter\n",
            "scripts/run.py": "from pkg.meters import AverageMeter\n",
        },
    )
    index = ProjectIndex()
    view = index.view(tmp_path / "src/pkg/train.py")
    found = view.lookup(".meters.AverageMeter")
    assert found is not None and found[0].name == "AverageMeter"
    assert {name for _, name in view.used} == {"AverageMeter"}
    assert any(path.endswith("average.py") for path, _ in view.used)
    # an absolute import from a script finds the ``src/`` layout
    assert index.view(tmp_path / "scripts/run.py").lookup("pkg.meters.AverageMeter") is not None
    # ``from . import meters`` then ``meters.AverageMeter``
    assert view.lookup(".meters.AverageMeter.update") is not None


def test_libraries_and_outside_root_are_not_resolved(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(textwrap.dedent(UTILS))
    inner = tmp_path / "proj"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("")
    (inner / "train.py").write_text("")
    view = ProjectIndex().view(inner / "train.py")
    assert view.lookup("torch.nn.Linear") is None
    assert view.lookup("..outside.AverageMeter") is None
    assert view.lookup("outside.AverageMeter") is None


def test_lazy_prefilter_and_excerpt(tmp_path: Path) -> None:
    project(tmp_path)
    index = ProjectIndex()
    view = index.view(tmp_path / "train.py")
    assert index.read == 0 and index.parsed == 0
    assert view.lookup("utils.missing_name") is None
    assert index.read == 1 and index.parsed == 0  # the word prefilter: nothing parsed
    view.lookup("utils.AverageMeter")
    view.lookup("utils.AverageMeter")
    assert index.parsed == 1  # reused within the run


def test_json_round_trip_and_digest(tmp_path: Path) -> None:
    view = ProjectIndex().view(project(tmp_path) / "train.py")
    for target in ("utils.AverageMeter", "model.GPT", "engine.train_one_epoch"):
        summary = view.lookup(target)[0]  # type: ignore[index]
        again = from_json(to_json(summary))
        assert again == summary
        assert digest(again) == digest(summary)
    assert from_json({"type": "ClassSummary"}) is None
    assert from_json(["junk"]) is None


def test_digest_ignores_unrelated_edits(tmp_path: Path) -> None:
    project(tmp_path)
    before = ProjectIndex().digest_of(tmp_path / "utils.py", "AverageMeter")
    edited = textwrap.dedent(UTILS).replace("return 1", "return 2  # changed")
    (tmp_path / "utils.py").write_text(edited)
    assert ProjectIndex().digest_of(tmp_path / "utils.py", "AverageMeter") == before
    (tmp_path / "utils.py").write_text(edited.replace("self.sum += val * n", "self.sum += 0"))
    assert ProjectIndex().digest_of(tmp_path / "utils.py", "AverageMeter") != before


def test_summaries_cached_on_disk(tmp_path: Path) -> None:
    project(tmp_path)
    cache = Cache(tmp_path / "cache")
    first = ProjectIndex(cache)
    summary = first.definition(tmp_path / "utils.py", "AverageMeter")
    assert first.parsed == 1
    second = ProjectIndex(cache)
    assert second.definition(tmp_path / "utils.py", "AverageMeter") == summary
    assert second.parsed == 0


def test_model_queries(tmp_path: Path) -> None:
    project(tmp_path)
    source = textwrap.dedent(
        """
        from utils import AverageMeter
        import engine
        from model import GPT

        def main(loader, opt, crit):
            meter = AverageMeter("loss")
            model = GPT()
            engine.train_one_epoch(model, loader, opt, crit)
            logits, loss = model(x, y)
            meter.update(loss)
        """
    )
    index = ProjectIndex()
    path = tmp_path / "train.py"
    model = TrainingModel.from_source(source, path, index.view(path))
    main = next(s for s in model.scopes if s.name == "main")
    calls = {model.text_of(site.node): site.node for site in model.calls}
    update = model.external_call(calls["meter.update(loss)"], main)
    assert update is not None and update.function.name == "AverageMeter.update"  # type: ignore[union-attr]
    train = model.external_call(calls["engine.train_one_epoch(model, loader, opt, crit)"], main)
    assert train is not None and train.function.name == "train_one_epoch"  # type: ignore[union-attr]
    forward = model.external_call(calls["model(x, y)"], main)
    assert forward is not None and forward.owner.is_module  # type: ignore[union-attr]
    assert model.external_call(calls['AverageMeter("loss")'], main).constructs  # type: ignore[union-attr]
    assert model.instance_summary(cst.parse_expression("meter"), main).name == "AverageMeter"  # type: ignore[union-attr]
    # without a project index, nothing is known of other modules
    plain = TrainingModel.from_source(source, tmp_path / "train.py")
    assert plain.external_call(calls["meter.update(loss)"], main) is None


def test_module_base_in_another_module(tmp_path: Path) -> None:
    """``class Head(BaseNet)`` with ``BaseNet(nn.Module)`` in another module is a module; the
    importer's dependencies include the base's summary (editing it invalidates the result)."""
    (tmp_path / "pyproject.toml").write_text("")
    write(
        tmp_path,
        {
            "nets/__init__.py": "",
            "nets/base.py": "import torch.nn as nn\n\nclass BaseNet(nn.Module):\n    pass\n",
            "nets/plain.py": "class Step:\n    def forward(self, x):\n        return x\n",
            "nets/heads.py": """
                from .base import BaseNet
                from .plain import Step

                class Head(BaseNet):
                    def forward(self, x):
                        return x

                class Doubler(Step):
                    def forward(self, x):
                        return 2 * x
                """,
            "train.py": "import torch\n",
        },
    )
    view = ProjectIndex().view(tmp_path / "train.py")
    head = view.lookup("nets.heads.Head")[0]  # type: ignore[index]
    assert isinstance(head, ClassSummary) and head.bases == (".base.BaseNet",)
    assert head.is_module
    doubler = view.lookup("nets.heads.Doubler")[0]  # type: ignore[index]
    assert isinstance(doubler, ClassSummary) and not doubler.is_module
    assert ("nets/base.py", "BaseNet") in view.used


def test_stub_trees_shared_between_files(tmp_path: Path) -> None:
    """Two files calling the same helper of another module share its stub's tree, and each
    still follows it as its own helper."""
    project(tmp_path)
    index = ProjectIndex()
    source = textwrap.dedent(
        """
        import engine

        def main(model, loader, opt, crit):
            engine.train_one_epoch(model, loader, opt, crit)
        """
    )
    stubs = []
    for name in ("train.py", "other.py"):
        path = tmp_path / name
        path.write_text(source)
        model = TrainingModel.from_source(source, path, index.view(path))
        main = next(s for s in model.scopes if s.name == "main")
        call = next(site.node for site in model.calls if site.scope is main)
        stub = model.callee(call, main)
        assert stub is not None and model.stubs.function_summary(stub) is not None
        kinds = [event.kind.value for event in model.function_events(main)]
        assert "step" in kinds and "backward" in kinds
        stubs.append(stub)
    assert stubs[0].node is stubs[1].node  # one tree
    assert stubs[0] is not stubs[1]  # each model's own scope


def test_method_inherited_from_base_in_another_module(tmp_path: Path) -> None:
    """``self.train_step(...)`` that a base class of another module defines is followed as the
    base's method (its stub): the loop's iteration sees its backward and step."""
    (tmp_path / "pyproject.toml").write_text("")
    write(
        tmp_path,
        {
            "trainers.py": """
                class BaseTrainer:
                    def train_step(self, inputs, targets):
                        loss = self.criterion(self.model(inputs), targets)
                        loss.backward()
                        self.optimizer.step()
                """,
        },
    )
    source = textwrap.dedent(
        """
        from trainers import BaseTrainer

        class Trainer(BaseTrainer):
            def fit(self, loader):
                for inputs, targets in loader:
                    self.train_step(inputs, targets)
        """
    )
    path = tmp_path / "train.py"
    model = TrainingModel.from_source(source, path, ProjectIndex().view(path))
    info = model.classes["Trainer"]
    stub = model.method(info, "train_step")
    assert stub is not None and model.stubs.function_summary(stub) is not None
    (loop,) = [loop for loop in model.loops if not loop.external]
    kinds = [event.kind.value for event in model.iteration(loop)]
    assert "backward" in kinds and "step" in kinds
    assert TrainingModel.from_source(source, path).method(info, "train_step") is None
    # a finding about the inherited backward is shown on this file's call that reaches it
    (train,) = model.train_steps
    backward = next(e for e in train.events if e.kind.value == "backward")
    assert model.stubs.origin(backward.node) is not None
    assert model.text_of(model.anchor_of(backward)) == "self.train_step(inputs, targets)"
    assert model.where(backward.node) == "in `BaseTrainer.train_step`"


def test_dataset_class_summary_records_numpy_draws(tmp_path: Path) -> None:
    """A Dataset's NumPy draws travel in its class summary: the loader is built elsewhere."""
    (tmp_path / "pyproject.toml").write_text("")
    write(
        tmp_path,
        {
            "data.py": """
                import numpy as np
                from torch.utils.data import Dataset

                class Jitter(Dataset):
                    def __init__(self):
                        self.rng = np.random.default_rng(0)

                    def _shift(self):
                        return np.random.randint(0, 4)

                    def __getitem__(self, index):
                        return self._shift() + self.rng.integers(0, 2)

                class Plain(Dataset):
                    def __getitem__(self, index):
                        return index
                """,
        },
    )
    view = ProjectIndex().view(tmp_path / "train.py")
    jitter = view.lookup("data.Jitter")[0]
    assert isinstance(jitter, ClassSummary)
    assert jitter.numpy_draws == (
        ("global", "np.random.randint", "Jitter.__getitem__ -> Jitter._shift"),
        ("state", "self.rng.integers", "Jitter.__getitem__"),
    )
    assert from_json(to_json(jitter)) == jitter
    assert view.lookup("data.Plain")[0].numpy_draws == ()
