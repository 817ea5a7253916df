"""Shortcuts the model takes for speed answer exactly as the long way would: ``text_of``
(printed once per node), ``source_mentions`` (a search of nodes' source that skips printing
when the file itself has no match), ``node_parents`` (recorded by the scope walk),
``positions.code_for_node`` (libcst's printing without its position-recording generators)."""

from __future__ import annotations

import re
from pathlib import Path

import libcst as cst
import pytest

from trainlint.model import TrainingModel
from trainlint.model.syntax.nodes import child_nodes
from trainlint.positions import code_for_node

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: The patterns rules search nodes' source with (TL401's Monte Carlo dropout, TL402's
#: gradients) and a few with word boundaries and calls, the forms the contract allows.
PATTERNS = [
    re.compile(r"mc_?dropout|monte_?carlo|enable_dropout|uncertaint|bayes", re.I),
    re.compile(r"requires_grad|enable_grad|\.grad\b|autograd|\bgrad\("),
    re.compile(r"\bself\b"),
    re.compile(r"\w+\(\)"),
    re.compile(r"zero_grad"),
]

SOURCE = """\
import torch


class Net(torch.nn.Module):
    def forward(self, x):
        for _ in range(2):
            x = self.layer(x)  # mc_dropout stays on
        return x


def evaluate(model, loader):
    for x, y in loader:
        model(x)
"""


def _blocks(model: TrainingModel) -> list[cst.CSTNode]:
    return (
        [s.node for s in model.scopes]
        + [c.node for c in model.classes.values()]
        + [loop.node for loop in model.loops]
    )


def test_nested_blocks_are_found_and_absent_words_are_not() -> None:
    model = TrainingModel.from_source(SOURCE)
    dropout, gradients = PATTERNS[0], PATTERNS[1]
    forward = next(s for s in model.scopes if s.name == "Net.forward")
    evaluate = next(s for s in model.scopes if s.name == "evaluate")
    assert model.source_mentions([forward.node], dropout)
    assert not model.source_mentions([evaluate.node], dropout)
    assert not model.source_mentions([s.node for s in model.scopes], gradients)


def test_a_node_not_of_the_file_is_printed() -> None:
    model = TrainingModel.from_source(SOURCE)
    other = cst.parse_statement("def f():\n    return x.grad\n")
    assert model.source_mentions([other], PATTERNS[1])  # the file has no ``.grad``


def test_text_of_a_temporary_node_is_never_served_for_another() -> None:
    model = TrainingModel.from_source(SOURCE)
    for name in ("alpha", "beta", "gamma", "delta"):
        assert model.text_of(cst.Name(name)) == name  # each freed at once: ids get reused


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("TL*/*.py")), ids=lambda p: p.name)
def test_same_answers_as_the_long_way_on_every_fixture(path: Path) -> None:
    text = path.read_text("utf-8")
    try:
        model = TrainingModel.from_source(text, path)
    except cst.ParserSyntaxError:
        pytest.skip("not parsable")
    assert code_for_node(model.module, model.module) == model.module.code_for_node(model.module)
    for node in _blocks(model):
        printed = model.module.code_for_node(node)
        assert code_for_node(model.module, node) == printed
        for pattern in PATTERNS:
            assert model.source_mentions([node], pattern) == bool(pattern.search(printed))
    expected: dict[int, cst.CSTNode] = {}
    stack: list[cst.CSTNode] = [model.module]
    while stack:
        current = stack.pop()
        for child in child_nodes(current):
            expected[id(child)] = current
            stack.append(child)
    assert expected.keys() == model.node_parents.keys()
    assert all(model.node_parents[key] is parent for key, parent in expected.items())
