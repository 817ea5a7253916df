"""Excerpts made from a module's whole libcst tree are the excerpts its text gives (same
summaries, same lines), the engine and the project index parse a module once between them,
and what the index keeps for a run is bounded."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import libcst as cst

from trainlint import parsing
from trainlint.engine import FileAnalyzer, RunOptions, run
from trainlint.model import TrainingModel
from trainlint.model.summaries import to_json
from trainlint.model.summaries.build import summarize
from trainlint.project import ProjectIndex, TreeStore
from trainlint.project_outline import (
    excerpt,
    excerpt_text,
    excerpt_tree,
    outline,
    statement_lines,
    usable_for_trees,
)

#: Comments above, between and after statements, a class header closed by a comment, a
#: statement line that another one continues, decorators with comments between them, a
#: class other than the target (its header only), a footer comment inside a block.
TRICKY = """\
    # a header comment

    import torch; import torch.nn as nn
    a = 1; b = (
        2)

    def helper(x):  # used by Head.forward
        return torch.softmax(x, 1)
        # the block's own trailing comment

      # a comment less indented than the block
    class Base(nn.Module):

        def forward(self, x):
            return x


    @decorator
    # between decorators
    @other

    class Head(Base):
        drop = nn.Dropout(0.1)

        def forward(self, x):
            y = self.drop(x)
            return helper(y)

        def update(self, val, n=1):
            self.sum += val * n; self.count += n


    class Commented(Base):
        # ends with a colon:
        x = 1


    class Uses(Commented):
        def forward(self, x):
            return a + b + x


    def last():
        return Head()
"""


def _summaries(text: str) -> dict[str, tuple[object, object, bool]]:
    """Every top-level name's summary from the excerpt's text and from the whole tree (and
    whether a tree excerpt was made at all)."""
    found = outline(ast.parse(text), text)
    whole = parsing.parse(text)
    holders = statement_lines(found, whole)
    assert holders is not None
    results = {}
    for name in sorted(set(found.defines) | set(found.kinds)):
        picked = excerpt(found, name)
        assert picked is not None
        source = excerpt_text(text, *picked)
        try:  # the index's answer: no summary when the excerpt does not parse
            from_text = summarize(TrainingModel.from_source(source, "m.py"), name)
        except cst.ParserSyntaxError:
            from_text = None
        tree = excerpt_tree(whole, holders, found, text, *picked)
        from_tree = summarize(TrainingModel(tree, "m.py", source), name) if tree else None
        results[name] = (to_json(from_text), to_json(from_tree), tree is not None)
    return results


def test_tree_excerpts_summarize_as_the_text_does() -> None:
    results = _summaries(textwrap.dedent(TRICKY))
    made = {name for name, (_, _, tree) in results.items() if tree}
    # ``a`` shares a line with a statement the text cuts short, ``Uses`` needs the header
    # that a comment closes, ``helper`` (and ``Head``, which calls it) ends with a comment
    # libcst gives to its block: those stay text; every other excerpt is a tree.
    assert made == {"Base", "Commented", "b", "last", "torch", "nn"}
    for name, (from_text, from_tree, tree) in results.items():
        if tree:
            assert from_tree == from_text, name


def test_tree_excerpt_keeps_every_line() -> None:
    text = textwrap.dedent(TRICKY)
    found = outline(ast.parse(text), text)
    whole = parsing.parse(text)
    holders = statement_lines(found, whole)
    assert holders is not None
    for name in ("last", "Commented", "b"):
        picked = excerpt(found, name)
        assert picked is not None
        tree = excerpt_tree(whole, holders, found, text, *picked)
        assert tree is not None
        parsed = cst.parse_module(excerpt_text(text, *picked))
        in_tree, in_text = TrainingModel(tree, "m.py"), TrainingModel(parsed, "m.py")
        lines = [(type(n).__name__, in_tree.line_of(n), in_tree.text_of(n)) for n in _calls(tree)]
        expected = [
            (type(n).__name__, in_text.line_of(n), in_text.text_of(n)) for n in _calls(parsed)
        ]
        assert lines == expected and lines, name


def _calls(module: cst.Module) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []

    class Visitor(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            found.append(node)

        def visit_Name(self, node: cst.Name) -> None:
            found.append(node)

    module.visit(Visitor())
    return found


def test_text_with_other_line_breaks_is_not_cut_from_trees() -> None:
    assert not usable_for_trees("import torch\n\x0c\nclass A:\n    pass\n")
    assert usable_for_trees(textwrap.dedent(TRICKY))


def test_outline_forgets_and_reads_its_statements_again() -> None:
    text = textwrap.dedent(TRICKY)
    found = outline(ast.parse(text), text)
    before = excerpt(found, "last")
    found.forget()
    assert found.body is None
    fresh = outline(ast.parse(text), text)
    fresh.forget()
    assert excerpt(fresh, "last") == before


def test_tree_store_is_bounded() -> None:
    store = TreeStore(budget=10)
    tree = cst.parse_module("x = 1\n")
    store.put(Path("/a.py"), "x = 1\n", tree)
    store.put(Path("/b.py"), "y = 22\n", tree)
    assert store.chars <= 10
    assert store.get(Path("/a.py"), "x = 1\n") is None  # the least recently used went
    assert store.get(Path("/b.py"), "y = 22\n") is tree
    assert store.get(Path("/b.py"), "y = 23\n") is None  # another text: not this tree
    store.put(Path("/c.py"), "z" * 11, tree)
    assert store.get(Path("/c.py"), "z" * 11) is None  # larger than the whole budget


def test_tree_store_keeps_trees_used_for_excerpts_first() -> None:
    store = TreeStore(budget=20)
    tree = cst.parse_module("x = 1\n")
    store.put(Path("/used.py"), "a" * 6, tree)
    assert store.get(Path("/used.py"), "a" * 6, use=True) is tree  # served an excerpt
    store.put(Path("/ahead.py"), "b" * 6, tree, used=True)  # parsed for an excerpt
    store.put(Path("/script.py"), "c" * 6, tree)  # put by its own analysis only
    store.put(Path("/other.py"), "d" * 6, tree)
    assert store.chars <= 20
    assert store.get(Path("/script.py"), "c" * 6) is None  # the oldest of the fresh went first
    assert store.get(Path("/used.py"), "a" * 6) is tree
    assert store.get(Path("/ahead.py"), "b" * 6) is tree


def test_tree_store_leaves_room_for_the_file_analyzed() -> None:
    store = TreeStore(budget=20)
    tree = cst.parse_module("x = 1\n")
    store.put(Path("/a.py"), "a" * 8, tree, used=True)
    store.put(Path("/b.py"), "b" * 8, tree, used=True)
    store.reserve(Path("/big.py"), 10)  # analyzed now, not stored: 16 + 10 > 20
    assert store.get(Path("/a.py"), "a" * 8) is None
    assert store.get(Path("/b.py"), "b" * 8) is tree
    store.put(Path("/big.py"), "z" * 10, tree)  # its own tree, no longer reserved besides
    assert store.chars == 18
    store.reserve(Path("/b.py"), 8)  # stored already: no room taken twice
    assert store.get(Path("/big.py"), "z" * 10) is tree
    store.reserve(Path("/huge.py"), 50)  # larger than the budget: nothing else kept
    assert store.chars == 0


UTILS = """\
import torch


