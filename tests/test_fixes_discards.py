"""TL501's and TL502's unsafe fixes, exactly: wrap in ``nn.ModuleList``/``nn.Parameter``,
assign a discarded result back."""

from __future__ import annotations

from pathlib import Path

from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.fixes import applicable, fix_text
from trainlint.rule import load_registry

REGISTRY = load_registry()
ANALYZER = FileAnalyzer(RunOptions(codes=tuple(REGISTRY)), REGISTRY)

TL501_SOURCE = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = [nn.Linear(4, 4) for _ in range(3)]
        self.pair = (nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1))
        self.heads = {"a": nn.Linear(4, 1), "b": nn.Linear(4, 2)}
        self.by_index = {0: nn.Linear(4, 1)}
        self.gain = torch.ones(4, requires_grad=True)
"""

TL502_SOURCE = """\
import torch


def prepare(batch: torch.Tensor, device):
    batch.to(device)
    batch.float().cuda()
    return batch
"""


def _findings(tmp_path: Path, source: str, code: str) -> list:
    path = tmp_path / "t.py"
    path.write_text(source)
    result = ANALYZER.analyze_file(path, path.name)
    return [f for f in result.findings if f.code == code]


def test_tl501_wraps_containers_and_tensors(tmp_path: Path) -> None:
    findings = _findings(tmp_path, TL501_SOURCE, "TL501")
    assert len(findings) == 5
    fixable = [f for f in findings if applicable(f, unsafe=True)]
    assert not any(applicable(f, unsafe=False) for f in findings)
    assert len(fixable) == 4  # ``ModuleDict`` needs string keys: no edit for ``{0: ...}``
    done = fix_text(TL501_SOURCE, fixable)
    expected = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
        self.pair = nn.ModuleList([nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 2)})
        self.by_index = {0: nn.Linear(4, 1)}
        self.gain = nn.Parameter(torch.ones(4, requires_grad=True))
"""
    assert done.text == expected
    left = _findings(tmp_path, done.text, "TL501")
    assert [f.line for f in left] == [11]


def test_tl502_assigns_the_result_back(tmp_path: Path) -> None:
    findings = _findings(tmp_path, TL502_SOURCE, "TL502")
    assert [f.line for f in findings] == [5, 6]
    # the second one's receiver is a call: nothing to assign to, advice only
    assert [f.applicability for f in findings] == ["unsafe", None]
    done = fix_text(TL502_SOURCE, findings[:1])
    assert done.text == TL502_SOURCE.replace("    batch.to(device)", "    batch = batch.to(device)")
