"""trainlint.positions gives exactly libcst's PositionProvider ranges, node for node."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libcst.metadata import MetadataWrapper, PositionProvider

from trainlint.positions import positions

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {
    "empty": "",
    "newline only": "\n",
    "no trailing newline": "x = 1",
    "comment only": "# just a comment",
    "crlf": "def f(a,\r\n      b):\r\n    return (a +\r\n            b)\r\n",
    "lone cr": "x = 1\ry = 2\r",
    "tabs": "if x:\n\tif y:\n\t\tz = (1,\n\t\t     2)\n",
    "decorators and parens": "@d(1)\n@e\nclass A((B)):\n    def f(self): return ((self))\n",
    "strings": 'x = """a\nb"""\ny = f"{x!r:>{10}}" + "c\\\nd"\n',
    "semicolons": "a = 1; b = 2;\nif a: b = 3; c = 4\n",
    "with and match": (
        "with (open(a) as f, open(b) as g):\n    pass\n"
        "match p:\n    case [1, *rest] if rest:\n        pass\n"
    ),
    "lambda and comprehension": "f = lambda x, *a, k=1, **kw: [y for y in x if y] or {1: 2}\n",
}


def assert_same(code: str) -> None:
    module = cst.parse_module(code)
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    actual = positions(module)
    assert len(actual) == len(expected)
    for node, code_range in expected.items():
        assert node in actual
        assert actual[node] == code_range, (type(node).__name__, code_range, actual[node])


@pytest.mark.parametrize("code", SAMPLES.values(), ids=SAMPLES.keys())
def test_same_ranges_on_samples(code: str) -> None:
    assert_same(code)


@pytest.mark.parametrize(
    "path",
    [*sorted(ROOT.glob("fixtures/*/*.py"))[:80], *sorted(ROOT.glob("src/trainlint/*.py"))],
    ids=lambda p: p.name,
)
def test_same_ranges_on_real_files(path: Path) -> None:
    assert_same(path.read_text("utf-8"))


def test_mapping_interface() -> None:
    module = cst.parse_module("x = f(1)\n")
    found = positions(module)
    call = module.body[0].body[0].value  # type: ignore[attr-defined]
    assert found.get(call) == found[call]
    assert found.get(cst.Name("unrelated")) is None
    assert set(map(id, found)) == set(map(id, found.keys()))
    assert len(list(found)) == len(found)


_LINES = st.sampled_from(
    [
        "x = 1",
        "if x:",
        "    y = (1 +",
        "         2)",
        "def f(a, b=2):",
        "    return a",
        "# comment",
        "",
        "class C:",
        "    pass",
        "for i in range(3): print(i)",
        "z = [i\r",
        "     for i in y]",
    ]
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_LINES, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_same_ranges_on_generated_code(lines: list[str], newline: str, trailing: bool) -> None:
    code = newline.join(lines) + (newline if trailing else "")
    try:
        cst.parse_module(code)
    except cst.ParserSyntaxError:
        return
    assert_same(code)


def assert_same_by_statement(code: str) -> None:
    """``StatementPositions`` (what a model parsed from its text uses) gives the whole-module
    walk's range for every node, and None for a node of another tree."""
    from trainlint.model import TrainingModel

    module = cst.parse_module(code)
    expected = positions(module)
    model = TrainingModel(module, "example.py", code, parsed_from_text=True)
    actual = model.positions
    # Statements first: a header comment or the module itself falls back to the whole walk.
    top = {id(s) for s in module.body}
    nodes = list(expected)
    nodes.sort(key=lambda n: n is module or _top_of(model, n) not in top)
    for node in nodes:
        assert actual.get(node) == expected[node], (type(node).__name__, code)
    assert actual.get(cst.Name("elsewhere")) is None
    model.release()


def _top_of(model: object, node: cst.CSTNode) -> int:
    parents = model.node_parents  # type: ignore[attr-defined]
    while id(node) in parents and parents[id(node)] is not model.module:  # type: ignore[attr-defined]
        node = parents[id(node)]
    return id(node)


@pytest.mark.parametrize("code", SAMPLES.values(), ids=SAMPLES.keys())
def test_statement_positions_on_samples(code: str) -> None:
    assert_same_by_statement(code)


@pytest.mark.parametrize(
    "code",
    [
        "x = 1\nx = 1\ny = [x,\n     x]\n",  # a statement printed twice: the whole walk
        "x = 1\nx = 1",  # the last one printed with a newline the file lacks
        "# header\n\ndef f():\n    return 1\n# footer\n",
        "def f():\n    pass\n\n\n@d\nclass A:\n    x = 1\n    # block comment\n\ny = 2",
        "if a:\n    b = 1\nelse:\n    b = 2\n\n\n\nfor i in b: print(i)\n",
    ],
)
def test_statement_positions_on_edges(code: str) -> None:
    assert_same_by_statement(code)


@pytest.mark.parametrize(
    "path",
    [*sorted(ROOT.glob("fixtures/*/*.py"))[:120], *sorted(ROOT.glob("src/trainlint/*.py"))],
    ids=lambda p: p.name,
)
def test_statement_positions_on_real_files(path: Path) -> None:
    assert_same_by_statement(path.read_text("utf-8"))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_LINES, max_size=12), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_statement_positions_on_generated_code(
    lines: list[str], newline: str, trailing: bool
) -> None:
    code = newline.join(lines) + (newline if trailing else "")
    try:
        cst.parse_module(code)
    except cst.ParserSyntaxError:
        return
    assert_same_by_statement(code)