class AverageMeter:
    def __init__(self):
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n
"""
TRAIN = """\
import torch

from utils import AverageMeter


def train(model, loader, optimizer, criterion):
    losses = AverageMeter()
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.update(loss, x.size(0))
"""


def _project(tmp_path: Path) -> list[Path]:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "utils.py").write_text(UTILS)
    (tmp_path / "train.py").write_text(TRAIN)
    return [tmp_path / "train.py", tmp_path / "utils.py"]


def test_a_module_analyzed_here_is_parsed_once(tmp_path: Path, monkeypatch) -> None:
    paths = _project(tmp_path)
    parsed: list[str] = []
    original = parsing.parse

    def counting(text: str, max_tokens: int = 0, instead: str | None = None) -> cst.Module:
        parsed.append(text)
        return original(text, max_tokens, instead)

    monkeypatch.setattr(parsing, "parse", counting)
    options = RunOptions(codes=("TL201",), root=tmp_path, jobs=1)
    results = {r.display: r for r in run(paths, options)}
    assert [f.code for f in results["train.py"].findings] == ["TL201"]
    # train.py's summary of AverageMeter parsed utils.py whole; its own analysis reused it.
    assert sorted(parsed) == sorted([TRAIN, UTILS])


def test_a_sliced_tree_is_never_kept(tmp_path: Path) -> None:
    paths = _project(tmp_path)
    analyzer = FileAnalyzer(RunOptions(codes=("TL201",), root=tmp_path, slicing=True))
    analyzer.analyze_file(paths[1], "utils.py")  # no loop: AverageMeter is blanked for TL201
    index = analyzer.project
    assert isinstance(index, ProjectIndex)
    assert index.tree(paths[1].resolve(), UTILS) is None
    result = analyzer.analyze_file(paths[0], "train.py")  # the summary reads utils.py itself
    assert [f.code for f in result.findings] == ["TL201"]


def test_the_index_reuses_the_engines_tree(tmp_path: Path) -> None:
    paths = _project(tmp_path)
    analyzer = FileAnalyzer(RunOptions(codes=("TL201",), root=tmp_path, slicing=False))
    analyzer.analyze_file(paths[1], "utils.py")  # utils.py first: its tree is kept
    index = analyzer.project
    assert isinstance(index, ProjectIndex)
    assert index.tree(paths[1].resolve(), UTILS) is not None
    result = analyzer.analyze_file(paths[0], "train.py")
    assert [f.code for f in result.findings] == ["TL201"]
    assert index.parsed == 1


def test_without_expectation_an_excerpt_is_parsed(tmp_path: Path) -> None:
    paths = _project(tmp_path)
    analyzer = FileAnalyzer(RunOptions(codes=("TL201",), root=tmp_path))
    result = analyzer.analyze_file(paths[0], "train.py")  # utils.py not analyzed here
    assert [f.code for f in result.findings] == ["TL201"]
    index = analyzer.project
    assert isinstance(index, ProjectIndex)
    assert index.tree(paths[1].resolve(), UTILS) is None  # no whole tree was made for it
