"""The results cache: what invalidates it, and that a damaged cache is never trusted."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

import trainlint
from trainlint import cache as cache_module
from trainlint.cache import Cache, code_fingerprint, entry_key
from trainlint.engine import FileResult, RunOptions, run
from trainlint.rule import Severity

CODES = ("TL405", "TL504")
FLAGGED = """\
import torch

def train(model, loader, optimizer):
    for x, y in loader:
        optimizer.zero_grad
        model(x).sum().backward()
        optimizer.step()
"""
FIXED = FLAGGED.replace("zero_grad\n", "zero_grad()\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text(FLAGGED + f"# {name}\n")
    return tmp_path


def check(project: Path, **changes) -> list[FileResult]:
    settings = {"codes": CODES, "root": project, "cache_dir": project / ".cache", "jobs": 1}
    settings.update(changes)
    paths = sorted(project.glob("*.py"))
    return list(run(paths, RunOptions(**settings)))


def summary(results: list[FileResult]) -> list[tuple]:
    return [(r.display, r.error, [f.to_dict() for f in r.findings]) for r in results]


def entries(project: Path) -> list[Path]:
    return sorted((project / ".cache").glob("??/*.json"))


def test_second_run_is_served_from_the_cache(project: Path) -> None:
    first = check(project)
    second = check(project)
    assert [r.cached for r in first] == [False] * 3
    assert [r.cached for r in second] == [True] * 3
    assert summary(first) == summary(second)
    assert len(entries(project)) == 3
    assert (project / ".cache" / "CACHEDIR.TAG").is_file()


def test_a_changed_file_is_analyzed_again(project: Path) -> None:
    check(project)
    (project / "b.py").write_text(FIXED)
    results = check(project)
    assert [r.cached for r in results] == [True, False, True]
    assert [len(r.findings) for r in results] == [1, 0, 1]


@pytest.mark.parametrize(
    "change",
    [
        {"codes": ("TL405",)},
        {"codes": ("TL504", "TL405")},
        {"severity_overrides": (("TL405", Severity.INFO),)},
        {"max_file_size": 123_456},
    ],
    ids=["fewer-rules", "rule-order", "severity", "size-cap"],
)
def test_a_changed_configuration_invalidates(project: Path, change: dict) -> None:
    check(project)
    results = check(project, **change)
    assert not any(r.cached for r in results)
    assert all(r.cached for r in check(project, **change))


def test_severity_override_shows_after_a_config_change(project: Path) -> None:
    check(project)
    results = check(project, severity_overrides=(("TL405", Severity.INFO),))
    assert {f.severity for r in results for f in r.findings} == {Severity.INFO}


def test_per_file_ignores_apply_to_cached_results(project: Path) -> None:
    check(project)
    results = check(project, per_file_ignores=(("b.py", frozenset({"TL4"})),))
    assert all(r.cached for r in results)  # the ignores do not change what is cached
    assert [len(r.findings) for r in results] == [1, 0, 1]


def test_a_new_trainlint_version_invalidates(project: Path, monkeypatch) -> None:
    check(project)
    monkeypatch.setattr(trainlint, "__version__", "999.0.0")
    assert not any(r.cached for r in check(project))


def test_an_edited_rule_module_invalidates(tmp_path: Path, monkeypatch) -> None:
    module_file = tmp_path / "some_rule_pack.py"
    module_file.write_text("X = 1\n")
    module = type(sys)("some_rule_pack")
    module.__file__ = str(module_file)
    monkeypatch.setitem(sys.modules, "some_rule_pack", module)
    before = RunOptions(codes=CODES).fingerprint(["some_rule_pack"])
    module_file.write_text("X = 2  # edited\n")
    os.utime(module_file, ns=(1, 1))
    assert RunOptions(codes=CODES).fingerprint(["some_rule_pack"]) != before


def test_the_same_content_at_two_paths_reports_each_path(project: Path) -> None:
    (project / "b.py").write_text((project / "a.py").read_text())
    check(project)
    results = check(project)
    assert all(r.cached for r in results)
    assert [f.path for r in results[:2] for f in r.findings] == ["a.py", "b.py"]


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


def _damage_garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff not json at all")


def _forge(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the entry as a forger would: well-formed, with a matching checksum."""
    stored = json.loads(path.read_text())
    change(stored["entry"])
    stored["sum"] = cache_module._checksum(stored["entry"])
    path.write_text(json.dumps(stored))


def _damage_foreign_key(path: Path) -> None:
    _forge(path, lambda entry: entry.update(key="0" * 64))


def _damage_bad_finding(path: Path) -> None:
    _forge(path, lambda entry: entry.update(findings=[{"code": "TL405", "line": "seven"}]))


def _damage_unknown_code(path: Path) -> None:
    _forge(path, lambda entry: [f.update(code="XX999") for f in entry["findings"]])


def _damage_checksum(path: Path) -> None:
    stored = json.loads(path.read_text())
    stored["entry"]["findings"] = []  # a finding dropped, the checksum left as it was
    path.write_text(json.dumps(stored))


def _position(**values: object):  # type: ignore[no-untyped-def]
    def damage(path: Path) -> None:
        _forge(path, lambda entry: [f.update(values) for f in entry["findings"]])

    damage.__name__ = "_damage_" + "_".join(f"{k}_{v}" for k, v in values.items())
    return damage


def _damage_error_line(path: Path) -> None:
    _forge(path, lambda entry: entry.update(error="syntax error: forged", error_line=10**9))


