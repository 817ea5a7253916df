"""Cheaper cross-file summaries, same answers: a class's methods summarized when asked for
(from a kept or a remade model), digests only where a cache reads them, outline statements
reparsed from their own lines, import resolution shared by a folder's files."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import libcst as cst
import pytest

import trainlint.project as project_module
from trainlint.engine import RunOptions
from trainlint.model import ClassSummary, TrainingModel
from trainlint.model.summaries import digest, to_json
from trainlint.model.summaries.build import summarize
from trainlint.project import ProjectIndex, project_index
from trainlint.project_outline import excerpt, outline

NETS = """
    import torch.nn as nn
    import torch.nn.functional as F

    class Meter:
        def __init__(self):
            self.reset()

        def reset(self):
            self.sum = 0
            self.count = 0

        def update(self, val, n=1):
            self.sum += val * n
            self.count += n

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.drop = nn.Dropout(0.5)

        def helper(self, x):
            return self.drop(x)

        def forward(self, x):
            return F.softmax(self.fc(self.helper(x)), dim=1)
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "nets.py").write_text(textwrap.dedent(NETS))
    (tmp_path / "train.py").write_text("from nets import Meter, Net\n")
    return tmp_path


def _eager(path: Path, name: str) -> dict:
    """The summary as made before: every method at once, off the whole module's model."""
    model = TrainingModel.from_source(path.read_text(), path)
    return to_json(summarize(model, name))  # type: ignore[return-value]


@pytest.mark.parametrize("kept", [8, 0])
def test_methods_are_summarized_when_asked_for(tmp_path: Path, monkeypatch, kept: int) -> None:
    monkeypatch.setattr(project_module, "MODELS_KEPT", kept)  # 0: each method from a remade model
    root = _project(tmp_path)
    view = ProjectIndex(digests=False).view(root / "train.py")  # a digest reads every method
    for name in ("Meter", "Net"):
        summary = view.lookup(f"nets.{name}")[0]  # type: ignore[index]
        assert isinstance(summary, ClassSummary) and summary.source is not None
        built = summary.source._built  # type: ignore[attr-defined]
        assert set(built) == ({"forward"} if name == "Net" else set())  # the forward at once
        assert summary.method("update" if name == "Meter" else "helper") is not None
        assert summary.method("missing") is None
        assert to_json(summary) == _eager(root / "nets.py", name)  # every method, same summary
    net = view.lookup("nets.Net")[0]  # type: ignore[index]
    assert net.final_activation == "probabilities" and net.has_dropout  # type: ignore[union-attr]
    assert net.forward is net.method("forward")  # type: ignore[union-attr]


def test_lazy_and_complete_summaries_are_equal(tmp_path: Path) -> None:
    root = _project(tmp_path)
    lazy = ProjectIndex(digests=False).view(root / "train.py").lookup("nets.Net")[0]  # type: ignore[index]
    other = ProjectIndex(digests=False).view(root / "train.py").lookup("nets.Net")[0]  # type: ignore[index]
    assert other.method("helper") is not None  # type: ignore[union-attr]
    assert lazy == other and hash(lazy) == hash(other)
    assert digest(lazy) == digest(other)
    assert len(other.methods) == 3  # type: ignore[union-attr]


def test_kept_models_are_bounded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(project_module, "MODELS_KEPT", 1)
    root = _project(tmp_path)
    index = ProjectIndex(digests=False)
    view = index.view(root / "train.py")
    meter = view.lookup("nets.Meter")[0]  # type: ignore[index]
    net = view.lookup("nets.Net")[0]  # type: ignore[index]
    assert meter.source not in index.kept_models  # type: ignore[union-attr]
    assert net.source in index.kept_models  # type: ignore[union-attr]
    assert len(meter.methods) == 3  # type: ignore[union-attr]  # remade, then released
    assert meter.source not in index.kept_models  # type: ignore[union-attr]


def test_digests_are_recorded_only_for_a_cache(tmp_path: Path) -> None:
    root = _project(tmp_path)
    no_cache = project_index(RunOptions(codes=(), summaries=True))
    assert no_cache is not None and not no_cache.digests
    view = no_cache.view(root / "train.py")
    view.lookup("nets.Meter")
    assert ("nets.py", "Meter") in view.used and view.deps() == []
    cached = project_index(RunOptions(codes=(), summaries=True, cache_dir=tmp_path / "cache"))
    assert cached is not None and cached.digests
    view = cached.view(root / "train.py")
    view.lookup("nets.Meter")
    assert [d[:2] for d in view.deps()] == [["nets.py", "Meter"]]
    assert cached.deps_valid(root / "train.py", view.deps())


def test_a_forgotten_statement_is_reparsed_from_its_lines() -> None:
    text = textwrap.dedent(
        """
        import os
        A = 1; B = (A,
            2)

        @decorate(A)
        class C(B):
            x = A
        def f():
            return C
        """
    )
    kept = outline(ast.parse(text), text)
    forgotten = outline(ast.parse(text), text)
    forgotten.forget()
    for statement in kept.statements:  # ``B`` shares its line: the whole module is parsed
        for header in (False, True):
            assert forgotten.refs(statement, header) == kept.refs(statement, header)
    assert excerpt(forgotten, "f") == excerpt(kept, "f")


