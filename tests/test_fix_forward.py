"""TL504's safe fix through ``trainlint check --fix``: ``m.forward(x)`` becomes ``m(x)``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main

SOURCE = """\
import fused_softmax_cuda
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return self.proj.forward(x) + fused_softmax_cuda.forward(x, 1.0)[0]


block = Block()
y = block.forward(
    torch.zeros(2, 4),  # the batch
)
"""

FIXED = """\
import fused_softmax_cuda
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x):
        return self.proj(x) + fused_softmax_cuda.forward(x, 1.0)[0]


block = Block()
y = block(
    torch.zeros(2, 4),  # the batch
)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "model.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def _check(*args: str):
    return CliRunner().invoke(main, ["check", "--no-cache", "--select", "TL504", *args])


def test_fix_calls_the_module_and_leaves_the_extension(project: Path) -> None:
    before = _check("--fail-on", "info", ".")
    assert before.exit_code == 1 and before.output.count("TL504") >= 2, before.output
    result = _check("--fix", "--fail-on", "info", ".")
    assert result.exit_code == 0, result.output
    assert (project / "model.py").read_text() == FIXED
    assert "2 fixed in 1 file" in result.output
    assert _check("--fail-on", "info", ".").exit_code == 0
