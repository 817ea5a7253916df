"""Hostile files and paths (issue 12, part A/B/D): FIFOs, devices, sparse giants, unreadable
directories, over-long paths, bad .gitignore lines, non-UTF-8 and control-character names,
symlinks out of the project. Each case is generated here, mixed with normal files whose
findings must still be reported, run with ``--jobs 1`` and with the pool; bad input is one line
naming the file and the cause, exit 2, never a traceback.

Cases that could hang when broken (FIFOs) run ``python -m trainlint`` in a subprocess with a
timeout, so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trainlint import cache as cache_module
from trainlint import discovery, safeio
from trainlint.cli import main

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"  # TL405 on line 2
TRAINING = "optimizer.step()\n"
#: Enough files needing a parse that ``--jobs 2`` starts the process pool.
NEIGHBOURS = 5
JOBS = ["1", "2"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "good.py").write_text(GOOD)
    for n in range(NEIGHBOURS):
        (root / f"n{n}.py").write_text(GOOD)
    monkeypatch.chdir(root)
    monkeypatch.setenv("NO_COLOR", "1")
    return root


def good_findings(document: dict[str, Any]) -> list[tuple[str, int]]:
    return [(f["path"], f["line"]) for f in document["findings"]]


EXPECTED = [("good.py", 2), *((f"n{n}.py", 2) for n in range(NEIGHBOURS))]


def invoke(*args: str, jobs: str = "1", cache: bool = False) -> tuple[int, dict[str, Any], str]:
    """``check --format json`` in-process: (exit code, document, stderr)."""
    flags = ["--jobs", jobs, "--format", "json"] + ([] if cache else ["--no-cache"])
    result = CliRunner().invoke(main, ["check", *flags, *args])
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


def spawn(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m trainlint check`` as a real process (a hang fails instead of hanging)."""
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "trainlint", "check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "internal error" not in result.stderr + result.stdout, result.stderr
    return result


def the_error(document: dict[str, Any], name: str) -> dict[str, Any]:
    (error,) = [e for e in document["errors"] if e["path"] == name]
    return error


# ----------------------------------------------------------------------------- A1 FIFOs
@pytest.mark.slow
@pytest.mark.parametrize("jobs", JOBS)
def test_fifo_in_a_walked_directory_is_reported_not_opened(project: Path, jobs: str) -> None:
    os.mkfifo(project / "x.py")
    result = spawn("--no-cache", "--jobs", jobs, "--format", "json", ".", cwd=project)
    document = json.loads(result.stdout)
    assert result.returncode == 2
    assert good_findings(document) == EXPECTED
    assert "a FIFO, not a regular file" in the_error(document, "x.py")["message"]


@pytest.mark.slow
def test_fifo_named_on_the_command_line_and_as_config(project: Path) -> None:
    os.mkfifo(project / "pipe.py")
    result = spawn("--no-cache", "--format", "json", "pipe.py", "good.py", cwd=project)
    document = json.loads(result.stdout)
    assert result.returncode == 2 and good_findings(document) == [("good.py", 2)]
    assert "a FIFO" in the_error(document, "pipe.py")["message"]
    os.mkfifo(project / "fifo.toml")
    result = spawn("--no-cache", "--config", "fifo.toml", ".", cwd=project)
    assert result.returncode == 2
    assert "fifo.toml: a FIFO, not a config file" in result.stderr


@pytest.mark.slow
def test_fifo_and_device_planted_as_cache_entries(project: Path) -> None:
    first = spawn("--jobs", "1", "--format", "json", ".", cwd=project)
    assert good_findings(json.loads(first.stdout)) == EXPECTED
    entries = [p for p in (project / ".trainlint_cache").rglob("*.json")]
    assert entries
    for number, entry in enumerate(entries):
        entry.unlink()
        if number % 2:
            os.mkfifo(entry)
        else:
            entry.symlink_to("/dev/zero")
    again = spawn("--jobs", "1", "--format", "json", ".", cwd=project)
    assert again.returncode == 1 and good_findings(json.loads(again.stdout)) == EXPECTED


