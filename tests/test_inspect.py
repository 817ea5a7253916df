"""`trainlint inspect`: what the model saw in one file, as text and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from trainlint.cli import main

WINDOWED = """\
import torch
from torch import nn
from project.objectives import score


def train(model, loader, accum_steps=4):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    for i, (x, y) in enumerate(loader):
        loss = criterion(model(x), y) / accum_steps
        loss.backward()
        if (i + 1) % accum_steps == 0:
            optimizer.step()
            optimizer.zero_grad()


def evaluate(model, val_loader):
    model.eval()
    with torch.no_grad():
        for x, y in val_loader:
            score(model(x), y)


def pretrain(model, loader):
    for x in loader:
        model(x).mean().backward()
"""


def inspect(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def as_json(path: Path) -> dict[str, Any]:
    result = inspect(path, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def windowed(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(WINDOWED)
    return path


def test_json_report_of_a_windowed_train_step(windowed: Path) -> None:
    report = as_json(windowed)
    assert report["schema_version"] == 1
    [step] = report["train_steps"]
    assert (step["line"], step["function"], step["per_call"]) == (9, "train", False)
    kinds = [(e["line"], e["kind"]) for e in step["events"]]
    assert kinds == [(10, "forward"), (11, "backward"), (13, "step"), (14, "zero_grad")]
    stepping = step["events"][2]
    assert stepping["subject"] == "optimizer"
    assert stepping["conditions"] == [
        {"test": "(i + 1) % accum_steps == 0", "negated": False, "window_guard": True}
    ]
    window = step["window"]
    assert window["kind"] == "modulo" and window["length"] == "accum_steps"
    assert window["guard"] == "(i + 1) % accum_steps == 0" and window["line"] == 12
    [backward] = window["backwards"]
    assert backward["reduction"] == "mean" and backward["divisions"] == ["accum_steps"]
    assert "window length" in backward["scaling"]


def test_roles_carry_their_evidence(windowed: Path) -> None:
    roles = {(r["function"], r["name"]): r for r in as_json(windowed)["roles"]}
    optimizer = roles[("train", "optimizer")]
    assert optimizer["role"] == "optimizer" and optimizer["kind"] == "torch.optim.AdamW"
    assert optimizer["evidence"] == "constructor `torch.optim.AdamW` at line 7"
    assert roles[("train", "criterion")]["evidence"].startswith("constructor `torch.nn.Cross")
    assert roles[("train", "model")]["evidence"] == "name only (a parameter)"


def test_eval_loops_and_what_is_unresolved(windowed: Path) -> None:
    report = as_json(windowed)
    [evaluation] = report["eval_loops"]
    assert (evaluation["line"], evaluation["function"]) == (20, "evaluate")
    assert evaluation["contexts"] == ["no_grad"]
    messages = [(u["line"], u["message"]) for u in report["unresolved"]]
    assert (21, messages[0][1]) == messages[0] and "`score()`" in messages[0][1]
    assert "project.objectives" in messages[0][1]
    assert messages[1] == (
        25,
        "loop at line 25 calls `backward()` but steps no optimizer trainlint recognises",
    )


def test_text_report(windowed: Path) -> None:
    result = inspect(windowed)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "train step: line 9 in `train`: for i, (x, y) in enumerate(loader)" in text
    assert "if (i + 1) % accum_steps == 0  [window guard]" in text
    assert "accumulation window: modulo, guard `(i + 1) % accum_steps == 0` (line 12)" in text
    assert "eval loop: line 20 in `evaluate`: for x, y in val_loader (in no_grad)" in text
    assert "optimizer  optimizer (torch.optim.AdamW): constructor" in text
    assert "line 25: loop at line 25 calls `backward()`" in text


def test_a_step_that_is_not_an_optimizer_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "plain_stepper.py"
    path.write_text(
        "class Stepper:\n"
        "    def step(self):\n"
        "        pass\n"
        "def fit(net, loader):\n"
        "    opt = Stepper()\n"
        "    for x in loader:\n"
        "        net(x).mean().backward()\n"
        "        opt.step()\n"
    )
    [entry] = as_json(path)["unresolved"]
    assert entry["line"] == 6 and "`opt.step()` at line 8 (`opt` resolves to a" in entry["message"]


def test_apex_initialize_keeps_the_optimizer(tmp_path: Path) -> None:
    path = tmp_path / "apex_style.py"
    path.write_text(
        "from apex import amp\n"
        "def fit(net, opt, loader):\n"
        "    net, opt = amp.initialize(net, opt)\n"
        "    for x in loader:\n"
        "        net(x).mean().backward()\n"
        "        opt.step()\n"
    )
    report = as_json(path)
    assert not report["unresolved"] and len(report["train_steps"]) == 1


def test_a_window_run_once_per_call(tmp_path: Path) -> None:
    path = tmp_path / "step.py"
    path.write_text(
        "def train_step(model, optimizer, batch, criterion):\n"
        "    for micro in batch.chunk(4):\n"
        "        criterion(model(micro)).backward()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()\n"
    )
    [step] = as_json(path)["train_steps"]
    assert step["per_call"] and step["window"]["kind"] == "inner_loop"
    assert step["window"]["length"] == "4"
    assert step["window"]["backwards"][0]["scaling"] == "not divided"


def test_notebook_lines_name_their_cells(tmp_path: Path) -> None:
    cells = [
        {"cell_type": "markdown", "source": ["# Training\n"]},
        {"cell_type": "code", "source": ["import torch\n", "%matplotlib inline\n"]},
        {
            "cell_type": "code",
            "source": [
                "for x, y in loader:\n",
                "    loss = criterion(model(x), y)\n",
                "    loss.backward()\n",
                "    optimizer.step()\n",
                "    optimizer.zero_grad()\n",
            ],
        },
    ]
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    report = as_json(path)
    [step] = report["train_steps"]
    assert step["where"] == "cell 3, line 1"
    assert [e["where"] for e in step["events"]][-1] == "cell 3, line 5"
    assert "train step: cell 3, line 1" in inspect(path).output


def test_a_syntax_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("optimizer.step()\ndef broken(:\n")
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlint: error: ")
    assert "broken.py: syntax error" in lines[0] and "line 2" in lines[0]


def test_no_training_code(tmp_path: Path) -> None:
    path = tmp_path / "util.py"
    path.write_text("def add(a, b):\n    return a + b\n")
    result = inspect(path)
    assert result.exit_code == 0
    assert "no train step and no eval loop found" in result.output


def test_help_explains_it() -> None:
    result = inspect("--help")
    assert result.exit_code == 0
    assert "train steps" in result.output and "--format [text|json]" in result.output


def test_a_backward_hidden_in_an_unseen_helper_is_pointed_at(tmp_path: Path) -> None:
    path = tmp_path / "engine.py"
    path.write_text(
        "import torch\n"
        "from util.misc import NativeScaler\n"
        "def train_one_epoch(model: torch.nn.Module, loader, optimizer, loss_scaler, k):\n"
        "    for i, (x, y) in enumerate(loader):\n"
        "        loss = model(x, y) / k\n"
        "        loss_scaler(loss, optimizer, update_grad=(i + 1) % k == 0)\n"
        "        if (i + 1) % k == 0:\n"
        "            optimizer.zero_grad()\n"
    )
    report = as_json(path)
    assert report["train_steps"] == [] and report["eval_loops"] == []
    [entry] = report["unresolved"]
    assert entry["line"] == 4
    assert "runs no backward trainlint recognises" in entry["message"]
    assert "`loss_scaler(...)` at line 6" in entry["message"]


def test_the_loop_holding_an_unrecognised_step_is_the_one_reported(tmp_path: Path) -> None:
    path = tmp_path / "muon.py"
    path.write_text(
        "import torch.optim as optim\n"
        "from muon import Muon\n"
        "optim = Muon(model.parameters())\n"
        "for i in range(100):\n"
        "    for _ in range(4):\n"
        "        (model(next(data)) / 4).backward()\n"
        "    optim.step()\n"
        "    optim.zero_grad()\n"
    )
    [entry] = [u for u in as_json(path)["unresolved"] if "backward" in u["message"]]
    assert entry["line"] == 4
    assert "`optim.step()` at line 7 (`optim` is read as the imported module" in entry["message"]


def test_roles_from_nested_wrapper_slots(tmp_path: Path) -> None:
    """``net, [a, b] = amp.initialize(net, [opt1, opt2])``: each name's evidence is the
    wrapper and its nested slot, around the optimizer it wraps."""
    path = tmp_path / "train.py"
    path.write_text(
        "import torch\n"
        "from apex import amp\n"
        "\n"
        "def fit(net, loader):\n"
        "    first = torch.optim.SGD(net.parameters(), lr=0.1)\n"
        "    second = torch.optim.Adam(net.parameters())\n"
        "    net, [a, b] = amp.initialize(net, [first, second])\n"
        "    for x in loader:\n"
        "        a.zero_grad()\n"
        "        b.zero_grad()\n"
        "        net(x).sum().backward()\n"
        "        a.step()\n"
        "        b.step()\n"
    )
    roles = {(r["function"], r["name"]): r for r in as_json(path)["roles"]}
    assert roles[("fit", "b")]["kind"] == "torch.optim.Adam"
    assert roles[("fit", "b")]["evidence"] == (
        "wrapper `apex.amp.initialize` at line 7, nested slot (1, 1), "
        "around `torch.optim.Adam` at line 6"
    )
