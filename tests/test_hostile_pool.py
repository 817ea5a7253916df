"""Dead workers and signals (issue 12: A5, A16, C27).

A worker that dies takes the chunks in flight with it: their files are re-run alone on a fresh
worker, and only a file that kills a worker a second time gets the error. Signals to the main
process end it promptly and leave no worker behind. The worker's analysis is replaced (the pool
forks, so the replacement reaches the workers) by one that kills its own process on a marked
file, or sleeps, so no test depends on timing: every wait is bounded and polls.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trainlint import pool
from trainlint.cli import main

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"  # TL405 on line 2
NEIGHBOURS = 24
MARK = "# KILL-THE-WORKER"

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="forked workers and /proc are Linux-specific"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    for n in range(NEIGHBOURS):
        (root / f"n{n:02}.py").write_text(GOOD)
    (root / "n05.py").write_text(GOOD + MARK + "\n")
    monkeypatch.chdir(root)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(pool, "CHUNK_FILES", 2)  # many chunks in flight when the worker dies
    return root


def _killing(once: Path | None) -> Any:
    real = pool._analyze_safely

    def analyze(analyzer: Any, source: Any, display: str) -> Any:
        if MARK in source.text and (once is None or not once.exists()):
            if once is not None:
                once.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(analyzer, source, display)

    return analyze


def check(jobs: str = "2") -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["check", "--no-cache", "--jobs", jobs, "--format", "json"])
    assert "internal error" not in result.output
    return result.exit_code, json.loads(result.stdout)


def test_file_that_kills_its_worker_twice_is_named_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "_analyze_safely", _killing(None))
    code, document = check()
    assert code == 2
    (error,) = document["errors"]
    assert error["path"] == "n05.py" and error["message"] == pool.DIED_TWICE
    found = {(f["path"], f["line"]) for f in document["findings"]}
    assert found == {(f"n{n:02}.py", 2) for n in range(NEIGHBOURS) if n != 5}


def test_file_that_killed_a_worker_once_gets_its_result(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "_analyze_safely", _killing(tmp_path / "died-once"))
    code, document = check()
    assert (tmp_path / "died-once").exists()  # a worker did die
    assert code == 1 and document["errors"] == []
    found = {(f["path"], f["line"]) for f in document["findings"]}
    assert found == {(f"n{n:02}.py", 2) for n in range(NEIGHBOURS)}


# ----------------------------------------------------------------------------- signals
#: Runs ``trainlint check --jobs 2`` with workers that never finish a file.
DRIVER = """
import sys, time
import trainlint.pool as pool
pool._analyze_safely = lambda analyzer, source, display: time.sleep(600)
from trainlint.cli import main
main(["check", "--no-cache", "--jobs", "2", "."])
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _poll(condition: Any, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("sig", "status"),
    [
        (signal.SIGINT, 130),
        (signal.SIGTERM, -signal.SIGTERM),
        (signal.SIGHUP, -signal.SIGHUP),
        (signal.SIGKILL, -signal.SIGKILL),  # nothing runs in the main process: workers notice
    ],
)
def test_signal_ends_the_run_promptly_and_leaves_no_worker(
    project: Path, sig: signal.Signals, status: int
) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        workers: set[int] = set()

        def started() -> bool:
            workers.update(_children(process.pid))
            return len(workers) >= 2

        assert _poll(started), "the pool never started"
        process.send_signal(sig)
        process.wait(timeout=60)
        assert process.returncode == status
        assert _poll(lambda: not any(_alive(w) for w in workers)), "a worker outlived the run"
        stderr = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ----------------------------------------------------------------------------- C27 broken pipe
@pytest.mark.parametrize("fmt", ["text", "github", "json", "sarif", "junit"])
def test_broken_pipe_has_one_exit_status_in_every_format(project: Path, fmt: str) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write is EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trainlint", "check", "--no-cache", "--format", fmt, "."],
            cwd=project,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


#: Runs ``trainlint check --jobs 1`` with an analysis that never ends (in Python code, as a
#: quadratic rule would), after leaving a mark that it started.
DRIVER_IN_PROCESS = """
import pathlib
import trainlint.engine as engine
def spin(self, *args):
    pathlib.Path("started").touch()
    while True:
        pass
engine.FileAnalyzer._analyze = spin
from trainlint.cli import main
main(["check", "--no-cache", "--jobs", "1", "."])
"""


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, -signal.SIGTERM)]
)
def test_signal_during_an_in_process_analysis(
    project: Path, sig: signal.Signals, status: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER_IN_PROCESS],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _poll((project / "started").exists), "the analysis never started"
        process.send_signal(sig)
        process.wait(timeout=60)
        assert process.returncode == status  # not 134: the analysis thread was stopped too
        stderr = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in stderr and "Fatal" not in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