def test_a_folder_resolves_alike_but_never_to_the_importer(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("utils.py", "train.py", "__init__.py"):
        (pkg / name).write_text("")
    (tmp_path / "utils.py").write_text("")
    index = ProjectIndex()
    train, utils = (pkg / "train.py").resolve(), (pkg / "utils.py").resolve()
    assert index.resolve(train, "utils.x") == (utils, ["x"])
    # the folder's answer is the importer itself: the next candidate (the root's utils.py)
    assert index.resolve(utils, "utils.x") == ((tmp_path / "utils.py").resolve(), ["x"])
    assert index.resolve(train, "utils.x") == (utils, ["x"])


def test_mentions_is_the_word_pattern() -> None:
    import random
    import re

    from trainlint.project_outline import mentions

    rng = random.Random(1)
    alphabet = "ab_1 .\n(\u00e9\u0661\u00b2x"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        name = rng.choice(["a", "ab", "a_b", "_", "x1", "\u00e9", "b\u0661", "a.b"])
        assert mentions(text, name) == (re.search(rf"\b{re.escape(name)}\b", text) is not None)


def _excerpt_walking_every_statement(found, name):  # type: ignore[no-untyped-def]
    """:func:`excerpt` as it was before the text prefilter: every statement's nodes walked."""
    statements = found.statements
    imports = [statements[i] for i in found.imports]
    if name not in found.defines:
        return (imports, None) if any(name in s.bound for s in imports) else None
    target = statements[found.defines[name]]
    wanted = {}
    stack = [target]
    while stack:
        statement = stack.pop()
        if statement.index in wanted:
            continue
        wanted[statement.index] = statement
        for ref in found.refs(statement, statement.is_class and statement is not target):
            if ref in found.defines:
                stack.append(statements[found.defines[ref]])
    return sorted([*imports, *wanted.values()], key=lambda s: s.lineno), target


PREFILTERED = """
    import torch
    from .base import Base

    SCALE = 2
    def SCALE_too(): return 1

    def alone(x):
        return torch.relu(x)  # "SCALE" in a comment is no reference, but walks the statement

    def recursive(n):
        return recursive(n - 1) if n else alone(n)

    x = 1
    def x():
        return x

    class Head(Base):
        '''Mentions helper in a string only.'''
        def forward(self, y):
            return y * SCALE

    class Other(Head):
        pass

    def helper(): return 'naïve'
    def uses_helper(): return helper()  # nàme
"""


@pytest.mark.parametrize(
    ("text", "breaks"), [(PREFILTERED, "\n"), (NETS, "\n"), (PREFILTERED, "\r\n")]
)
def test_excerpts_skip_walking_statements_that_name_nothing_defined(text: str, breaks: str) -> None:
    text = textwrap.dedent(text).replace("\n", breaks)
    for forget in (False, True):
        found = outline(ast.parse(text), text)
        eager = outline(ast.parse(text), text)
        if forget:
            found.forget()
        for name in [*found.defines, *found.kinds, "torch", "missing"]:
            assert excerpt(found, name) == _excerpt_walking_every_statement(eager, name), name


@pytest.mark.parametrize(
    "text", ["x = 1\n", "a\x0cb\n", "s = '\u2028'\n", "\x85", "é\x1d", "\r\n", "日本\u2029", ""]
)
def test_usable_for_trees_is_the_pattern_of_other_line_breaks(text: str) -> None:
    import re

    from trainlint.project_outline import usable_for_trees

    pattern = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
    assert usable_for_trees(text) == (pattern.search(text) is None)


STUBBED = """
    import torch.nn as nn

    class Net(nn.Module):
        def forward(self, x):
            return x

        def helper(self, x):
            return x

    class Meter:
        def update(self, val):
            self.sum += val
"""
USER = """
    from nets import Net, Meter

    class Meter2:
        def reset(self):
            pass

    net = Net()
    meter = Meter()
    net.state_dict()
    net.helper(1)
    meter.reset()
    self_made = Meter2()
"""


def test_a_stub_is_made_only_for_a_method_it_may_have(tmp_path: Path) -> None:
    """``net.state_dict()`` on another module's class: no stub made (it needs every method);
    the callee is the same as the stub's (none). ``net.helper(1)``: the stub's method."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "nets.py").write_text(textwrap.dedent(STUBBED))
    path = tmp_path / "train.py"
    source = textwrap.dedent(USER)
    model = TrainingModel.from_source(source, path, ProjectIndex().view(path))
    calls = {model.text_of(site.node): site for site in model.calls}
    state = calls["net.state_dict()"]
    assert model.callee(state.node, state.scope) is None
    assert not model.stubs._classes  # no stub made for a method the class cannot have
    helper = calls["net.helper(1)"]
    found = model.callee(helper.node, helper.scope)
    assert found is not None and model.stubs.function_summary(found) is not None
    eager = TrainingModel.from_source(source, path, ProjectIndex().view(path))
    net = eager.instance_summary(cst.parse_expression("net"), eager.module_scope)
    assert net is not None
    stub = eager.stubs.class_info(net)  # the stub first: the answers it gives are the same
    assert stub is not None and "state_dict" not in stub.methods
    for text, site in calls.items():
        other = next(s for s in eager.calls if eager.text_of(s.node) == text)
        mine, theirs = model.callee(site.node, site.scope), eager.callee(other.node, other.scope)
        assert (mine is None) == (theirs is None), text
    summary = model.instance_summary(cst.parse_expression("meter"), model.module_scope)
    assert summary is not None and summary.may_define("update")
    assert not summary.may_define("reset")


def test_relative_paths_are_relpath(tmp_path: Path) -> None:
    import os

    index = ProjectIndex()
    for path, folder in [
        (tmp_path / "a" / "b.py", tmp_path / "c"),
        (tmp_path / "b.py", tmp_path),
        (tmp_path / "b.py", tmp_path),
    ]:
        assert index.relative(path, folder) == os.path.relpath(path, folder)