def _damage_not_an_object(path: Path) -> None:
    path.write_text("[1, 2, 3]")


def _damage_empty(path: Path) -> None:
    path.write_text("")


@pytest.mark.parametrize(
    "damage",
    [
        _damage_truncate,
        _damage_garbage,
        _damage_foreign_key,
        _damage_bad_finding,
        _damage_unknown_code,
        _damage_checksum,
        _position(line=-5),
        _position(line=10**40, end_line=10**40),
        _position(line=True),
        _position(column=0),
        _position(end_line=10**6),
        _position(end_column=-1),
        _damage_error_line,
        _damage_not_an_object,
        _damage_empty,
    ],
)
def test_a_damaged_entry_is_ignored_and_recomputed(project: Path, damage) -> None:
    fresh = check(project)
    for path in entries(project):
        damage(path)
    results = check(project)
    assert not any(r.cached for r in results)
    assert summary(results) == summary(fresh)
    assert all(r.cached for r in check(project))  # and it was rewritten


def test_an_entry_replaced_by_a_directory_is_ignored(project: Path) -> None:
    check(project)
    for path in entries(project):
        path.unlink()
        path.mkdir()
    results = check(project)
    assert [len(r.findings) for r in results] == [1, 1, 1]


def test_an_unusable_cache_directory_does_not_fail_the_run(project: Path) -> None:
    blocker = project / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    results = check(project, cache_dir=blocker)
    assert [len(r.findings) for r in results] == [1, 1, 1]
    assert [r.error for r in results] == [None] * 3


def test_failing_writes_do_not_fail_the_run(project: Path, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache_module.os, "replace", refuse)
    results = check(project)
    assert [len(r.findings) for r in results] == [1, 1, 1]
    assert entries(project) == []
    assert not list((project / ".cache").rglob(".tmp-*"))  # no temp files left behind


def _write_many(directory: str, worker: int, rounds: int) -> None:
    cache = Cache(Path(directory))
    for round_number in range(rounds):
        for index in range(20):
            key = entry_key(f"content {index}".encode(), "run")
            findings = [{"writer": worker, "round": round_number, "pad": "x" * 5000}]
            cache.put(key, {"findings": findings, "error": None})


def test_concurrent_writers_never_leave_a_broken_entry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_many, args=(str(tmp_path), worker, 30)) for worker in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    cache = Cache(tmp_path)
    for index in range(20):
        entry = cache.get(entry_key(f"content {index}".encode(), "run"))
        assert entry is not None
        assert entry["findings"][0]["writer"] in (0, 1)
    assert not list(tmp_path.rglob(".tmp-*"))


def test_concurrent_runs_agree(project: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as workers:
        outcomes = workers.map(_check_summary, [str(project)] * 4)
    assert all(o == outcomes[0] for o in outcomes)
    assert summary(check(project)) == outcomes[0]


def _check_summary(directory: str) -> list[tuple]:
    return summary(check(Path(directory)))


def test_code_fingerprint_lists_trainlint_sources() -> None:
    files = [stamp[0] for stamp in code_fingerprint([])]
    assert any(f.endswith(os.path.join("trainlint", "engine.py")) for f in files)


def test_files_the_prefilter_skips_are_cached_too(project: Path) -> None:
    (project / "plain.py").write_text("def add(a, b):\n    return a + b\n")
    first = check(project)
    second = check(project)
    plain = [r for r in second if r.display == "plain.py"][0]
    assert not [r for r in first if r.display == "plain.py"][0].parsed
    assert plain.cached and not plain.parsed and not plain.findings


def test_a_warm_run_starts_no_process_pool(project: Path, monkeypatch) -> None:
    from trainlint import pool

    for index in range(30):
        (project / f"more_{index:02d}.py").write_text(FLAGGED + f"# {index}\n")
    check(project, jobs=2)

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started although everything is cached")

    monkeypatch.setattr(pool, "ProcessPoolExecutor", no_pool)
    results = check(project, jobs=2)
    assert len(results) == 33 and all(r.cached for r in results)


# ----------------------------------------------------------------------------- issue 12, C23/C24
def test_the_key_holds_the_python_and_libcst_versions(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    python, _, libcst = cache_module.environment()
    assert python == sys.version and libcst == importlib.metadata.version("libcst")
    check(project)
    upgraded = (python, sys.implementation.cache_tag, "99.0")
    monkeypatch.setattr(cache_module, "environment", lambda: upgraded)
    assert not any(r.cached for r in check(project))  # nothing cached under libcst 1.x is served
    assert all(r.cached for r in check(project))


def test_a_python_file_identical_to_a_cached_notebook_is_another_file(tmp_path: Path) -> None:
    cells = [{"cell_type": "code", "source": FLAGGED, "metadata": {}, "outputs": []}]
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    raw = json.dumps(notebook).encode()
    (tmp_path / "a.ipynb").write_bytes(raw)
    (tmp_path / "b.py").write_bytes(raw)  # a dict literal: valid Python, nothing to report
    options = RunOptions(codes=CODES, root=tmp_path, cache_dir=tmp_path / ".cache", jobs=1)
    (notebook_result,) = run([tmp_path / "a.ipynb"], options)
    assert [f.code for f in notebook_result.findings] == ["TL405"]
    (python_result,) = run([tmp_path / "b.py"], options)
    assert not python_result.cached and python_result.findings == []
