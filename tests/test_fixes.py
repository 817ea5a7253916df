"""Fixes: the edit mechanics, every rule's fix on its bad fixtures, --fix/--diff/--add-noqa.

Each rule that offers an edit has its fix applied to its bad fixtures: the fixed text is
checked exactly for one of them, every fixed file must be clean for that rule, and applying all
safe fixes to every bad fixture must leave code that parses.
"""

from __future__ import annotations

import json
from pathlib import Path

import libcst as cst
import pytest
from click.testing import CliRunner

from trainlint.cli import main
from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.fixes import FixError, applicable, apply_edits, fix_text, noqa_edits
from trainlint.fixrun import fix_results
from trainlint.rule import Span, TextEdit, load_registry

REGISTRY = load_registry()
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OPTIONS = RunOptions(codes=tuple(REGISTRY))
ANALYZER = FileAnalyzer(OPTIONS, REGISTRY)


def edit(line: int, column: int, end_line: int, end_column: int, content: str) -> TextEdit:
    return TextEdit(Span(line, column, end_line, end_column), content)


def findings_of(path: Path) -> list:
    result = ANALYZER.analyze_file(path, path.name)
    assert result.error is None, result.error
    return result.findings


# ---------------------------------------------------------------------- mechanics
def test_edits_replace_exact_regions_and_keep_the_rest() -> None:
    text = "a = 1  # one\r\nb = f(x)\n"
    fixed = apply_edits(text, [edit(2, 5, 2, 9, "g(x, y)"), edit(1, 5, 1, 6, "2")])
    assert fixed == "a = 2  # one\r\nb = g(x, y)\n"


def test_overlapping_or_out_of_range_edits_are_refused() -> None:
    with pytest.raises(FixError):
        apply_edits("abc\n", [edit(1, 1, 1, 3, "x"), edit(1, 2, 1, 4, "y")])
    with pytest.raises(FixError):
        apply_edits("abc\n", [edit(5, 1, 5, 2, "x")])


def test_an_overlapping_fix_waits_for_the_next_pass() -> None:
    first = _finding("x = 1\n", edit(1, 1, 1, 2, "y"))
    second = _finding("x = 1\n", edit(1, 1, 1, 6, "z = 2"))
    done = fix_text("x = 1\n", [first, second])
    assert done.text == "y = 1\n"
    assert done.deferred == [second]


def test_a_fix_that_would_not_parse_is_skipped_and_said_so() -> None:
    good = _finding("x = 1\ny = 2\n", edit(1, 5, 1, 6, "3"), line=1)
    broken = _finding("x = 1\ny = 2\n", edit(2, 5, 2, 6, "(("), line=2)
    done = fix_text("x = 1\ny = 2\n", [good, broken])
    assert done.text == "x = 3\ny = 2\n"
    assert [f for f, _ in done.skipped] == [broken]
    assert "would not parse" in done.skipped[0][1]


def _finding(text: str, text_edit: TextEdit, line: int = 1):
    from trainlint.rule import Finding, Severity

    return Finding(
        "t.py",
        line,
        1,
        line,
        2,
        "TL405",
        name="x",
        severity=Severity.ERROR,
        message="m",
        applicability="safe",
        edits=(text_edit,),
        fingerprint=str(text_edit),
    )


# ---------------------------------------------------------------------- each rule's fixes
def _fixable_rules() -> list[str]:
    return [code for code, rule in REGISTRY.items() if rule.fix_availability != "never"]


@pytest.mark.parametrize("code", _fixable_rules())
def test_each_fixable_rule_fixes_its_bad_fixtures(code: str, tmp_path: Path) -> None:
    rule = REGISTRY[code]
    folder = FIXTURES / f"{code}_{rule.name.replace('-', '_')}"
    fixed_any = False
    for bad in sorted(folder.glob("bad_*.py")):
        target = tmp_path / bad.name
        target.write_text(bad.read_text("utf-8"), "utf-8")
        findings = [f for f in findings_of(target) if f.code == code]
        wanted = [f for f in findings if applicable(f, unsafe=True)]
        if rule.fix_availability == "always":
            assert wanted and len(wanted) == len(findings), f"{bad.name}: a finding has no edit"
        if not wanted:
            continue
        done = fix_text(target.read_text("utf-8"), wanted)
        assert done.applied, f"{bad.name}: {done.skipped}"
        cst.parse_module(done.text)
        target.write_text(done.text, "utf-8")
        left = [f for f in findings_of(target) if f.code == code]
        assert len(left) < len(findings), f"{bad.name}: fixing did not remove a {code} finding"
        fixed_any = True
    assert fixed_any, f"{code} declares fixes but fixed none of its bad fixtures"


