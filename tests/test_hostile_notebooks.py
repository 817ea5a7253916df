"""Notebooks as they come (issue 7 "Notebooks and encodings", issue 12 B19, D33): a magic inside
an open bracket is code, one broken cell hides no other cell, a lone surrogate is that cell's
problem, nbformat 3 is named, and errors speak in cell coordinates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trainlint import sources
from trainlint.cli import main

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"
JOBS = ["1", "2"]
#: A cell with a finding: TL405 on its line 2.
FINDING_CELL = "def step(opt):\n    opt.zero_grad\n"


def notebook(*cells: str | list[str], nbformat: int = 4) -> str:
    return json.dumps(
        {
            "cells": [{"cell_type": "code", "metadata": {}, "source": c} for c in cells],
            "metadata": {},
            "nbformat": nbformat,
            "nbformat_minor": 5,
        }
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "good.py").write_text(GOOD)
    for n in range(5):  # enough parse jobs for --jobs 2 to start the pool
        (tmp_path / f"n{n}.py").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def run_json(*args: str, jobs: str = "1") -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        main,
        ["check", "--no-cache", "--include-notebooks", "--jobs", jobs, "--format", "json", *args],
    )
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result.exit_code, json.loads(result.stdout)


def notebook_findings(document: dict[str, Any]) -> list[str]:
    return [f["message"] for f in document["findings"] if f["path"].endswith(".ipynb")]


def others_reported(document: dict[str, Any]) -> bool:
    paths = [f["path"] for f in document["findings"]]
    return "good.py" in paths and all(f"n{n}.py" in paths for n in range(5))


# ----------------------------------------------------------------------------- magics
def test_percent_line_inside_brackets_is_code_not_a_magic() -> None:
    cell = [
        "!pip install -q torch",  # a real magic makes the cell need neutralizing
        'print("epoch %d loss %.3f"',
        "      %(epoch, loss))",
        "x = [1,",
        "     !2]",  # not a magic either: inside the list (and not Python: stays broken)
    ]
    converted = sources.cell_to_python(cell)
    assert converted[0] == "pass  # !pip install -q torch"
    assert converted[1:3] == cell[1:3]
    assert converted[4] == "     !2]"


def test_magics_after_a_closed_bracket_or_string_are_still_magics() -> None:
    cell = ['s = """(', "%not a magic inside a string", '"""', "%matplotlib inline", "y = (1)"]
    converted = sources.cell_to_python(cell)
    assert converted[1] == "%not a magic inside a string"
    assert converted[3] == "pass  # %matplotlib inline"
    cell = ["x = 1 + \\", "    2", "%time f()", "value = '('  # (", "!ls"]
    converted = sources.cell_to_python(cell)
    assert converted[2] == "pass  # %time f()" and converted[4] == "pass  # !ls"


@pytest.mark.parametrize("jobs", JOBS)
def test_continued_format_call_in_a_notebook_is_analyzed(project: Path, jobs: str) -> None:
    cell = [
        "!nvidia-smi\n",
        "for epoch in range(3):\n",
        "    loss = 0.5\n",
        '    print("epoch %d loss %.3f"\n',
        "          %(epoch, loss))\n",
    ]
    (project / "nb.ipynb").write_text(notebook(cell, FINDING_CELL))
    status, document = run_json(".", jobs=jobs)
    assert status == 1 and document["errors"] == [] and others_reported(document)
    assert len(notebook_findings(document)) == 1


# ----------------------------------------------------------------------------- broken cells
@pytest.mark.parametrize("jobs", JOBS)
def test_one_broken_cell_hides_no_other_cell(project: Path, jobs: str) -> None:
    (project / "nb.ipynb").write_text(
        notebook(FINDING_CELL, "model = ???\n", "x = f(a b)\n", "def later(o):\n    o.zero_grad\n")
    )
    status, document = run_json(".", jobs=jobs)
    assert status == 2 and others_reported(document)  # 2: part of the notebook was skipped
    messages = notebook_findings(document)
    assert len(messages) == 2
    assert messages[0].endswith("(cell 1, line 2)") and messages[1].endswith("(cell 4, line 2)")
    (error,) = [e for e in document["errors"] if e["path"] == "nb.ipynb"]
    assert error["message"].startswith("syntax error: ")
    assert "(cell 2, line 1)" in error["message"] and "(cell 3, line 1)" in error["message"]


def test_broken_cell_in_text_output_speaks_in_cells(project: Path) -> None:
    (project / "nb.ipynb").write_text(notebook("x = 1\n", "opt.step()\ndef f(:\n"))
    result = CliRunner().invoke(
        main, ["check", "--no-cache", "--include-notebooks", "--no-color", "nb.ipynb"]
    )
    assert result.exit_code == 2
    (line,) = [row for row in result.output.splitlines() if "error" in row]
    assert line.startswith("nb.ipynb: error: syntax error: ")  # no joined-text line number
    assert line.endswith("(cell 2, line 2)")


def test_broken_cells_are_counted_even_without_training_code(project: Path) -> None:
    """The prefilter skips the notebook, but its broken cell is still an error."""
    (project / "nb.ipynb").write_text(notebook("x = 1\n", "y = ???\n"))
    status, document = run_json("nb.ipynb")
    assert status == 2
    (error,) = document["errors"]
    assert error["message"].endswith("(cell 2, line 1)")


def test_cells_with_top_level_await_are_python(project: Path) -> None:
    text, _, errors = sources.notebook_cells(notebook("await main()\n").encode())
    assert errors == [] and "await main()" in text


# ----------------------------------------------------------------------------- B19 surrogates
@pytest.mark.parametrize("jobs", JOBS)
def test_lone_surrogate_in_a_cell(project: Path, jobs: str) -> None:
    raw = notebook("s = 'X'\n", FINDING_CELL).replace("X", "\\ud800")
    assert "\\ud800" in raw  # valid JSON, not valid Unicode text
    (project / "nb.ipynb").write_text(raw)
    status, document = run_json(".", jobs=jobs)
    assert status == 2 and others_reported(document)
    assert len(notebook_findings(document)) == 1
    (error,) = [e for e in document["errors"] if e["path"] == "nb.ipynb"]
    assert error["message"] == "lone surrogate U+D800, not text (cell 1, line 1)"


# ----------------------------------------------------------------------------- D33 nbformat 3
def test_nbformat_3_is_named_unsupported(project: Path) -> None:
    old = {
        "nbformat": 3,
        "worksheets": [{"cells": [{"cell_type": "code", "input": "opt.zero_grad\n"}]}],
    }
    (project / "old.ipynb").write_text(json.dumps(old))
    status, document = run_json(".")
    assert status == 2 and others_reported(document)
    (error,) = document["errors"]
    assert error["message"].startswith("nbformat 3 notebook: not supported (only nbformat 4)")


def test_line_numbers_inside_an_error_message_are_translated() -> None:
    source = sources.SourceFile(Path("nb.ipynb"), "", b"", {7: (3, 2), 9: (3, 4)})

    class Result:
        findings: list[Any] = []
        error: str | None = "syntax error: bracket opened on line 7 never closed"
        error_line: int | None = 9

    result = Result()
    source.name_cells(result)
    assert result.error == (
        "syntax error: bracket opened on cell 3, line 2 never closed (cell 3, line 4)"
    )
