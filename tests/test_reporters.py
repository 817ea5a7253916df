"""The text, json, github and junit reporters on a synthetic run, then every format end to end
through the CLI. SARIF has its own file (tests/test_sarif_report.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from reporter_samples import (
    FINDINGS,
    SOURCE,
    TRICKY_MESSAGE,
    FakeTTY,
    clean_run,
    finding,
    render,
    sample_run,
)

from trainlint.cli import main
from trainlint.report.github import escape_data, escape_property
from trainlint.report.text import position, snippet
from trainlint.rule import Finding
from trainlint.sources import SourceFile

ANSI = re.compile(r"\x1b\[")
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------- text
def test_text_findings_markers_fixes_and_summary(tmp_path: Path) -> None:
    out = render("text", sample_run(tmp_path))
    assert not ANSI.search(out)  # not a terminal: no colour
    lines = out.splitlines()
    header = "pkg/train.py:3:2: TST101 [error] sample-error found"
    at = lines.index(header)
    # The tab before `optimizer` is drawn as 4 cells and the marker sits under the span.
    assert lines[at + 1] == "   3 |     optimizer.zero_grad"
    assert lines[at + 2] == "     |     " + "^" * len("optimizer.zero_grad")
    assert lines[at + 3] == "  fix: add the call parentheses: optimizer.zero_grad()"
    assert "pkg/train.py:1:1: TST303 [info] imports torch" in lines
    assert "pkg/broken.py:1: error: syntax error: unexpected token ':'" in lines
    assert "missing.py: error: no such file or directory" in lines
    assert "huge.py: warning: skipped: too large (2000 kB)" in lines
    assert "Found 3 problems: 1 error, 1 warning, 1 info (TST101: 1, TST202: 1, TST303: 1)." in out
    assert re.search(
        r"^4 files checked \(3 parsed, 0 cached, 0 not training code, 1 skipped\)", out, re.M
    )
    assert "2 files could not be analyzed" in out  # broken.py and missing.py


def test_text_marker_under_wide_characters(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    comment = SOURCE.splitlines()[3].index("#") + 1
    wide = finding("TST303", 4, comment + 2, comment + 4, message="wide")
    run.results[0].findings = [wide]
    lines = render("text", run).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("pkg/train.py:4:"))
    source_line, marker = lines[at + 1], lines[at + 2]
    start = marker.index("^")
    assert marker.count("^") == 4  # two characters, two cells each
    assert source_line[start] == "\u6f22"  # the marker starts under the first one


def test_text_quiet_and_no_fixes(tmp_path: Path) -> None:
    out = render("text", sample_run(tmp_path), quiet=True, show_fixes=False)
    assert "TST101 [error]" in out and "fix:" not in out
    assert "Found" not in out and "checked" not in out
    assert "pkg/broken.py:1: error" in out  # errors are never hidden


def test_text_statistics(tmp_path: Path) -> None:
    out = render("text", sample_run(tmp_path), statistics=True)
    assert re.search(r"^\s+1  TST202  warning\s+sample-warning$", out, re.M)


@pytest.mark.parametrize(
    ("no_color", "requested", "colored"),
    [("", None, True), ("1", None, False), ("1", True, True), ("", False, False)],
)
def test_text_colour_only_on_a_terminal_without_no_color(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_color: str,
    requested: bool | None,
    colored: bool,
) -> None:
    monkeypatch.setenv("NO_COLOR", no_color)
    out = render("text", sample_run(tmp_path), stream=FakeTTY(), color=requested)
    assert bool(ANSI.search(out)) is colored


def test_snippet_crops_long_lines_around_the_span() -> None:
    line = "x = [" + ", ".join(str(n) for n in range(400)) + "]"
    start = line.index("399")
    drawn = snippet(line, start, start + 3, max_width=60)
    assert len(drawn.text) <= 60 and drawn.text.startswith("...")
    assert drawn.text[drawn.marker_start : drawn.marker_start + drawn.marker_width] == "399"
    head = snippet(line, 0, 1, max_width=60)
    assert head.text.endswith("...") and head.marker_start == 0


def test_snippet_hides_control_characters() -> None:
    drawn = snippet("print('\x1b[31mred')", 0, 5)
    assert "\x1b" not in drawn.text and drawn.marker_width == 5


def test_snippet_span_past_the_end_still_marks_something() -> None:
    drawn = snippet("x = 1", 5, 9)
    assert drawn.marker_start == 5 and drawn.marker_width == 1


def test_notebook_findings_show_their_cell() -> None:
    source = SourceFile(Path("nb.ipynb"), "a\nb\n", b"", {1: (1, 1), 2: (3, 4)})
    found = Finding("nb.ipynb", 2, 5, 2, 6, "TST101", "sample-error", FINDINGS[1].severity, "m")
    assert position(found, source) == "nb.ipynb:cell 3:4:5"
    assert position(found, None) == "nb.ipynb:2:5"


# ---------------------------------------------------------------------------------------- json
def test_json_round_trip(tmp_path: Path) -> None:
    document = json.loads(render("json", sample_run(tmp_path)))
    assert {"version", "schema_version", "findings", "errors", "summary"} <= set(document)
    assert [Finding.from_dict(f) for f in document["findings"]] == FINDINGS
    parsed = [Finding.from_dict(f) for f in document["findings"]]
    # Only the position and code take part in Finding equality: compare the rest too.
    assert [(f.name, f.message, f.fix, f.severity) for f in parsed] == [
        (f.name, f.message, f.fix, f.severity) for f in FINDINGS
    ]
    assert set(document["findings"][0]) == {
        "code",
        "name",
        "severity",
        "path",
        "line",
        "column",
        "end_line",
        "end_column",
        "message",
        "fix",
        "fix_applicability",
        "fix_edits",
        "fingerprint",
    }
    assert document["errors"] == [
        {"path": "missing.py", "message": "no such file or directory", "line": None},
        {"path": "pkg/broken.py", "message": "syntax error: unexpected token ':'", "line": 1},
    ]
    assert document["skipped"] == [{"path": "huge.py", "reason": "skipped: too large (2000 kB)"}]
    assert document["summary"]["by_severity"] == {"error": 1, "warning": 1, "info": 1}


def test_json_schema_is_documented(tmp_path: Path) -> None:
    documented = (REPO / "docs" / "json-output.md").read_text("utf-8")
    document = json.loads(render("json", sample_run(tmp_path)))
    keys = set(document) | set(document["findings"][0]) | set(document["errors"][0])
    keys |= set(document["summary"]) | set(document["skipped"][0])
    missing = sorted(key for key in keys if f"`{key}`" not in documented)
    assert not missing, f"docs/json-output.md does not describe {missing}"


# -------------------------------------------------------------------------------------- github
def _unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    match = re.fullmatch(r"::(\w+)(?: ([^:]*))?::(.*)", line)
    assert match, line
    properties = dict(p.split("=", 1) for p in (match.group(2) or "").split(",") if p)
    return (
        match.group(1),
        {k: _unescape(v) for k, v in properties.items()},
        _unescape(match.group(3)),
    )


def test_github_one_command_per_finding(tmp_path: Path) -> None:
    lines = render("github", sample_run(tmp_path)).splitlines()
    assert (
        lines[0]
        == "::error file=missing.py,title=trainlint%3A path not analyzed::no such file or directory"
    )
    assert lines[2] == (
        "::error file=pkg/train.py,line=3,col=2,endLine=3,endColumn=21,"
        "title=TST101 sample-error::sample-error found%0Afix: add the call parentheses: "
        "optimizer.zero_grad()"
    )
    commands = [parse_command(line) for line in lines if line.startswith("::")]
    assert [c[0] for c in commands] == ["error", "notice", "error", "warning", "error", "warning"]
    _, properties, message = commands[3]
    assert properties["title"] == "TST202 sample-warning"
    assert message == TRICKY_MESSAGE + "\nfix: call the module: model(batch)"
    assert "\r" not in lines[3] and lines[3].count("%25") == 1
    _, properties, message = commands[4]
    assert properties == {
        "file": "pkg/broken.py",
        "line": "1",
        "title": "trainlint: file not analyzed",
    }
    assert lines[-1] == "trainlint: 3 findings in 4 files, 1 not analyzed"


def test_github_escaping() -> None:
    assert escape_data("100%\r\nnext: a, b") == "100%25%0D%0Anext: a, b"
    assert escape_property("dir,1/a:b%.py") == "dir%2C1/a%3Ab%25.py"


# --------------------------------------------------------------------------------------- junit
def test_junit_one_case_per_finding(tmp_path: Path) -> None:
    out = render("junit", sample_run(tmp_path))
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(out.encode("utf-8"))
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        "missing.py",
        *["pkg/train.py"] * len(FINDINGS),
        "pkg/broken.py",
        "huge.py",
    ]
    counts = {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {
        "tests": str(len(FINDINGS) + 3),
        "failures": str(len(FINDINGS)),
        "errors": "2",
        "skipped": "1",
    }
    assert {k: root.get(k) for k in counts} == counts
    finding_cases = [c for c in cases if c.get("classname") == "pkg/train.py"]
    assert all(len(list(c)) == 1 for c in finding_cases)  # consumers read only the first
    failures = [c.find("failure") for c in finding_cases]
    assert [(f.get("type"), f.get("message")) for f in failures] == [  # type: ignore[union-attr]
        (f.code, f.message) for f in FINDINGS
    ]
    assert finding_cases[1].get("name") == (
        f"{FINDINGS[1].code} {FINDINGS[1].name} at line {FINDINGS[1].line}, "
        f"column {FINDINGS[1].column}"
    )
    text = failures[1].text or ""  # type: ignore[union-attr]
    assert text.startswith("pkg/train.py:3:2: TST101 [error] sample-error found")
    assert "fix: add the call parentheses" in text
    (error,) = [c.find("error") for c in cases if c.get("classname") == "pkg/broken.py"]
    assert "syntax error" in (error.get("message") or "")  # type: ignore[union-attr]
    assert "pkg/broken.py:1" in (error.text or "")  # type: ignore[union-attr]
    assert cases[-1].find("skipped") is not None


def test_junit_clean_run_is_one_passing_case(tmp_path: Path) -> None:
    root = ET.fromstring(render("junit", clean_run(tmp_path)).encode("utf-8"))
    (case,) = root.iter("testcase")
    assert list(case) == [] and root.get("tests") == "1" and root.get("failures") == "0"


@pytest.mark.parametrize("sample", ["sample", "clean"])
def test_junit_validates_against_the_junit_schema(tmp_path: Path, sample: str) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit.xsd")
    run = sample_run(tmp_path) if sample == "sample" else clean_run(tmp_path)
    schema.validate(render("junit", run))


def test_junit_strips_characters_xml_cannot_carry(tmp_path: Path) -> None:
    run = sample_run(tmp_path)
    run.results[0].findings = [
        FINDINGS[0].__class__(**{**FINDINGS[0].__dict__, "message": "a\x00\x1bb"})
    ]
    root = ET.fromstring(render("junit", run).encode("utf-8"))
    assert root.find(".//failure").get("message") == "a\ufffd\ufffdb"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- through the CLI
BAD = (
    "import torch\n\nfor x in data:\n    optimizer.zero_grad\n"
    "    y = torch.nn.Identity().forward(x)\n"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    (tmp_path / "bad.py").write_text(BAD, "utf-8")
    (tmp_path / "clean.py").write_text("import torch\n\nmodel.eval()\n", "utf-8")
    # Mentions the rules' trigger words, so the prefilter does not skip it before parsing.
    (tmp_path / "broken.py").write_text(
        "import torch\nnet.forward(x).zero_grad\ndef f(:\n", "utf-8"
    )
    return tmp_path


def check(*args: str) -> Any:
    return CliRunner().invoke(main, ["check", "--no-cache", "--jobs", "1", *args])


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_cli_every_format(project: Path, fmt: str) -> None:
    result = check("bad.py", "clean.py", "broken.py", "--format", fmt)
    assert result.exit_code == 2, result.output  # broken.py could not be analyzed
    out = result.stdout
    if fmt == "text":
        assert "bad.py:4:5: TL405 [error]" in out and "broken.py:3: error: syntax error" in out
    elif fmt == "json":
        document = json.loads(out)
        assert [(f["code"], f["line"]) for f in document["findings"]] == [
            ("TL405", 4),
            ("TL504", 5),
        ]
        assert [(e["path"], e["line"]) for e in document["errors"]] == [("broken.py", 3)]
    elif fmt == "sarif":
        from test_sarif_report import validate_sarif

        document = json.loads(out)
        validate_sarif(document)
        assert [r["ruleId"] for r in document["runs"][0]["results"]] == ["TL405", "TL504"]
        assert document["runs"][0]["invocations"][0]["executionSuccessful"] is False
    elif fmt == "github":
        assert out.startswith("::error file=bad.py,line=4,col=5,")
        assert "\n::notice file=bad.py,line=5," in out
        assert "\n::error file=broken.py,line=3,title=trainlint%3A file not analyzed::" in out
    else:
        suite = ET.fromstring(out.encode("utf-8")).find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "2", "1")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github", "junit"])
def test_cli_findings_exit_1_and_write_output(project: Path, fmt: str) -> None:
    result = check("bad.py", "clean.py", "--format", fmt, "--output", "report.out")
    assert result.exit_code == 1, result.output
    written = (project / "report.out").read_text("utf-8")
    assert "TL405" in written and not ANSI.search(written)


def test_github_job_summary_when_the_variable_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary_file = tmp_path / "summary.md"
    summary_file.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary_file))
    render("github", sample_run(tmp_path))
    text = summary_file.read_text()
    assert text.startswith("earlier step\n## trainlint\n")
    assert "| Rule | Name | Severity | Findings |" in text
    for code in {f.code for f in FINDINGS}:
        assert f"| {code} |" in text
    assert "| `pkg/broken.py` | syntax error: unexpected token ':' |" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    render("github", sample_run(tmp_path))
    assert summary_file.read_text() == text
