"""The fixture suite is the spec: every fixture file's findings are exactly its marked lines.

A flagged line carries a trailing ``# expect: TL101`` (several codes: ``# expect: TL101, TL102``);
in a notebook fixture (``.ipynb``) the marker sits on the line in its cell.
Each fixture is checked with every rule enabled, so a fixture also proves that no other rule
fires on it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.notebooks import notebook_to_text
from trainlint.rule import load_registry

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
EXPECT = re.compile(r"#\s*expect:\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")
REGISTRY = load_registry()


def fixture_files() -> list[Path]:
    return sorted([*FIXTURES.glob("TL*/*.py"), *FIXTURES.glob("TL*/*.ipynb")])


def _lines(path: Path) -> list[str]:
    """The analyzed text: for a notebook, its code cells joined (findings use those lines)."""
    if path.suffix == ".ipynb":
        return notebook_to_text(path.read_bytes())[0].splitlines()
    return path.read_text("utf-8").splitlines()


def expected(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(_lines(path), start=1):
        match = EXPECT.search(line)
        if match:
            found.extend((number, c.strip()) for c in match.group("codes").split(","))
    return sorted(found)


@pytest.fixture(scope="module")
def analyzer() -> FileAnalyzer:
    return FileAnalyzer(RunOptions(codes=tuple(REGISTRY)), REGISTRY)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture(path: Path, analyzer: FileAnalyzer) -> None:
    result = analyzer.analyze_file(path, path.name)
    assert result.error is None, result.error
    actual = sorted((f.line, f.code) for f in result.findings)
    want = expected(path)
    if path.name.startswith("good_"):
        own_code = path.parent.name.split("_", 1)[0]
        assert own_code not in {c for _, c in want}, "good_ fixtures must not expect their own rule"
    assert actual == want, "\n".join(
        f"{path.name}:{line}: {code} {message}"
        for line, code, message in sorted((f.line, f.code, f.message) for f in result.findings)
    )


def test_every_rule_has_fixtures() -> None:
    for code, rule in REGISTRY.items():
        folder = FIXTURES / f"{code}_{rule.name.replace('-', '_')}"
        assert folder.is_dir(), f"{code} has no fixture folder {folder.name}"
        bad = [*folder.glob("bad_*.py"), *folder.glob("bad_*.ipynb")]
        good = [*folder.glob("good_*.py"), *folder.glob("good_*.ipynb")]
        assert bad and good, f"{code} needs bad_*.py and good_*.py fixtures"
        flagged = {c for p in bad for _, c in expected(p)}
        assert code in flagged, f"no bad fixture of {code} expects {code}"


def test_fixture_folders_match_rules() -> None:
    folders = {p.name.split("_", 1)[0] for p in FIXTURES.glob("TL*") if p.is_dir()}
    assert folders <= set(REGISTRY), f"fixture folders for unknown rules: {folders - set(REGISTRY)}"