# ----------------------------------------------------------------------------- A2 devices
@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_link_to_a_device_is_not_read(project: Path, jobs: str, device: str) -> None:
    (project / "x.py").symlink_to(device)
    status, document, _ = invoke(".", jobs=jobs)
    assert status == 2 and good_findings(document) == EXPECTED
    assert the_error(document, "x.py")["message"] == "a device, not a regular file; not read"


def test_config_pointing_at_a_device(project: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--no-cache", "--config", "/dev/zero", "."])
    assert result.exit_code == 2
    assert "/dev/zero: a device, not a config file" in result.stderr


def test_read_regular_stops_at_the_limit_even_when_stat_says_zero() -> None:
    """/proc files report size 0: the limit bounds the read itself."""
    with pytest.raises(safeio.TooLarge):
        safeio.read_regular("/proc/self/maps", 10)


# ----------------------------------------------------------------------------- A3 size first
@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("name", ["big.py", "big.ipynb"])
def test_sparse_giant_is_skipped_by_its_size_without_reading(
    project: Path, jobs: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(project / name, "wb") as handle:
        handle.truncate(6 * 1024**3)  # 6 GB of holes: no disk, but reading it would be fatal
    real_read = os.read

    def guarded_read(fd: int, count: int) -> bytes:
        assert count <= 1 << 20, "read in bounded pieces only"
        return real_read(fd, count)

    monkeypatch.setattr(safeio.os, "read", guarded_read)
    status, document, _ = invoke("--include-notebooks", ".", jobs=jobs)
    assert status == 1 and good_findings(document) == EXPECTED and document["errors"] == []
    (skipped,) = document["skipped"]
    assert skipped["path"] == name and "too large (6.4 GB >" in skipped["reason"]


def test_size_cap_is_checked_before_the_cache_reads_the_file(project: Path) -> None:
    with open(project / "big.py", "wb") as handle:
        handle.truncate(3 * 1024**3)
    status, document, _ = invoke(".", cache=True)
    assert status == 1 and good_findings(document) == EXPECTED
    assert [s["path"] for s in document["skipped"]] == ["big.py"]


# ----------------------------------------------------------------------------- A7 unreadable dirs
@pytest.mark.parametrize("jobs", JOBS)
def test_unreadable_directory_is_reported_and_the_run_goes_on(
    project: Path, jobs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulated (the tests may run as root): listing and probing ``locked/`` both fail."""
    (project / "locked").mkdir()
    (project / "locked" / "inner.py").write_text(GOOD)
    real_scandir, real_is_file = os.scandir, Path.is_file

    def scandir(path: Any = ".") -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def is_file(self: Path) -> bool:
        if self.parent.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(discovery.os, "scandir", scandir)
    monkeypatch.setattr(Path, "is_file", is_file)
    status, document, _ = invoke(".", jobs=jobs)
    assert status == 2 and good_findings(document) == EXPECTED
    assert the_error(document, "locked")["message"] == "cannot read directory: Permission denied"


def test_real_unreadable_directory(project: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not make a directory unreadable")
    (project / "locked").mkdir()
    (project / "locked" / "pyvenv.cfg").write_text("")
    (project / "locked").chmod(0)
    try:
        status, document, _ = invoke(".")
    finally:
        (project / "locked").chmod(0o755)
    assert status == 2 and good_findings(document) == EXPECTED


# ----------------------------------------------------------------------------- A8 unreadable file
def test_unreadable_file_named_on_the_command_line(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """click's own readability check (os.access) must not turn it into a usage error."""
    (project / "secret.py").write_text(TRAINING)
    real_read = safeio.read_regular

    def read_regular(path: Path | str, limit: int = 0) -> bytes:
        if Path(path).name == "secret.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, limit)

    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(safeio, "read_regular", read_regular)
    status, document, _ = invoke("secret.py", "good.py")
    assert status == 2 and good_findings(document) == [("good.py", 2)]
    assert the_error(document, "secret.py")["message"] == "permission denied"


# ----------------------------------------------------------------------------- A9 long paths
@pytest.mark.parametrize("jobs", JOBS)
def test_path_longer_than_path_max(project: Path, jobs: str) -> None:
    long_path = "/".join(["d" * 200] * 25) + "/x.py"  # ~5,000 characters
    status, document, _ = invoke(long_path, ".", jobs=jobs)
    assert status == 2 and good_findings(document) == EXPECTED
    assert "path too long" in the_error(document, long_path)["message"]
    long_name = "n" * 300 + ".py"  # over NAME_MAX
    status, document, _ = invoke(long_name, "good.py", jobs=jobs)
    assert status == 2 and "path too long" in the_error(document, long_name)["message"]


# ----------------------------------------------------------------------------- A10 .gitignore
@pytest.mark.parametrize("jobs", JOBS)
def test_gitignore_lines_pathspec_rejects_are_warned_and_skipped(project: Path, jobs: str) -> None:
    (project / ".gitignore").write_text("build\\\n!\n\\\n[z-a]\nignored.py\n")
    (project / "ignored.py").write_text(GOOD)
    status, document, stderr = invoke(".", jobs=jobs)
    assert status == 1 and good_findings(document) == EXPECTED  # ignored.py still ignored
    warnings = [line for line in stderr.splitlines() if "ignoring invalid pattern" in line]
    assert [w.split(".gitignore:")[1].split(":")[0] for w in warnings] == ["1", "2", "3", "4"]
    assert all(w.startswith("trainlint: warning: ") for w in warnings)


def test_invalid_exclude_pattern_in_the_config_names_the_key(project: Path) -> None:
    (project / "trainlint.toml").write_text('extend-exclude = ["ok/", "[z-a]"]\n')
    result = CliRunner().invoke(main, ["check", "--no-cache", "."])
    assert result.exit_code == 2
    assert "trainlint.toml: 'extend-exclude': invalid pattern '[z-a]'" in result.stderr


# ----------------------------------------------------------------------------- A11, D34 names
BAD_NAME = b"caf\xe9.py"


@pytest.mark.parametrize("fmt", ["sarif", "github", "text", "json", "junit"])
def test_file_name_that_is_not_utf8(project: Path, fmt: str) -> None:
    (project / os.fsdecode(BAD_NAME)).write_text(GOOD)
    result = CliRunner().invoke(
        main, ["check", "--no-cache", "--jobs", "1", "--format", fmt, "-o", "report.out"]
    )
    assert result.exit_code == 1, result.output
    text = (project / "report.out").read_bytes().decode("utf-8")  # always valid UTF-8
    assert "good.py" in text and "n4.py" in text
    if fmt == "sarif":
        uris = [
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in json.loads(text)["runs"][0]["results"]
        ]
        assert "caf%E9.py" in uris  # the file system's bytes, percent-encoded
    elif fmt in ("text", "github"):
        assert "caf\\xe9.py" in text  # the byte shown, never a raw surrogate
    elif fmt == "json":
        paths = [f["path"] for f in json.loads(text)["findings"]]
        assert os.fsencode(paths[0]) == BAD_NAME  # lossless: the surrogate escape


@pytest.mark.slow
def test_file_name_that_is_not_utf8_on_a_strict_utf8_stdout(project: Path) -> None:
    (project / os.fsdecode(BAD_NAME)).write_text(GOOD)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "trainlint", "check", "--no-cache", "--jobs", "1"],
        cwd=project,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    text = result.stdout.decode("utf-8")
    assert "caf\\xe9.py:2:5: TL405" in text and "n4.py:2:5: TL405" in text


def test_control_characters_never_reach_the_terminal(project: Path) -> None:
    (project / "x\x1b[2J.py").write_text(GOOD)
    (project / "y.py").write_text("def train(optimizer):\n    optimizer.zero_grad  # \x1b[31m\n")
    result = CliRunner().invoke(main, ["check", "--no-cache", "--jobs", "1", "."])
    assert "\x1b" not in result.output
    assert "x\\x1b[2J.py:2:5: TL405" in result.output
    result = CliRunner().invoke(main, ["check", "--no-cache", "--format", "github", "."])
    assert "\x1b" not in result.output and "x\\x1b[2J.py" in result.output


# ----------------------------------------------------------------------------- directory links
def test_directory_links_leaving_the_project_are_not_followed(
    project: Path, tmp_path: Path
) -> None:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    (datasets / "huge_set.py").write_text(GOOD)
    (project / "data").symlink_to(datasets, target_is_directory=True)
    (project / "pkg").mkdir()
    (project / "pkg" / "m.py").write_text(GOOD)
    (project / "alias").symlink_to(project / "pkg", target_is_directory=True)  # stays inside
    status, document, stderr = invoke(".")
    paths = [path for path, _ in good_findings(document)]
    assert "data/huge_set.py" not in paths
    assert "pkg/m.py" in paths or "alias/m.py" in paths  # one directory, walked once
    assert status == 1 and "data: not following a directory link that leaves the project" in stderr
    status, document, _ = invoke("data")  # named explicitly: asked for
    assert good_findings(document) == [("data/huge_set.py", 2)]


def test_absurd_jobs_are_bounded(project: Path) -> None:
    status, document, stderr = invoke(".", jobs="100000")
    assert status == 1 and good_findings(document) == EXPECTED
    assert "--jobs 100000 is more than this machine can use" in stderr


# ----------------------------------------------------------------------------- A17 deleted cwd
@pytest.mark.slow
def test_deleted_current_directory_with_absolute_paths(project: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    script = (
        f'mkdir "{gone}" && cd "{gone}" && rmdir "{gone}" && '
        f'exec "{sys.executable}" -m trainlint check --no-cache --format json "{project}"'
    )
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stderr
    assert len(json.loads(result.stdout)["findings"]) == 1 + NEIGHBOURS
    relative = script.replace(f'"{project}"', ".")
    result = subprocess.run(
        ["sh", "-c", relative], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2 and "current directory no longer exists" in result.stderr


# ----------------------------------------------------------------------------- D31, D32 encodings
@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize(
    ("codec", "name"), [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32")]
)
def test_utf16_and_utf32_files_are_named_as_such(
    project: Path, jobs: str, codec: str, name: str
) -> None:
    (project / "wide.py").write_bytes((TRAINING + "x = 1\n").encode(codec))
    status, document, _ = invoke(".", jobs=jobs)
    assert status == 2 and good_findings(document) == EXPECTED
    assert the_error(document, "wide.py")["message"] == f"{name} encoded; save it as UTF-8"


def test_real_binary_is_still_binary(project: Path) -> None:
    (project / "blob.py").write_bytes(bytes(range(256)) * 4)
    status, document, _ = invoke(".")
    assert "binary file" in the_error(document, "blob.py")["message"]


def test_cache_unusable_reason(tmp_path: Path) -> None:
    assert cache_module.unusable_reason(tmp_path / "new") is None
    assert cache_module.unusable_reason(Path(" ")) == "is empty"
    assert cache_module.unusable_reason(Path("a\0b")) == "contains a NUL byte"
    (tmp_path / "file").write_text("")
    assert cache_module.unusable_reason(tmp_path / "file") == "exists and is not a directory"
    assert "not a trainlint cache" in (cache_module.unusable_reason(tmp_path) or "")


def test_github_step_summary_with_a_name_that_is_not_utf8(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / os.fsdecode(b"bl\xf6b.py")).write_bytes(b"\x00\x01")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(project / "summary.md"))
    result = CliRunner().invoke(main, ["check", "--no-cache", "--format", "github", "."])
    assert result.exit_code == 2 and "internal error" not in result.output
    assert "bl\\xf6b.py" in (project / "summary.md").read_text("utf-8")
    assert "good.py" in result.output
