"""The results cache with cross-file summaries: a file's entry is valid while the summaries
of the other modules it used are unchanged (not while their text is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlint.engine import FileResult, RunOptions, run

CODES = ("TL201", "TL202")
UTILS = """\
class AverageMeter:
    def __init__(self):
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n

    @property
    def avg(self):
        return self.sum / self.count


def describe(meter):
    return f"{meter.avg:.3f}"
"""
TRAIN = """\
import torch

from utils import AverageMeter


def train(model, loader, optimizer, criterion):
    losses = AverageMeter()
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.update(loss, x.size(0))
    return losses
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "utils.py").write_text(UTILS)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def check(project: Path, *names: str, **changes: object) -> dict[str, FileResult]:
    settings: dict = {"codes": CODES, "root": project, "cache_dir": project / ".cache", "jobs": 1}
    settings.update(changes)
    paths = [project / n for n in (names or ("train.py", "utils.py"))]
    return {r.display: r for r in run(paths, RunOptions(**settings))}


def codes(result: FileResult) -> list[str]:
    return [f.code for f in result.findings]


def test_entry_records_the_summaries_it_used(project: Path) -> None:
    results = check(project)
    train = results["train.py"]
    assert codes(train) == ["TL201"]
    assert [dep[:2] for dep in train.deps] == [["utils.py", "AverageMeter"]]
    again = check(project)
    assert again["train.py"].cached and codes(again["train.py"]) == ["TL201"]


def test_unrelated_edit_elsewhere_keeps_the_entry(project: Path) -> None:
    check(project)
    (project / "utils.py").write_text(UTILS.replace('":.3f"', '":.4f"').replace(".3f", ".4f"))
    results = check(project)
    assert not results["utils.py"].cached  # its own text changed
    assert results["train.py"].cached  # the summary it used did not


def test_summary_edit_elsewhere_invalidates_the_entry(project: Path) -> None:
    check(project)
    edited = UTILS.replace("self.sum += val * n", "self.sum += float(val) * n")
    (project / "utils.py").write_text(edited)
    results = check(project)
    assert not results["train.py"].cached
    assert codes(results["train.py"]) == []  # the meter now converts what it is given


def test_deleted_module_invalidates_the_entry(project: Path) -> None:
    check(project)
    (project / "utils.py").unlink()
    results = check(project, "train.py")
    assert not results["train.py"].cached
    assert codes(results["train.py"]) == []


def test_precommit_run_reads_imported_summaries_from_disk(project: Path) -> None:
    alone = check(project, "train.py", cache_dir=None)
    assert codes(alone["train.py"]) == ["TL201"]


def test_no_summaries_is_its_own_cache(project: Path) -> None:
    check(project)
    plain = check(project, summaries=False)
    assert not plain["train.py"].cached and codes(plain["train.py"]) == []
    assert check(project)["train.py"].cached


def test_summaries_are_reused_from_the_cache(project: Path) -> None:
    check(project)
    (project / "train.py").write_text(TRAIN + "\n# edited\n")
    from trainlint.engine import FileAnalyzer

    results = check(project, "train.py")
    assert not results["train.py"].cached and codes(results["train.py"]) == ["TL201"]
    analyzer = FileAnalyzer(RunOptions(codes=CODES, root=project, cache_dir=project / ".cache"))
    assert analyzer.project is not None
    analyzer.analyze_file(project / "train.py", "train.py")
    assert analyzer.project.read == 1 and analyzer.project.parsed == 0  # from the cache dir


def test_damaged_deps_are_not_trusted(project: Path) -> None:
    from trainlint.project import ProjectIndex

    index = ProjectIndex()
    assert not index.deps_valid(project / "train.py", "junk")
    assert not index.deps_valid(project / "train.py", [["utils.py", "AverageMeter"]])
    assert not index.deps_valid(project / "train.py", [["utils.py", "AverageMeter", "0" * 24]])
    assert index.deps_valid(project / "train.py", [])
