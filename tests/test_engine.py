"""The run: deterministic order across processes, the prefilter, the size cap, streaming."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainlint import pool
from trainlint.engine import FileAnalyzer, FileResult, RunOptions, run
from trainlint.rule import load_registry

REGISTRY = load_registry()
CODES = ("TL405", "TL504")
# Trigger words, pieces of them and near misses, for the prefilter's property test.
_WORDS = {t for rule in REGISTRY.values() for t in rule.triggers}
_WORDS |= {w[: len(w) // 2] for w in _WORDS} | {w[1:] for w in _WORDS} | {"x", "step_", "."}

FLAGGED = """\
import torch

def train(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad
        loss = model(x).sum()
        loss.backward()
        optimizer.step()
"""
CLEAN_TRAINING = """\
import torch

def train(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
"""
UNRELATED = """\
def add(a, b):
    return a + b
"""


def write_corpus(root: Path, count: int) -> list[Path]:
    """A mix of flagged, clean, unrelated, broken and oversized files, in a fixed order."""
    paths = []
    for index in range(count):
        kind = index % 5
        path = root / f"dir{index % 3}" / f"file_{index:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == 0:
            text = FLAGGED + f"\n# file {index}\n"
        elif kind == 1:
            text = CLEAN_TRAINING
        elif kind == 2:
            text = UNRELATED * (index + 1)
        elif kind == 3:
            text = "def broken(:\n    optimizer.step()\n"
        else:
            text = FLAGGED.replace("zero_grad\n", "zero_grad()\n")
            text += "torch.nn.Identity().forward(1)\n"
        path.write_text(text)
        paths.append(path)
    return paths


def outcome(results: list[FileResult]) -> list[tuple]:
    return [
        (r.display, r.error, r.error_line, r.skipped, r.parsed, [f.to_dict() for f in r.findings])
        for r in results
    ]


def options(root: Path, **changes) -> RunOptions:
    return RunOptions(codes=CODES, root=root, **changes)


def test_order_is_the_same_with_one_and_two_processes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(pool, "CHUNK_FILES", 3)  # many chunks, so workers interleave
    paths = write_corpus(tmp_path, 60)
    one = list(run(paths, options(tmp_path, jobs=1)))
    two = list(run(paths, options(tmp_path, jobs=2)))
    assert [r.display for r in one] == [str(p.relative_to(tmp_path)) for p in paths]
    assert outcome(one) == outcome(two)
    assert sum(len(r.findings) for r in two) == 24  # 12 flagged + 12 forward() files
    assert sum(r.error is not None for r in two) == 12


def test_reversed_input_gives_reversed_output(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path, 30)
    forward = outcome(list(run(paths, options(tmp_path, jobs=2))))
    backward = outcome(list(run(list(reversed(paths)), options(tmp_path, jobs=2))))
    assert backward == list(reversed(forward))


def test_prefilter_skips_files_no_rule_needs(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path, 20)
    results = list(run(paths, options(tmp_path, jobs=1)))
    parsed = [r.display for r in results if r.parsed]
    skipped = [r.display for r in results if not r.parsed]
    # kinds 0, 1, 3 (syntax error, but mentions `.step`) and 4 mention a trigger word
    assert len(parsed) == 16
    assert skipped == [str(p.relative_to(tmp_path)) for p in paths[2::5]]
    assert all(not r.findings and r.error is None for r in results if not r.parsed)


def test_prefilter_selects_exactly_the_rules_whose_triggers_appear() -> None:
    analyzer = FileAnalyzer(RunOptions(codes=CODES), REGISTRY)
    assert [r.code for r in analyzer.wanted(UNRELATED)] == []
    assert [r.code for r in analyzer.wanted("net.forward(x)")] == ["TL504"]
    assert [r.code for r in analyzer.wanted("opt.step()\nnet.forward(x)")] == ["TL405", "TL504"]


def test_files_over_the_size_cap_are_skipped_with_a_message(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text(FLAGGED + "x = 1\n" * 2000)
    small = tmp_path / "small.py"
    small.write_text(FLAGGED)
    results = list(run([big, small], options(tmp_path, jobs=1, max_file_size=5000)))
    assert results[0].skipped is not None
    assert results[0].skipped.startswith("skipped: too large")
    assert not results[0].parsed and not results[0].findings and results[0].error is None
    assert results[1].skipped is None and len(results[1].findings) == 1


def test_size_cap_zero_means_no_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text(FLAGGED + "x = 1\n" * 2000)
    (result,) = run([big], options(tmp_path, jobs=1, max_file_size=0))
    assert result.skipped is None and len(result.findings) == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_stream_before_the_input_is_exhausted(tmp_path: Path, jobs: int) -> None:
    paths = write_corpus(tmp_path, 250)
    pulled = 0

    def lazily() -> Iterator[Path]:
        nonlocal pulled
        for path in paths:
            pulled += 1
            yield path

    results = run(lazily(), options(tmp_path, jobs=jobs))
    first = next(results)
    assert first.display == str(paths[0].relative_to(tmp_path))
    assert pulled < len(paths)  # the first result came out while paths were still unread
    rest = list(results)
    assert len(rest) == len(paths) - 1


def test_on_result_sees_every_result_in_order(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path, 12)
    seen: list[str] = []
    results = list(
        run(paths, options(tmp_path, jobs=2), on_result=lambda r: seen.append(r.display))
    )
    assert seen == [r.display for r in results]


def test_per_file_ignores_apply_by_path(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(FLAGGED)
    (tmp_path / "b.py").write_text(FLAGGED)
    ignores = (("b.py", frozenset({"TL405"})),)
    results = list(
        run(
            [tmp_path / "a.py", tmp_path / "b.py"],
            options(tmp_path, jobs=1, per_file_ignores=ignores),
        )
    )
    assert [len(r.findings) for r in results] == [1, 0]


def test_unreadable_and_missing_files_are_errors_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "folder.py").mkdir()
    good = tmp_path / "good.py"
    good.write_text(FLAGGED)
    results = list(run([tmp_path / "gone.py", tmp_path / "folder.py", good], options(tmp_path)))
    assert results[0].error and "not found" in results[0].error
    assert results[1].error and "directory" in results[1].error
    assert len(results[2].findings) == 1


def test_analyze_file_is_the_same_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(FLAGGED)
    analyzer = FileAnalyzer(options(tmp_path), REGISTRY)
    direct = analyzer.analyze_file(path, "train.py")
    (through_run,) = run([path], options(tmp_path, jobs=1))
    assert outcome([direct]) == outcome([through_run])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(_WORDS)), max_size=8).map(" ".join))
def test_prefilter_is_exactly_substring_matching(text: str) -> None:
    analyzer = FileAnalyzer(RunOptions(codes=tuple(REGISTRY)), REGISTRY)
    naive = [r for r in analyzer.rules if not r.triggers or any(t in text for t in r.triggers)]
    assert analyzer.wanted(text) == naive