def test_applying_every_safe_fix_to_every_bad_fixture_leaves_code_that_parses(
    tmp_path: Path,
) -> None:
    for bad in sorted(FIXTURES.glob("TL*/bad_*.py")):
        findings = [f for f in findings_of(bad) if applicable(f, unsafe=False)]
        if findings:
            done = fix_text(bad.read_text("utf-8"), findings, check=False)
            cst.parse_module(done.text)  # raises when a fix breaks the file


def test_tl405_fix_text_exactly(tmp_path: Path) -> None:
    source = (
        "def train(model, optimizer, loader):\n"
        "    for x, y in loader:\n"
        "        optimizer.zero_grad   # forgot the parentheses\n"
        "        loss = model(x, y)\n"
        "        loss.backward()\n"
        "        optimizer.step()\n"
    )
    path = tmp_path / "t.py"
    path.write_text(source)
    findings = [f for f in findings_of(path) if f.code == "TL405"]
    assert [f.applicability for f in findings] == ["safe"]
    done = fix_text(source, findings)
    assert done.text == source.replace("zero_grad   #", "zero_grad()   #")


def test_tl001_fixes_exactly() -> None:
    text = (
        "import torch\n"
        "# trainlint: noqa: TL108\n"
        "x = torch.ones(2)  # noqa: TL201\n"
        "y = x  # noqa: TL201, E501\n"
        "z = y  # noqa: TL999 why it was silenced\n"
    )
    result = ANALYZER.analyze_text(text, Path("t.py"), "t.py")
    findings = [f for f in result.findings if f.code == "TL001"]
    assert len(findings) == 4
    done = fix_text(text, findings)
    assert done.text == (
        "import torch\nx = torch.ones(2)\ny = x  # noqa: E501\nz = y  # why it was silenced\n"
    )


# ---------------------------------------------------------------------- noqa insertion
def test_add_noqa_appends_extends_and_keeps_comments() -> None:
    text = (
        "def train(optimizer, other):\n"
        "    optimizer.zero_grad\n"
        "    optimizer.backward  # we explain why\n"
        "    other.zero_grad  # noqa: E501\n"
    )
    result = ANALYZER.analyze_text(text, Path("t.py"), "t.py")
    edits = noqa_edits(text, result.findings)
    done = fix_text(text, edits)
    assert done.text == (
        "def train(optimizer, other):\n"
        "    optimizer.zero_grad  # noqa: TL405\n"
        "    optimizer.backward  # noqa: TL405 # we explain why\n"
        "    other.zero_grad  # noqa: E501, TL405\n"
    )
    again = ANALYZER.analyze_text(done.text, Path("t.py"), "t.py")
    assert again.findings == []


