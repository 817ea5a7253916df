"""Callers in other modules (summaries.callers, trainlint.callers): the mode a function of one
file is called in by the project's other modules, and the cache dependencies that keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_helpers import build, scope

from trainlint.callers import CALLERS, _imported_words
from trainlint.engine import FileResult, RunOptions, run
from trainlint.model import TrainingModel
from trainlint.model.loops.modes import Mode
from trainlint.model.summaries.callers import CallerRecord, records_in
from trainlint.project import ProjectIndex

ENGINE = """\
import torch


def validate(model, loader):
    total = 0.0
    for x, y in loader:
        total += (model(x).argmax(1) == y).float().sum().item()
    return total
"""
TRAIN = """\
import torch
from engine import validate

model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5))
model.eval()
with torch.no_grad():
    print(validate(model, val_loader))
"""


def test_records_read_each_argument_mode_and_grad_mode_at_the_call():
    model = build(
        """
        import torch
        from engine import validate
        import engine as E

        def run(net, loader):
            student = torch.nn.Linear(4, 2)
            net.eval()
            with torch.no_grad():
                validate(net, loader)
            student.train()
            E.validate(loader=loader, model=student)
            validate(net.module, loader)

        def shadowed(net, loader):
            def validate(model, loader):
                return 0
            return validate(net, loader)
        """
    )
    wanted = {"engine.validate"}
    records = records_in(model, lambda target: target in wanted, ("model", "loader"))
    assert [(r.modes[0], r.grad_off) for r in records] == [
        ("eval", True),
        ("train", False),
        ("eval", False),  # ``net.module`` is in the mode of ``net``
    ]
    assert records[0].mode_of(("model", "loader"), "model") == "eval"
    assert records[0].mode_of(("model", "loader"), "missing") == "unknown"
    assert CallerRecord.from_json(records[1].to_json()) == records[1]
    assert CallerRecord.from_json("garbage") is None


def test_import_lines_give_the_candidate_words(tmp_path: Path):
    path = tmp_path / "a.py"
    path.write_text(
        "from .lib.engine import (\n    validate as v,\n    train,\n)\nimport utils.io, numpy\n"
        "x = 'import nothing'\n"
    )
    words = _imported_words(path, 0)
    assert {"lib", "engine", "validate", "v", "train", "utils", "io", "numpy"} <= words
    assert "nothing" not in words


def _project(tmp_path: Path, train: str = TRAIN) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "engine.py").write_text(ENGINE)
    (tmp_path / "train.py").write_text(train)
    (tmp_path / "unrelated.py").write_text("import torch\nvalidate = None\n")
    return tmp_path


def _engine_model(root: Path, index: ProjectIndex) -> TrainingModel:
    path = root / "engine.py"
    return TrainingModel.from_source(path.read_text(), path, index.view(path))


def _forward(model: TrainingModel):
    validate = scope(model, "validate")
    forward = next(e for e in model.function_events(validate) if e.subject == "model")
    return validate, forward


def test_mode_from_a_caller_module_and_its_dependency(tmp_path: Path):
    root = _project(tmp_path)
    index = ProjectIndex()
    model = _engine_model(root, index)
    validate, forward = _forward(model)
    assert model.modes.mode_before(validate, forward.node, "model").mode is Mode.EVAL
    deps = model.project.deps()
    assert [d[:2] for d in deps] == [["train.py", f"{CALLERS}validate(model,loader)"]]
    assert index.deps_valid(root / "engine.py", deps)
    (root / "train.py").write_text(TRAIN.replace("model.eval()", "model.train()"))
    assert not ProjectIndex().deps_valid(root / "engine.py", deps)


@pytest.mark.parametrize(
    ("train", "mode"),
    [
        (TRAIN, Mode.EVAL),
        (TRAIN.replace("model.eval()", "pass"), Mode.UNKNOWN),
        (TRAIN.replace("model.eval()", "model.train()"), Mode.UNKNOWN),  # its switch is there
        (TRAIN + "model.train()\nvalidate(model, val_loader)\n", Mode.UNKNOWN),  # one of two
        (
            TRAIN.replace("from engine import validate", "def validate(m, l):\n    pass"),
            Mode.UNKNOWN,
        ),
    ],
)
def test_every_call_in_other_modules_must_be_in_eval_mode(tmp_path: Path, train: str, mode: Mode):
    root = _project(tmp_path, train)
    model = _engine_model(root, ProjectIndex())
    validate, forward = _forward(model)
    assert model.modes.mode_before(validate, forward.node, "model").mode is mode


def test_without_a_project_index_nothing_is_asked(tmp_path: Path):
    root = _project(tmp_path)
    path = root / "engine.py"
    model = TrainingModel.from_source(path.read_text(), path)
    validate, forward = _forward(model)
    assert model.modes.mode_before(validate, forward.node, "model").mode is Mode.UNKNOWN


def _check(root: Path) -> dict[str, FileResult]:
    options = RunOptions(codes=("TL401", "TL402"), root=root, cache_dir=root / ".cache", jobs=1)
    return {r.display: r for r in run([root / "engine.py"], options)}


def test_editing_the_caller_invalidates_the_cached_result(tmp_path: Path):
    root = _project(tmp_path)
    first = _check(root)["engine.py"]
    assert first.findings == [] and not first.cached
    assert _check(root)["engine.py"].cached
    (root / "train.py").write_text(TRAIN.replace("model.eval()", "pass"))
    edited = _check(root)["engine.py"]
    assert not edited.cached and [f.code for f in edited.findings] == ["TL401"]
    (root / "unrelated.py").write_text("import torch\nvalidate = 1\n")
    assert _check(root)["engine.py"].cached  # it imports neither the name nor the module
