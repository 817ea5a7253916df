"""The command line: every `check` option, the exit codes, `rules`, `explain`, `--version`.

Most tests run the click command in-process (CliRunner) in a throwaway project; a few run the
installed `trainlint` command and `python -m trainlint` as real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import trainlint.cli.running
from trainlint import __version__
from trainlint.cli import main
from trainlint.rule import load_registry

REGISTRY = load_registry()
#: TL405 (error): a method named but not called.
BAD = "def train(optimizer):\n    optimizer.zero_grad\n"
#: TL504 (info): module.forward called directly.
INFO = "import torch\n\n\ndef run(net: torch.nn.Module, x):\n    return net.forward(x)\n"
CLEAN = "def train(optimizer):\n    optimizer.zero_grad()\n"
#: A syntax error on line 2, in a file the prefilter does not skip (it mentions `.step`).
BROKEN = "optimizer.step()\ndef broken(:\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bad.py").write_text(BAD)
    (tmp_path / "info.py").write_text(INFO)
    (tmp_path / "clean.py").write_text(CLEAN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def check(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["check", "--no-cache", *map(str, args)])


def findings(*args: str | Path) -> tuple[int, list[tuple[str, str, int]], dict[str, Any]]:
    """(exit code, [(code, path, line)], the JSON document) of a JSON-format run."""
    result = check("--format", "json", *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    document = json.loads(result.stdout)
    found = [(f["code"], f["path"], f["line"]) for f in document["findings"]]
    return result.exit_code, found, document


def codes(*args: str | Path) -> list[str]:
    return sorted({code for code, _, _ in findings(*args)[1]})


# ----------------------------------------------------------------------------- exit codes
def test_findings_exit_1_and_clean_exit_0(project: Path) -> None:
    assert check("bad.py").exit_code == 1
    assert check("clean.py").exit_code == 0
    assert check("info.py").exit_code == 0  # info is below the default --fail-on warning


@pytest.mark.parametrize(
    ("fail_on", "path", "status"),
    [
        ("info", "info.py", 1),
        ("warning", "info.py", 0),
        ("error", "bad.py", 1),
        ("error", "info.py", 0),
        ("ERROR", "bad.py", 1),
    ],
)
def test_fail_on(project: Path, fail_on: str, path: str, status: int) -> None:
    assert check("--fail-on", fail_on, path).exit_code == status


def test_exit_zero_keeps_failures_at_2(project: Path) -> None:
    assert check("--exit-zero", "bad.py").exit_code == 0
    (project / "broken.py").write_text(BROKEN)
    assert check("--exit-zero", "bad.py", "broken.py").exit_code == 2


def test_file_that_cannot_be_analyzed_exits_2_and_the_rest_is_reported(project: Path) -> None:
    (project / "broken.py").write_text(BROKEN)
    status, found, document = findings(".")
    assert status == 2
    assert ("TL405", "bad.py", 2) in found
    assert [(e["path"], e["line"]) for e in document["errors"]] == [("broken.py", 2)]


def test_missing_path_exits_2_and_names_it(project: Path) -> None:
    result = check("bad.py", "nowhere.py")
    assert result.exit_code == 2
    assert "nowhere.py" in result.output and "bad.py:2:5" in result.output


def test_bad_usage_exits_2(project: Path) -> None:
    assert check("--fail-on", "fatal").exit_code == 2
    assert check("--no-such-option").exit_code == 2
    assert check("--format", "xml").exit_code == 2
    assert check("--jobs", "-1").exit_code == 2


def test_no_files_is_a_warning_not_a_failure(project: Path) -> None:
    (project / "empty").mkdir()
    result = check("empty")
    assert result.exit_code == 0
    assert "no Python files" in result.stderr


def test_unexpected_exception_is_one_line_not_a_traceback(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(trainlint.cli.running, "run", explode)
    result = check("bad.py")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "trainlint: error: internal error: RuntimeError: boom "
        "(please report it; TRAINLINT_TRACEBACK=1 shows the traceback)"
    ]


# ----------------------------------------------------------------------------- selection
def test_default_selection_is_every_rule(project: Path) -> None:
    assert codes(".", "--fail-on", "info") == ["TL405", "TL504"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--select", "TL504"], ["TL504"]),
        (["--select", "tl405"], ["TL405"]),
        (["--select", "TL4"], ["TL405"]),
        (["--select", "TL405,TL504"], ["TL405", "TL504"]),
        (["--select", "TL405 TL504"], ["TL405", "TL504"]),
        (["--select", "TL405", "--select", "TL504"], ["TL405", "TL504"]),
        (["--select", "ALL"], ["TL405", "TL504"]),
        (["--ignore", "TL405"], ["TL504"]),
        (["--ignore", "TL4,TL5"], []),
        (["--select", "TL504", "--extend-select", "TL405"], ["TL405", "TL504"]),
        (["--select", "TL4", "--ignore", "TL405"], []),
        (["--select", "TL405", "--ignore", "TL4"], ["TL405"]),  # the more specific one wins
        (["--ignore", "ALL", "--extend-select", "TL504"], ["TL504"]),
    ],
)
def test_select_ignore_extend_select(project: Path, args: list[str], expected: list[str]) -> None:
    assert codes("bad.py", "info.py", *args) == expected


@pytest.mark.parametrize("option", ["--select", "--ignore", "--extend-select"])
def test_unknown_code_exits_2_naming_the_option(project: Path, option: str) -> None:
    result = check(option, "TL405,TL4O5", "bad.py")  # a letter O: never a real code
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"trainlint: error: {option}: unknown rule code or prefix 'TL4O5' (did you mean TL405?)"
    )
    assert check(option, "XY", "bad.py").exit_code == 2


# ----------------------------------------------------------------------------- output options
def test_every_format_runs_and_sets_the_exit_code(project: Path) -> None:
    for fmt in ("text", "json", "sarif", "github", "junit"):
        result = check("--format", fmt, "bad.py", "clean.py")
        assert result.exit_code == 1, (fmt, result.output)
        assert "bad.py" in result.stdout


def test_json_report_paths_are_relative_to_the_cwd(project: Path) -> None:
    (project / "pkg").mkdir()
    (project / "pkg" / "train.py").write_text(BAD)
    assert findings("pkg")[1] == [("TL405", "pkg/train.py", 2)]
    assert findings(project / "pkg")[1] == [("TL405", "pkg/train.py", 2)]


def test_output_file(project: Path) -> None:
    result = check("--format", "json", "--output", "report.json", "bad.py")
    assert result.exit_code == 1
    assert "TL405" not in result.stdout
    document = json.loads((project / "report.json").read_text("utf-8"))
    assert [f["code"] for f in document["findings"]] == ["TL405"]


def test_text_output_file_has_no_colour(project: Path) -> None:
    result = check("--color", "-o", "report.txt", "bad.py")
    assert result.exit_code == 1
    text = (project / "report.txt").read_text("utf-8")
    assert "bad.py:2:5" in text and "\x1b[" not in text


def test_unwritable_output_file_exits_2(project: Path) -> None:
    result = check("--output", "missing-dir/report.json", "bad.py")
    assert result.exit_code == 2
    assert result.stderr.startswith("trainlint: error: missing-dir/report.json: cannot write")


def test_quiet_prints_findings_without_the_summary(project: Path) -> None:
    loud = check("bad.py").stdout.strip().splitlines()
    quiet = check("--quiet", "bad.py").stdout.strip().splitlines()
    assert any(line.startswith("bad.py:2:5: TL405") for line in quiet)
    assert len(quiet) < len(loud) and set(quiet) <= set(loud)
    assert check("-q", "clean.py").stdout.strip() == ""


def test_show_fixes(project: Path) -> None:
    assert "add the call parentheses" in check("bad.py").stdout
    assert "add the call parentheses" in check("--show-fixes", "bad.py").stdout
    assert "add the call parentheses" not in check("--no-show-fixes", "bad.py").stdout


def test_statistics(project: Path) -> None:
    plain = check("bad.py", "info.py").stdout
    counted = check("--statistics", "bad.py", "info.py").stdout
    assert "missing-call-parens" not in plain
    assert "missing-call-parens" in counted and "forward-called-directly" in counted


def test_jobs_do_not_change_the_result(project: Path) -> None:
    for index in range(12):
        (project / f"m{index:02}.py").write_text(BAD if index % 2 else CLEAN)
    serial = findings("--jobs", "1", ".")
    parallel = findings("--jobs", "3", ".")
    assert serial[0] == parallel[0] == 1
    assert serial[1] == parallel[1] and len(serial[1]) == 8  # 7 x TL405, 1 x TL504


def test_cache_is_written_unless_no_cache(project: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["check", "--no-cache", "bad.py"]).exit_code == 1
    assert not (project / ".trainlint_cache").exists()
    assert runner.invoke(main, ["check", "bad.py"]).exit_code == 1
    assert (project / ".trainlint_cache").is_dir()
    again = runner.invoke(main, ["check", "--format", "json", "bad.py"])
    assert json.loads(again.stdout)["findings"][0]["code"] == "TL405"  # served from the cache
    assert runner.invoke(main, ["check", "--cache-dir", "elsewhere", "bad.py"]).exit_code == 1
    assert (project / "elsewhere").is_dir()


def test_include_notebooks(project: Path) -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["# training\n"]},
            {"cell_type": "code", "source": ["%matplotlib inline\n", "import torch\n"]},
            {"cell_type": "code", "source": ["for batch in loader:\n", "    opt.zero_grad\n"]},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (project / "nb").mkdir()
    (project / "nb" / "train.ipynb").write_text(json.dumps(notebook))
    assert findings("nb")[1] == []
    status, found, document = findings("--include-notebooks", "nb")
    assert status == 1 and found == [("TL405", "nb/train.ipynb", 5)]
    assert document["findings"][0]["message"].endswith("(cell 3, line 2)")
    # named explicitly, a notebook is analyzed without the flag
    assert findings("nb/train.ipynb")[1] == [("TL405", "nb/train.ipynb", 5)]
    text = check("--include-notebooks", "nb").stdout
    assert "nb/train.ipynb:cell 3:2:5: TL405" in text


def test_force_exclude(project: Path) -> None:
    (project / "build").mkdir()
    (project / "build" / "gen.py").write_text(BAD)
    assert codes("build/gen.py") == ["TL405"]  # named explicitly: analyzed
    assert codes("--force-exclude", "build/gen.py", "clean.py") == []


# ----------------------------------------------------------------------------- configuration
def write_config(project: Path, body: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.trainlint]\n{body}\n")


def test_cli_options_override_the_config(project: Path) -> None:
    write_config(project, 'select = ["TL504"]\nfail-on = "error"\nformat = "json"')
    assert check("bad.py", "info.py").exit_code == 0  # TL504 only, and info < error
    assert json.loads(check("bad.py", "info.py").stdout)["findings"][0]["code"] == "TL504"
    assert check("--select", "TL405", "bad.py").exit_code == 1
    assert check("--fail-on", "info", "info.py").exit_code == 1
    assert check("--format", "text", "info.py").stdout.startswith("info.py:5:12: TL504")


def test_cli_select_wins_over_a_config_ignore(project: Path) -> None:
    write_config(project, 'ignore = ["TL405"]')
    assert codes("bad.py") == []
    assert codes("--select", "TL405", "bad.py") == ["TL405"]
    assert codes("--extend-select", "TL405", "bad.py") == ["TL405"]


def test_config_option_uses_that_file(project: Path) -> None:
    (project / "strict.toml").write_text('[tool.trainlint]\nignore = ["TL405"]\n')
    assert codes("--config", "strict.toml", "bad.py") == []
    result = check("--config", "absent.toml", "bad.py")
    assert result.exit_code == 2
    assert result.stderr.strip() == "trainlint: error: absent.toml: config file not found"


def test_config_error_exits_2_naming_file_and_key(project: Path) -> None:
    write_config(project, 'fail-on = "fatal"')
    result = check("bad.py")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("trainlint: error: ") and "pyproject.toml" in message
    assert "'fail-on'" in message and len(message.splitlines()) == 1


# ----------------------------------------------------------------------------- rules, explain
def test_rules_lists_every_rule() -> None:
    result = CliRunner().invoke(main, ["rules"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for code, rule in REGISTRY.items():
        (line,) = [line for line in lines if line.startswith(code)]
        assert rule.name in line and rule.severity.label in line


def test_rules_json_and_markdown() -> None:
    rows = json.loads(CliRunner().invoke(main, ["rules", "--format", "json"]).stdout)
    assert [row["code"] for row in rows] == list(REGISTRY)
    assert set(rows[0]) == {"code", "name", "severity", "frameworks", "fix", "summary"}
    by_code = {row["code"]: row for row in rows}
    assert by_code["TL405"]["fix"] == "always (safe)" and by_code["TL101"]["fix"] == "never"
    markdown = CliRunner().invoke(main, ["rules", "--format", "markdown"]).stdout
    assert markdown.startswith("| Code | Name |")
    assert all(f"| {code} | {rule.name} |" in markdown for code, rule in REGISTRY.items())


@pytest.mark.parametrize("spelling", ["TL405", "tl405", "missing-call-parens"])
def test_explain(spelling: str) -> None:
    result = CliRunner().invoke(main, ["explain", spelling])
    assert result.exit_code == 0
    assert result.stdout.startswith("# TL405 missing-call-parens")
    assert "fix: always (safe)" in result.stdout.splitlines()[2]
    for section in ("## What it does", "## Why is this bad?", "## Example", "## Use instead"):
        assert f"\n{section}\n" in result.stdout  # a heading, not an indented code block


@pytest.mark.parametrize("code", ["TL999", "TL4", "nonsense"])
def test_explain_unknown_exits_2(code: str) -> None:
    result = CliRunner().invoke(main, ["explain", code])
    assert result.exit_code == 2
    assert result.stderr.startswith("trainlint: error: ") and "trainlint rules" in result.stderr


def test_help_explains_options_and_exit_codes() -> None:
    text = CliRunner().invoke(main, ["check", "--help"]).stdout
    for option in (
        "--select",
        "--ignore",
        "--extend-select",
        "--fail-on",
        "--format",
        "--output",
        "--no-cache",
        "--jobs",
        "--quiet",
        "--show-fixes / --no-show-fixes",
        "--config",
        "--exit-zero",
        "--statistics",
        "--include-notebooks",
        "--force-exclude",
    ):
        assert option in text
    assert "Exit status:" in text and "2  trainlint could not do its job" in text
    assert "trainlint explain TL101" in CliRunner().invoke(main, ["--help"]).stdout


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"trainlint {__version__}"


# ----------------------------------------------------------------------------- real processes
def _environment() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1"}


def installed_command() -> Path:
    script = Path(sys.executable).parent / ("trainlint.exe" if os.name == "nt" else "trainlint")
    if not script.exists():
        pytest.skip(f"no trainlint script next to {sys.executable}: package not installed here")
    return script


def test_installed_command_runs(project: Path) -> None:
    command = [str(installed_command()), "check", "--no-cache", "bad.py", "clean.py"]
    done = subprocess.run(command, capture_output=True, text=True, env=_environment())
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("bad.py:2:5: TL405 [error]")
    assert done.stderr == ""
    clean = subprocess.run([*command[:3], "clean.py"], capture_output=True, env=_environment())
    assert clean.returncode == 0


def test_python_dash_m(project: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "trainlint", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == f"trainlint {__version__}"
    (project / "broken.py").write_text("\x00\x01binary")
    done = subprocess.run(
        [sys.executable, "-m", "trainlint", "check", "--no-cache", "--format", "json", "."],
        capture_output=True,
        text=True,
        env=_environment(),
    )
    assert done.returncode == 2, done.stderr
    document = json.loads(done.stdout)
    assert [f["path"] for f in document["findings"]] == ["bad.py", "info.py"]
    assert [e["path"] for e in document["errors"]] == ["broken.py"]
    assert "Traceback" not in done.stderr
