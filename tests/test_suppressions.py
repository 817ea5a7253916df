"""Suppressions: ``# noqa``, ``# noqa: CODES`` (and prefixes), file-level ``# trainlint: noqa``."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.rule import Rule, rules_from_object
from trainlint.suppressions import Suppressions
from trainlint_rules import TL405_missing_call_parens, TL504_forward_called_directly

#: Just the two single-node rules: these tests are about suppressions, not about other rules.
REGISTRY: dict[str, type[Rule]] = {
    rule.code: rule
    for module in (TL405_missing_call_parens, TL504_forward_called_directly)
    for rule in rules_from_object(module)
}


@pytest.mark.parametrize(
    ("comment", "suppressed"),
    [
        ("# noqa", {"TL101", "TL405", "TL504"}),
        ("#noqa", {"TL101", "TL405", "TL504"}),
        ("# NOQA", {"TL101", "TL405", "TL504"}),
        ("# noqa: TL405", {"TL405"}),
        ("# noqa:TL405", {"TL405"}),
        ("# noqa : tl405", {"TL405"}),
        ("# noqa: TL405,TL504", {"TL405", "TL504"}),
        ("# noqa: TL405, TL504", {"TL405", "TL504"}),
        ("# noqa: TL405 TL504", {"TL405", "TL504"}),
        ("# noqa: TL4", {"TL405"}),
        ("# noqa: TL1, TL5", {"TL101", "TL504"}),
        ("# noqa: TL405 -- the loop is unrolled by hand", {"TL405"}),
        ("# type: ignore  # noqa: TL504", {"TL504"}),
        ("# noqa: E501", set()),  # another tool's code silences nothing of ours
        ("# noqa:", set()),  # a colon with no code is not a blanket noqa
        ("# noqa: because", set()),
        ("# noqa-ish", set()),
        ("# noqanything", set()),
        ("# not a noqa: TL405 ... # or is it", set()),
    ],
)
def test_inline(comment: str, suppressed: set[str]) -> None:
    suppressions = Suppressions.of(f"x = 1\nopt.zero_grad  {comment}\ny = 2\n")
    for code in ("TL101", "TL405", "TL504"):
        assert suppressions.suppresses(code, 2) is (code in suppressed), code
        assert not suppressions.suppresses(code, 1)
        assert not suppressions.suppresses(code, 3)


@pytest.mark.parametrize(
    ("comment", "suppressed"),
    [
        ("# trainlint: noqa", {"TL101", "TL405", "TL504"}),
        ("#trainlint:noqa", {"TL101", "TL405", "TL504"}),
        ("  # TRAINLINT: NOQA", {"TL101", "TL405", "TL504"}),
        ("# trainlint: noqa: TL405", {"TL405"}),
        ("# trainlint: noqa: TL4, TL101", {"TL101", "TL405"}),
        ("# trainlint: noqa: TL504 generated code", {"TL504"}),
        ("# trainlint: noqa:", set()),
        ("x = 1  # trainlint: noqa", set()),  # file-level must be a comment line of its own
        ("# trainlint: noqa-later", set()),
    ],
)
def test_file_level(comment: str, suppressed: set[str]) -> None:
    suppressions = Suppressions.of(f'"""doc"""\n{comment}\nopt.zero_grad\n')
    for code in ("TL101", "TL405", "TL504"):
        assert suppressions.suppresses(code, 3) is (code in suppressed), code
        assert suppressions.suppresses(code, 99) is (code in suppressed), code


def test_line_numbers_count_only_real_line_breaks() -> None:
    # \f and \x1c are line breaks for str.splitlines() but not for Python or libcst.
    suppressions = Suppressions.of("a = 1\x0c\nb = 2 \x1c\nopt.zero_grad  # noqa\r\nz\r")
    assert suppressions.suppresses("TL405", 3)
    assert not suppressions.suppresses("TL405", 2)


# ----------------------------------------------------------------------------- in the engine
SOURCE = """\
import torch


def train(model: torch.nn.Module, optimizer, loader):
    for batch in loader:
        optimizer.zero_grad{first}
        model.forward(batch){second}
        model.eval{third}
"""


def analyze(text: str, *codes: str) -> list[tuple[int, str]]:
    analyzer = FileAnalyzer(RunOptions(codes=codes or ("TL405", "TL504")), REGISTRY)
    result = analyzer.analyze_text(text, Path("t.py"), "t.py")
    assert result.error is None, result.error
    return [(f.line, f.code) for f in result.findings]


def test_engine_without_suppressions() -> None:
    assert analyze(SOURCE.format(first="", second="", third="")) == [
        (6, "TL405"),
        (7, "TL504"),
        (8, "TL405"),
    ]


def test_engine_applies_inline_noqa_on_the_anchor_line() -> None:
    text = SOURCE.format(first="  # noqa", second="  # noqa: TL405", third="  # noqa: TL4")
    assert analyze(text) == [(7, "TL504")]


def test_engine_applies_file_level_noqa() -> None:
    text = "# trainlint: noqa: TL5\n" + SOURCE.format(first="", second="", third="")
    assert analyze(text) == [(7, "TL405"), (9, "TL405")]
    assert analyze("# trainlint: noqa\n" + SOURCE.format(first="", second="", third="")) == []


def test_engine_noqa_on_a_multiline_finding_uses_its_first_line() -> None:
    text = (
        "import torch\n\n\ndef run(net: torch.nn.Module, x):\n"
        "    return net.forward(  # noqa: TL504\n        x,\n    )\n"
        "def other(net: torch.nn.Module, x):\n"
        "    return net.forward(\n        x,  # noqa: TL504\n    )\n"
    )
    assert analyze(text) == [(9, "TL504")]
