"""Multi-file fixture projects: evidence that spans modules of one project.

Each ``fixtures/TLxxx_name/project_<case>/`` folder is a small project; every ``.py`` file in it
marks its expected findings as the single-file fixtures do (``# expect: TL201``, and optionally
the severity: ``# expect: TL105 error``). Each project is run through the CLI twice, as a user
and pre-commit would: the whole folder, then each file named on its own (pre-commit passes only
the changed files: they still read the summaries of the modules they import, from disk). A
project whose name ends in ``_needs_summaries`` must also find less without summaries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECT = re.compile(
    r"#\s*expect:\s*(?P<codes>[A-Z]+[0-9]+(?:\s+(?:error|warning|info))?"
    r"(?:\s*,\s*[A-Z]+[0-9]+(?:\s+(?:error|warning|info))?)*)"
)


def projects() -> list[Path]:
    return sorted(p for p in FIXTURES.glob("TL*/project_*") if p.is_dir())


def expected(project: Path) -> set[tuple[str, int, str, str | None]]:
    found = set()
    for path in sorted(project.rglob("*.py")):
        name = path.relative_to(project).as_posix()
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            match = EXPECT.search(line)
            if match:
                for item in match.group("codes").split(","):
                    code, _, severity = item.strip().partition(" ")
                    found.add((name, number, code, severity or None))
    return found


def run(project: Path, *targets: Path, summaries: bool = True) -> set[tuple[str, int, str, str]]:
    args = ["check", *map(str, targets), "--no-cache", "--format", "json", "--jobs", "1"]
    if not summaries:
        args.append("--no-summaries")
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.output)
    found = set()
    for finding in report["findings"]:
        path = (Path.cwd() / finding["path"]).resolve().relative_to(project.resolve())
        found.add((path.as_posix(), finding["line"], finding["code"], finding["severity"]))
    return found


def matches(actual: set[tuple[str, int, str, str]], want: set) -> bool:
    shown = {(p, line, c) for p, line, c, _ in actual}
    if shown != {(p, line, c) for p, line, c, _ in want}:
        return False
    severities = {(p, line, c): s for p, line, c, s in actual}
    return all(s is None or severities[(p, line, c)] == s for p, line, c, s in want)


@pytest.mark.parametrize("project", projects(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_project(project: Path) -> None:
    want = expected(project)
    whole = run(project, project)
    assert matches(whole, want), sorted(whole)
    for path in sorted(project.rglob("*.py")):
        name = path.relative_to(project).as_posix()
        alone = run(project, path)
        assert matches(alone, {w for w in want if w[0] == name}), (name, sorted(alone))
    if project.name.endswith("_needs_summaries"):
        assert not matches(run(project, project, summaries=False), want)


def test_projects_exist_and_mark_something() -> None:
    found = projects()
    assert len(found) >= 6
    assert any(expected(p) for p in found)
