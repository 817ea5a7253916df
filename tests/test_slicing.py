"""Block-level slicing (trainlint.slicing) changes no finding.

Every fixture, single-file and multi-file project, is analyzed with and without slicing; the
findings (positions, messages, fixes, edits, fingerprints) must be identical. Slicing is forced
even where it would not pay (:data:`trainlint.slicing.WORTH_IT`), and run once with every rule
selected and once with each fixture folder's own rule alone (fewer seeds, more blanked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint import slicing
from trainlint.cli import main
from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.rule import load_registry

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REGISTRY = load_registry()


@pytest.fixture(autouse=True)
def always_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slicing, "WORTH_IT", 1.0)


def fixture_files() -> list[Path]:
    return sorted([*FIXTURES.glob("TL*/*.py"), *FIXTURES.glob("TL*/project_*/**/*.py")])


def findings(path: Path, codes: tuple[str, ...], sliced: bool) -> list[tuple[object, ...]]:
    options = RunOptions(codes=codes, slicing=sliced, jobs=1)
    result = FileAnalyzer(options, REGISTRY).analyze_file(path, path.name)
    return [
        (result.error, None),
        *(
            (f.line, f.column, f.end_line, f.end_column, f.code, f.severity, f.message, f.fix)
            + (f.edits, f.fingerprint)
            for f in result.findings
        ),
    ]


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_same_findings_with_every_rule(path: Path) -> None:
    codes = tuple(REGISTRY)
    assert findings(path, codes, True) == findings(path, codes, False)


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_same_findings_with_its_own_rule(path: Path) -> None:
    folder = path.relative_to(FIXTURES).parts[0]
    codes = (folder.split("_", 1)[0], "TL001")
    assert findings(path, codes, True) == findings(path, codes, False)


def _cli(project: Path, *extra: str) -> list[dict[str, object]]:
    args = ["check", str(project), "--no-cache", "--format", "json", "--jobs", "1", *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)["findings"]


@pytest.mark.parametrize(
    "project",
    sorted(p for p in FIXTURES.glob("TL*/project_*") if p.is_dir()),
    ids=lambda p: str(p.relative_to(FIXTURES)),
)
def test_same_findings_in_projects(project: Path) -> None:
    assert _cli(project, "--slicing") == _cli(project, "--no-slicing")


# ---------------------------------------------------------------------- the slicer itself
LIBRARY = """\
import torch


def unrelated(x):
    return x + 1


class Helper:
    def update(self, value):
        self.total = value


def train(model, loader, opt):
    for batch in loader:
        helper = Helper()
        opt.step()


def far_away():
    return {"a": 1}
"""


def _sliced(text: str, *triggers: str) -> slicing.Sliced | None:
    return slicing.slice_text(text, [slicing.compile_triggers(triggers)])


def test_keeps_seeds_imports_and_definitions_blanks_the_rest() -> None:
    found = _sliced(LIBRARY, slicing.LOOP)
    assert found is not None
    lines = found.text.splitlines()
    assert len(lines) == len(LIBRARY.splitlines())  # line numbers stay exact
    assert lines[0] == "import torch"
    assert "def train(model, loader, opt):" in lines
    assert "class Helper:" in lines  # the loop instantiates it
    assert not any("unrelated" in line or "far_away" in line for line in lines)


def test_callers_of_a_kept_function_are_kept() -> None:
    text = "def step_once(m):\n    m.step()\n\n\ndef main():\n    step_once(1)\n\n\nx = 1\n"
    found = _sliced(text, ".step(")
    assert found is not None
    assert "def main():" in found.text  # its caller
    assert "x = 1" not in found.text


def test_a_module_level_loop_keeps_the_whole_script() -> None:
    text = "model = 1\nreset = 2\nfor i in range(3):\n    pass\n\n\ndef f():\n    pass\n"
    found = _sliced(text, slicing.LOOP)
    assert found is not None
    assert "reset = 2" in found.text and "def f" not in found.text


@pytest.mark.parametrize(
    "text",
    ["x = (\n", "a = 1\r\nb = 2\r\n", "# %%\na = 1\n\n# %%\nb = 2\n", "a = 1\n"],
    ids=["syntax-error", "crlf", "cells", "one-block"],
)
def test_does_not_slice_what_it_is_not_sure_of(text: str) -> None:
    assert _sliced(text, "zzz") is None


def test_eval_function_pattern_covers_the_models_region_names() -> None:
    import re

    from trainlint.model.loops import regions

    words = re.findall(r"[a-z]+", regions._REGION_FUNCTION.pattern.split("(_|$)")[0])
    pattern = slicing.compile_triggers([slicing.EVAL_FUNCTION]).patterns[0]
    for word in words:
        assert pattern.search(f"    def run_{word}_Epoch(self):"), word
        assert pattern.search(f"def {word.upper()}(x):"), word


# ---------------------------------------------------------------------- structural triggers
def _seeded(text: str, *triggers: str) -> list[str]:
    """The first line of every block kept (slicing forced), for ``triggers`` alone."""
    found = _sliced(text, *triggers)
    assert found is not None
    return [line for line in found.text.splitlines() if line and not line[0].isspace()]


SHAPES = """\
import numpy as np


def adds(xs):
    total = 0
    for x in xs:
        total = total + x
    return total


def appends(xs):
    out = []
    for x in xs:
        out.append(x)


def counts(xs):
    for x in xs:
        print(x)


def moves(x):
    x.to("cuda")


def keeps(x):
    y = x.to("cuda")
    return y


class Holder:
    def __init__(self, layers):
        self.size = (3, 3)
        self.names = ["a", "b"]


class Lister:
    def __init__(self, n):
        self.layers = []


class Data:
    def __getitem__(self, i):
        return i
"""


def test_an_accumulating_loop_seeds_only_where_something_accumulates() -> None:
    assert _seeded(SHAPES, slicing.ACCUMULATING_LOOP) == ["import numpy as np", "def adds(xs):"]
    kept = _seeded(SHAPES, slicing.loop_calling("append"))
    assert kept == ["import numpy as np", "def appends(xs):"]


def test_a_discarded_call_seeds_only_an_expression_statement() -> None:
    assert _seeded(SHAPES, slicing.discarding("to")) == ["import numpy as np", "def moves(x):"]


def test_self_container_skips_constant_literals() -> None:
    assert _seeded(SHAPES, slicing.SELF_CONTAINER) == ["import numpy as np", "class Lister:"]


def test_defines_seeds_the_class_with_the_method() -> None:
    assert _seeded(SHAPES, slicing.defining("__getitem__")) == ["import numpy as np", "class Data:"]


def test_an_import_gate_voids_the_rules_other_triggers() -> None:
    kept = _seeded(SHAPES, slicing.IMPORTS_TORCH, slicing.discarding("to"))
    assert kept == ["import numpy as np"]
    numpy = _seeded(SHAPES, "import:numpy", slicing.discarding("to"))
    assert numpy == ["import numpy as np", "def moves(x):"]
    local = SHAPES.replace("    x.to(", "    import torch.nn\n    x.to(")
    assert "def moves(x):" in _seeded(local, slicing.IMPORTS_TORCH, slicing.discarding("to"))


def test_gates_are_per_rule() -> None:
    gated = slicing.compile_triggers([slicing.IMPORTS_TORCH, slicing.discarding("to")])
    free = slicing.compile_triggers([slicing.defining("__getitem__")])
    found = slicing.slice_text(SHAPES, [gated, free])
    assert found is not None
    assert "class Data:" in found.text and "def moves" not in found.text
