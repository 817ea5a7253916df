"""Options, configuration and the report's destination (issue 12: A12, A13, A15, B20, B21, C28,
C29, D30, D35-D37): an unset CI variable never turns the gate off or writes into the project,
the report never destroys a source, and every failure is one line naming the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trainlint.cli import main

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"  # TL405 on line 2
JOBS = ["1", "2"]
NEIGHBOURS = 5


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good.py").write_text(GOOD)
    for n in range(NEIGHBOURS):
        (tmp_path / f"n{n}.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def check(*args: str) -> Any:
    result = CliRunner().invoke(main, ["check", *args])
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


def findings_in(text: str) -> int:
    return len(json.loads(text)["findings"])


# ----------------------------------------------------------------------------- A12 -o an input
@pytest.mark.parametrize("jobs", JOBS)
def test_output_over_an_input_is_refused_and_the_source_kept(project: Path, jobs: str) -> None:
    for args in (["good.py", "-o", "good.py"], [".", "-o", "n3.py"], ["-o", "./n0.py"]):
        result = check("--no-cache", "--jobs", jobs, *args)
        assert result.exit_code == 2
        assert "refusing to write the report over" in result.stderr
    assert all((project / f"n{n}.py").read_text() == GOOD for n in range(NEIGHBOURS))
    assert (project / "good.py").read_text() == GOOD


def test_output_through_a_symlink_to_an_input_is_refused(project: Path) -> None:
    (project / "report.txt").symlink_to(project / "good.py")
    result = check("--no-cache", ".", "-o", "report.txt")
    assert result.exit_code == 2 and (project / "good.py").read_text() == GOOD


@pytest.mark.parametrize("jobs", JOBS)
def test_report_replaces_the_old_one_only_when_complete(
    project: Path, jobs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "report.json").write_text("previous report\n")
    (project / "report.json").chmod(0o640)
    result = check("--no-cache", "--jobs", jobs, "--format", "json", "-o", "report.json")
    assert result.exit_code == 1
    assert findings_in((project / "report.json").read_text()) == 1 + NEIGHBOURS
    assert (project / "report.json").stat().st_mode & 0o777 == 0o640  # its mode is kept
    assert not list(project.glob(".report.json.*"))  # no temporary file left behind

    import trainlint.cli.running

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    (project / "report.json").write_text("previous report\n")
    monkeypatch.setattr(trainlint.cli.running, "run", explode)
    result = CliRunner().invoke(
        main, ["check", "--no-cache", "--format", "json", "-o", "report.json"]
    )
    assert result.exit_code == 2
    assert (project / "report.json").read_text() == "previous report\n"  # not half a report
    assert not list(project.glob(".report.json.*"))


def test_new_report_gets_the_usual_permissions(project: Path) -> None:
    old = os.umask(0o022)
    try:
        check("--no-cache", "--format", "json", "-o", "fresh.json")
    finally:
        os.umask(old)
    assert (project / "fresh.json").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- B20, C29 writing
def test_full_disk_while_writing_the_report(project: Path) -> None:
    result = check("--no-cache", "-o", "/dev/full")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "trainlint: error: /dev/full: cannot write the report: No space left on device"
    )


def run_shell(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = f'exec "{sys.executable}" -m trainlint check --no-cache . {script}'
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_closed_or_full_stdout_is_an_error_not_silence(project: Path) -> None:
    closed = run_shell(">&-", project)
    assert closed.returncode == 2
    assert "standard output is closed" in closed.stderr and "Traceback" not in closed.stderr
    full = run_shell("> /dev/full", project)
    assert full.returncode == 2
    assert "cannot write the report to standard output: No space left on device" in full.stderr


def test_empty_output_option(project: Path) -> None:
    result = check("--no-cache", "-o", "")
    assert result.exit_code == 2 and "--output must not be empty" in result.stderr


# ----------------------------------------------------------------------------- A13 cache dir
def test_empty_cache_dir_option_is_rejected(project: Path) -> None:
    (project / ".gitignore").write_text("data/\n")
    result = check("--cache-dir", "", ".")
    assert result.exit_code == 2
    assert "--cache-dir must not be empty (an unset variable?)" in result.stderr
    assert (project / ".gitignore").read_text() == "data/\n"


@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("value", [".", "src"])
def test_cache_dir_that_is_the_project_is_not_written_into(
    project: Path, jobs: str, value: str
) -> None:
    (project / "src").mkdir()
    (project / "src" / "lib.py").write_text(GOOD)
    (project / ".gitignore").write_text("data/\n")
    (project / "pyproject.toml").write_text(f'[tool.trainlint]\ncache-dir = "{value}"\n')
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    result = check("--jobs", jobs, "--format", "json", ".")
    assert result.exit_code == 1 and findings_in(result.stdout) == 2 + NEIGHBOURS
    assert "is an existing directory that is not a trainlint cache" in result.stderr
    assert (project / ".gitignore").read_text() == "data/\n"
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_cache_marks_only_in_a_directory_trainlint_creates(project: Path) -> None:
    assert check("--cache-dir", "new_cache", ".").exit_code == 1
    assert (project / "new_cache" / "CACHEDIR.TAG").is_file()
    assert (project / "new_cache" / ".gitignore").read_text() == "*\n"
    again = check("--cache-dir", "new_cache", "--format", "json", ".")  # reused: it is ours
    assert again.exit_code == 1 and "warning" not in again.stderr
    assert all(f["path"] for f in json.loads(again.stdout)["findings"])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('cache-dir = "a\\u0000b"', "'cache-dir' contains a NUL byte"),
        ('cache-dir = ""', "'cache-dir' must not be empty (an unset variable?)"),
        ('cache-dir = "  "', "'cache-dir' must not be empty"),
        ("select = []", "'select' selects no rule; remove it to run every rule"),
        ('[tool.trainlint.per-file-ignores]\n"" = ["TL405"]', "the glob must not be empty"),
        ("x = " + "[" * 5000 + "]" * 5000, "invalid TOML"),
    ],
)
def test_config_values_that_are_errors(project: Path, body: str, expected: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.trainlint]\n{body}\n")
    result = check("--no-cache", ".")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"trainlint: error: {project / 'pyproject.toml'}: ")
    assert expected in line


def test_per_file_ignores_empty_glob_never_kills_the_run_midway(project: Path) -> None:
    (project / "trainlint.toml").write_text('[per-file-ignores]\n"" = ["TL405"]\n')
    result = check("--no-cache", ".")
    assert result.exit_code == 2 and "per-file-ignores." in result.stderr
    assert "Found" not in result.output  # refused before the run, not half-way


# ----------------------------------------------------------------------------- C28 empty select
@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_empty_select_is_an_error_not_a_silent_pass(project: Path, value: str) -> None:
    result = check("--no-cache", "--select", value, ".")
    assert result.exit_code == 2
    assert "--select: no rule code given (an empty value selects no rule)" in result.stderr


def test_empty_ignore_is_fine(project: Path) -> None:
    result = check("--no-cache", "--ignore", "", "--format", "json", ".")
    assert result.exit_code == 1 and findings_in(result.stdout) == 1 + NEIGHBOURS


# ----------------------------------------------------------------------------- D30, D35-D37
def test_no_all_checks_passed_when_something_was_not_analyzed(project: Path) -> None:
    for n in range(NEIGHBOURS):
        (project / f"n{n}.py").unlink()
    (project / "good.py").write_text("def train(optimizer):\n    optimizer.zero_grad()\n")
    (project / "blob.py").write_bytes(b"\x00\x01\x02")
    result = check("--no-cache", "--no-color", ".", "missing.py")
    assert result.exit_code == 2
    assert "All checks passed!" not in result.output
    assert "No problems found in the files that could be analyzed." in result.output
    assert (
        "2 files checked (1 parsed, 0 cached, 0 not training code, 1 unreadable)" in result.output
    )
    assert "2 files could not be analyzed (see above)." in result.output


def test_tiny_size_cap_says_bytes(project: Path) -> None:
    (project / "trainlint.toml").write_text("max-file-size = 10\n")
    result = check("--no-cache", "--format", "json", "good.py")
    (skipped,) = json.loads(result.stdout)["skipped"]
    assert skipped["reason"] == (
        "skipped: too large (46 bytes > 10 bytes; raise max-file-size to analyze it)"
    )


def test_config_with_a_utf8_bom(project: Path) -> None:
    (project / "trainlint.toml").write_bytes(b'\xef\xbb\xbfignore = ["TL405"]\n')
    result = check("--no-cache", "--format", "json", ".")
    assert result.exit_code == 0 and findings_in(result.stdout) == 0
    (project / "trainlint.toml").unlink()
    (project / "pyproject.toml").write_bytes(b'\xef\xbb\xbf[tool.trainlint]\nignore = ["TL405"]\n')
    result = check("--no-cache", "--format", "json", ".")
    assert result.exit_code == 0 and findings_in(result.stdout) == 0


def test_both_config_files_say_which_one_is_used(project: Path) -> None:
    (project / "trainlint.toml").write_text('ignore = ["TL405"]\n')
    (project / "pyproject.toml").write_text('[tool.trainlint]\nselect = ["TL1"]\n')
    result = check("--no-cache", "--format", "json", ".")
    assert result.exit_code == 0 and findings_in(result.stdout) == 0  # trainlint.toml won
    note = f"trainlint: note: using {project / 'trainlint.toml'}; pyproject.toml in the same"
    assert note in result.stderr
    assert "note" not in check("--no-cache", "-q", ".").stderr
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # no table: no note
    assert "note" not in check("--no-cache", ".").stderr