# ---------------------------------------------------------------------- notebooks
def _notebook(cells: list[tuple[str, str]]) -> dict:
    return {
        "cells": [
            {
                "cell_type": kind,
                "metadata": {"tags": ["keep"]},
                "source": source.splitlines(keepends=True),
                **(
                    {
                        "execution_count": 3,
                        "outputs": [{"output_type": "stream", "name": "stdout", "text": ["ok\n"]}],
                    }
                    if kind == "code"
                    else {}
                ),
            }
            for kind, source in cells
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_notebook_fixes_edit_only_the_cell_and_keep_outputs(tmp_path: Path) -> None:
    document = _notebook(
        [
            ("markdown", "# Training\n"),
            ("code", "%matplotlib inline\nimport torch\n"),
            ("code", "def step(optimizer):\n    optimizer.zero_grad\n"),
        ]
    )
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(document, indent=1))
    result = ANALYZER.analyze_file(path, "nb.ipynb")
    final, report = fix_results([result], OPTIONS)
    [outcome] = report.files
    fixed = json.loads(outcome.fixed)
    assert fixed["cells"][2]["source"] == ["def step(optimizer):\n", "    optimizer.zero_grad()\n"]
    for index in (0, 1):
        assert fixed["cells"][index] == document["cells"][index]
    assert fixed["cells"][2]["outputs"] == document["cells"][2]["outputs"]
    assert fixed["metadata"] == document["metadata"]
    assert final[0].findings == []


# ---------------------------------------------------------------------- the CLI
@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bad.py").write_text("def train(optimizer):\n    optimizer.zero_grad\n")
    (tmp_path / "clean.py").write_text("def train(optimizer):\n    optimizer.zero_grad()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def _cli(*args: str):
    return CliRunner().invoke(main, ["check", "--no-cache", *args])


def test_diff_prints_and_changes_nothing(project: Path) -> None:
    result = _cli("--diff", ".")
    assert result.exit_code == 1, result.output
    assert "-    optimizer.zero_grad\n+    optimizer.zero_grad()\n" in result.output
    assert (project / "bad.py").read_text() == "def train(optimizer):\n    optimizer.zero_grad\n"
    assert _cli("--diff", "clean.py").exit_code == 0


def test_fix_writes_and_reports_what_remains(project: Path) -> None:
    result = _cli("--fix", ".")
    assert result.exit_code == 0, result.output
    assert (project / "bad.py").read_text() == "def train(optimizer):\n    optimizer.zero_grad()\n"
    assert "1 fixed in 1 file" in result.output
    assert _cli(".").exit_code == 0


def test_add_noqa_then_clean(project: Path) -> None:
    assert _cli("--add-noqa", ".").exit_code == 0
    assert (project / "bad.py").read_text().endswith("optimizer.zero_grad  # noqa: TL405\n")
    assert _cli(".").exit_code == 0


TL102_SOURCE = (
    "for inputs, targets in loader:\n"
    "    loss = criterion(model(inputs), targets)\n"
    "    loss.backward()\n"
    "    optimizer.zero_grad()  # clear\n"
    "    optimizer.step()\n"
    "    print(loss.item())\n"
)


def test_tl102_unsafe_fix_moves_the_clearing_after_the_step(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(TL102_SOURCE)
    findings = [f for f in findings_of(path) if f.code == "TL102"]
    assert [f.applicability for f in findings] == ["unsafe"]
    assert not applicable(findings[0], unsafe=False)
    done = fix_text(TL102_SOURCE, findings)
    assert done.text == (
        "for inputs, targets in loader:\n"
        "    loss = criterion(model(inputs), targets)\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    optimizer.zero_grad()  # clear\n"
        "    print(loss.item())\n"
    )


def test_fix_counts_what_unsafe_fixes_would_add(project: Path) -> None:
    (project / "t.py").write_text(TL102_SOURCE)
    result = _cli("--fix", "t.py")
    assert "0 fixed in 0 files (1 more fixable with --unsafe-fixes)" in result.output
    assert (project / "t.py").read_text() == TL102_SOURCE
    result = _cli("--fix", "--unsafe-fixes", "t.py")
    assert "1 fixed in 1 file" in result.output
    assert (
        "optimizer.step()\n    optimizer.zero_grad()  # clear\n" in (project / "t.py").read_text()
    )


TL201_SOURCE = (
    "import torch\n"
    "\n"
    "def train(model, loader, criterion, optimizer):\n"
    "    running = 0.0\n"
    "    for inputs, targets in loader:\n"
    "        optimizer.zero_grad()\n"
    "        loss = criterion(model(inputs), targets)\n"
    "        loss.backward()\n"
    "        optimizer.step()\n"
    "        running += loss  # keep the total\n"
    "    return running / len(loader)\n"
)


def test_tl201_unsafe_fix_converts_the_accumulated_operand(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(TL201_SOURCE)
    findings = [f for f in findings_of(path) if f.code == "TL201"]
    assert [f.applicability for f in findings] == ["unsafe"]
    assert not applicable(findings[0], unsafe=False)
    done = fix_text(TL201_SOURCE, findings)
    assert done.text == TL201_SOURCE.replace("running += loss ", "running += loss.item() ")
    path.write_text(done.text)
    assert not [f for f in findings_of(path) if f.code == "TL201"]


def test_tl201_through_a_helper_names_the_caller_argument_that_is_added() -> None:
    """``running_total(epoch_loss, loss)`` adds ``loss`` (the helper's ``value``), though the
    total passed back in is a graph value too; the fix converts that argument only."""
    path = FIXTURES / "TL201_loss_accumulated_without_item/bad_helper_adds_its_second_argument.py"
    found = {f.line: f for f in findings_of(path) if f.code == "TL201"}
    assert "adds `loss`, still attached" in found[27].message
    assert "into `epoch_loss`" in found[27].message
    assert found[27].fix.endswith("running_total(epoch_loss, loss.item())")
    assert "adds `loss`, still attached" in found[28].message
    assert found[28].fix.endswith("history.record(scores, loss.item())")
