"""TL505's unsafe fix: capture ``load_state_dict(..., strict=False)``'s result and check it,
in .py files and notebooks, through ``check --diff`` and ``check --fix --unsafe-fixes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.fixes import applicable, fix_text
from trainlint.fixrun import fix_results
from trainlint.rule import load_registry

REGISTRY = load_registry()
OPTIONS = RunOptions(codes=tuple(REGISTRY))
ANALYZER = FileAnalyzer(OPTIONS, REGISTRY)

SOURCE = """\
import torch


def load(model, path):
    model.load_state_dict(torch.load(path), strict=False)  # new
    return model


def restore(model, path):
    msg = model.load_state_dict(torch.load(path), strict=False)
    return model
"""

FIXED = """\
import torch


def load(model, path):
    missing_keys, unexpected_keys = model.load_state_dict(torch.load(path), strict=False)  # new
    if missing_keys or unexpected_keys:
        print(f"missing keys: {missing_keys}, unexpected keys: {unexpected_keys}")
    return model


def restore(model, path):
    msg = model.load_state_dict(torch.load(path), strict=False)
    if msg.missing_keys or msg.unexpected_keys:
        print(f"missing keys: {msg.missing_keys}, unexpected keys: {msg.unexpected_keys}")
    return model
"""


def _tl505(path: Path) -> list:
    return [f for f in ANALYZER.analyze_file(path, path.name).findings if f.code == "TL505"]


def test_fix_text_exactly_and_clean_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(SOURCE)
    findings = _tl505(path)
    assert [f.applicability for f in findings] == ["unsafe", "unsafe"]
    assert not any(applicable(f, unsafe=False) for f in findings)
    done = fix_text(SOURCE, findings)
    assert done.text == FIXED
    path.write_text(done.text)
    assert _tl505(path) == []


def test_new_names_avoid_names_the_file_already_uses(tmp_path: Path) -> None:
    source = (
        "def load(model, sd, missing_keys=()):\n"
        "    model.load_state_dict(sd, strict=False)\n"
        "    return missing_keys\n"
    )
    path = tmp_path / "t.py"
    path.write_text(source)
    done = fix_text(source, _tl505(path))
    assert "    missing_keys_1, unexpected_keys_1 = model.load_state_dict(sd, strict=False)\n" in (
        done.text
    )
    assert "    return missing_keys\n" in done.text


def test_a_statement_sharing_its_line_gets_no_edit(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text("def load(model, sd):\n    model.load_state_dict(sd, strict=False); x = 1\n")
    [finding] = _tl505(path)
    assert finding.edits == () and finding.applicability is None


def test_notebook_fix_edits_only_the_cell(tmp_path: Path) -> None:
    cells = [
        "import torch\nmodel = torch.nn.Linear(2, 2)",
        "def load(m, path):\n    m.load_state_dict(torch.load(path), strict=False)",
        "print(model)",
    ]
    document = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": 1,
                "metadata": {"id": str(n)},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}],
                "source": source.splitlines(keepends=True),
            }
            for n, source in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(document, indent=1))
    result = ANALYZER.analyze_file(path, "nb.ipynb")
    assert [f.code for f in result.findings] == ["TL505"]
    final, report = fix_results([result], OPTIONS, unsafe=True)
    fixed = json.loads(report.files[0].fixed)
    assert fixed["cells"][1]["source"] == [
        "def load(m, path):\n",
        "    missing_keys, unexpected_keys = m.load_state_dict(torch.load(path), strict=False)\n",
        "    if missing_keys or unexpected_keys:\n",
        '        print(f"missing keys: {missing_keys}, unexpected keys: {unexpected_keys}")',
    ]
    for index in (0, 2):
        assert fixed["cells"][index] == document["cells"][index]
    assert fixed["cells"][1]["outputs"] == document["cells"][1]["outputs"]
    assert fixed["metadata"] == document["metadata"]
    assert final[0].findings == []


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "load.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def _cli(*args: str):
    return CliRunner().invoke(main, ["check", "--no-cache", "--select", "TL505", *args])


def test_diff_shows_the_unsafe_fix_and_changes_nothing(project: Path) -> None:
    result = _cli("--diff", "--unsafe-fixes", ".")
    assert result.exit_code == 1, result.output
    assert "+    if missing_keys or unexpected_keys:\n" in result.output
    assert (project / "load.py").read_text() == SOURCE


def test_fix_needs_unsafe_fixes(project: Path) -> None:
    result = _cli("--fix", ".")
    assert "(2 more fixable with --unsafe-fixes)" in result.output
    assert (project / "load.py").read_text() == SOURCE
    result = _cli("--fix", "--unsafe-fixes", ".")
    assert "2 fixed in 1 file" in result.output, result.output
    assert (project / "load.py").read_text() == FIXED
    assert _cli(".").exit_code == 0
