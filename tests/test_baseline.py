"""Baselines: create, unchanged run clean, lines inserted above, a fixed finding, a new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from trainlint.cli import main

TRAIN = (
    "import torch\n"
    "\n"
    "def train(model, optimizer, loader):\n"
    "    for x, y in loader:\n"
    "        optimizer.zero_grad\n"
    "        loss = model(x, y)\n"
    "        loss.backward()\n"
    "        optimizer.step()\n"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "train.py").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", "--no-cache", "--format", "json", *args, "."])


def findings(result: Result) -> list[dict]:
    return json.loads(result.stdout)["findings"]


def test_create_then_unchanged_run_is_clean(project: Path) -> None:
    before = check()
    assert before.exit_code == 1 and findings(before)
    created = check("--baseline", "tl.json", "--create-baseline")
    assert created.exit_code == 0, created.output
    recorded = json.loads((project / "tl.json").read_text())
    assert recorded["version"] == 1 and recorded["findings"]
    after = check("--baseline", "tl.json")
    assert after.exit_code == 0 and findings(after) == []


def test_lines_inserted_above_keep_the_match(project: Path) -> None:
    check("--baseline", "tl.json", "--create-baseline")
    (project / "train.py").write_text('"""Now documented."""\n\n\n' + TRAIN)
    after = check("--baseline", "tl.json")
    assert findings(after) == [] and after.exit_code == 0


def test_a_new_finding_is_reported_and_a_fixed_one_drops_out(project: Path) -> None:
    check("--baseline", "tl.json", "--create-baseline")
    worse = TRAIN + "\n\ndef other(opt):\n    opt.zero_grad\n"
    (project / "train.py").write_text(worse)
    after = check("--baseline", "tl.json")
    assert after.exit_code == 1
    assert [(f["code"], f["line"]) for f in findings(after)] == [("TL405", 12)]
    fixed = TRAIN.replace("optimizer.zero_grad\n", "optimizer.zero_grad()\n")
    (project / "train.py").write_text(fixed)
    cleaned = check("--baseline", "tl.json")
    assert cleaned.exit_code == 0 and findings(cleaned) == []
    assert "baseline entries no longer match" in cleaned.stderr


def test_two_equal_findings_and_a_third(project: Path) -> None:
    twice = "def f(opt, o2):\n    opt.zero_grad\n    opt.zero_grad\n"
    (project / "train.py").write_text(twice)
    check("--baseline", "tl.json", "--create-baseline")
    (project / "train.py").write_text(twice + "    opt.zero_grad\n")
    assert len(findings(check("--baseline", "tl.json"))) == 1


def test_baseline_from_config_and_errors(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.trainlint]\nbaseline = "tl.json"\n')
    missing = check()
    assert missing.exit_code == 2 and "baseline not found" in missing.stderr
    assert check("--create-baseline").exit_code == 0
    assert check().exit_code == 0
    (project / "tl.json").write_text("{not json")
    broken = check()
    assert broken.exit_code == 2 and "tl.json" in broken.stderr
