"""Code the parser cannot take (issue 12: A4, A6, B18, C25, C26): pathological nesting, chains
thousands of links long, huge data literals, several rules giving up, valid Python libcst
rejects. Each case is generated here, mixed with normal files whose findings must still be
reported, with ``--jobs 1`` and with the pool: one line naming the file, the cause and the
line, exit 2 (or a skip for a size limit), never a crash, a hang or "internal error".
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainlint import limits
from trainlint.cli import main
from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.rule import Rule, load_registry

GOOD = "def train(optimizer):\n    optimizer.zero_grad\n"  # TL405 on line 2
TRAINING = "import torch\noptimizer.step()\n"
NEIGHBOURS = 5
JOBS = ["1", "2"]
EXPECTED = [("good.py", 2), *((f"n{n}.py", 2) for n in range(NEIGHBOURS))]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "good.py").write_text(GOOD)
    for n in range(NEIGHBOURS):
        (root / f"n{n}.py").write_text(GOOD)
    monkeypatch.chdir(root)
    monkeypatch.setenv("NO_COLOR", "1")
    return root


def invoke(*args: str, jobs: str = "1") -> tuple[int, dict, str]:
    result = CliRunner().invoke(main, ["check", "--jobs", jobs, "--format", "json", *args])
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


def findings(document: dict) -> list[tuple[str, int]]:
    return [(f["path"], f["line"]) for f in document["findings"]]


def elif_chain(n: int, last: str = "pass") -> str:
    branches = "".join(f"elif x == {i}:\n    pass\n" for i in range(1, n))
    return f"if x == 0:\n    pass\n{branches}else:\n    {last}\n"


#: name -> (generator, the line the error names). Each is valid Python or close to it; the
#: sizes are those of the issue's reproductions.
SHAPES = {
    "attribute chain": (lambda: "y = a" + ".b" * 10_000 + "\n", 1),
    "sum of 20,000 terms": (lambda: "y = " + " + ".join(["1"] * 20_000) + "\n", 1),
    "3,200 elif branches": (lambda: elif_chain(3200), 3001 * 2 - 1),
    "and chain": (lambda: "y = " + " and ".join(["a"] * 4000) + "\n", 1),
    "joined strings": (lambda: "y = (\n" + '    "a"\n' * 5000 + ")\n", 3001),
    "nested calls": (lambda: "y = " + "f(" * 500 + ")" * 500 + "\n", 1),
    "nested subscripts": (lambda: "y = a" + "[0" * 500 + "]" * 500 + "\n", 1),
    "nested brackets": (lambda: "y = " + "[" * 1000 + "]" * 1000 + "\n", 1),
    "call chain": (lambda: "y = f" + "()" * 3000 + "\n", 1),
    "subscript chain": (lambda: "y = a" + "[0]" * 3000 + "\n", 1),
    "unary minus": (lambda: "y = " + "-" * 5000 + "1\n", 1),
    "nested lambdas": (lambda: "y = " + "lambda: " * 2000 + "0\n", 1),
}


@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pathological_code_is_reported_not_parsed(project: Path, jobs: str, shape: str) -> None:
    generate, line = SHAPES[shape]
    (project / "deep.py").write_text(TRAINING + generate())
    code, document, _ = invoke("--no-cache", jobs=jobs)
    assert code == 2
    assert findings(document) == EXPECTED
    (error,) = document["errors"]
    assert error["path"] == "deep.py"
    assert "to analyze" in error["message"], error
    assert error["line"] == line + 2  # after the TRAINING lines


def test_pathological_notebook_cell_names_the_cell(project: Path) -> None:
    cells = [TRAINING, "y = a" + ".b" * 10_000 + "\n"]
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [{"cell_type": "code", "source": c, "metadata": {}, "outputs": []} for c in cells],
    }
    (project / "deep.ipynb").write_text(json.dumps(notebook))
    code, document, _ = invoke("--no-cache", "--include-notebooks")
    assert code == 2 and findings(document) == EXPECTED
    (error,) = document["errors"]
    assert "to analyze" in error["message"] and "cell 2, line 1" in error["message"]


def test_pathological_code_is_cached_as_such(project: Path) -> None:
    (project / "deep.py").write_text(TRAINING + SHAPES["attribute chain"][0]())
    first = invoke()
    second = invoke()
    assert first[0] == second[0] == 2
    assert first[1]["errors"] == second[1]["errors"]
    assert findings(second[1]) == EXPECTED


@pytest.mark.parametrize("jobs", JOBS)
def test_deep_code_within_the_limits_is_analyzed_to_the_end(project: Path, jobs: str) -> None:
    # 2,500 elif branches, a 900-link chain, 2,500 joined strings (CPython's own
    # pydoc_data/topics.py has 2,205): far past Python's default recursion limit for the tree
    # walks; the finding after each is still reported.
    (project / "elifs.py").write_text(
        "def train(optimizer):\n" + _indent(elif_chain(2500, "optimizer.zero_grad")) + "\n"
    )
    (project / "chain.py").write_text(
        "def train(optimizer):\n    y = a" + ".b" * 900 + "\n    optimizer.zero_grad\n"
    )
    (project / "topics.py").write_text(
        "def train(optimizer):\n    y = (\n" + '        "a"\n' * 2500 + "    )\n"
        "    optimizer.zero_grad\n"
    )
    code, document, _ = invoke("--no-cache", jobs=jobs)
    assert document["errors"] == [] and code == 1
    found = findings(document)
    assert ("chain.py", 3) in found
    assert ("elifs.py", 2500 * 2 + 3) in found
    assert ("topics.py", 2500 + 4) in found
    assert set(EXPECTED) <= set(found)


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


@pytest.mark.parametrize("jobs", JOBS)
def test_huge_data_literal_is_skipped_by_its_token_count(project: Path, jobs: str) -> None:
    # Under the size cap, but 2 bytes a token: parsed, it would need ~2 kB of memory a token.
    (project / "trainlint.toml").write_text("max-file-size = 100000\n")
    (project / "data.py").write_text(TRAINING + "x = [" + "1," * 40_000 + "]\n")
    code, document, _ = invoke("--no-cache", jobs=jobs)
    assert code == 1 and findings(document) == EXPECTED and document["errors"] == []
    (skipped,) = document["skipped"]
    assert skipped["path"] == "data.py" and "too many tokens" in skipped["reason"]


def test_real_code_is_far_from_the_limits() -> None:
    # A real training file, a long module of the standard library's style: nowhere near.
    text = (Path(__file__).parent.parent / "src/trainlint/engine.py").read_text()
    limits.check(text, limits.token_limit(1_000_000))
    limits.check(
        TRAINING + "x = [" + "-1, " * 10_000 + "]\n" + "d = {" + "'k': (1, 2), " * 5000 + "}\n"
    )


def test_measure_survives_what_tokenize_rejects() -> None:
    limits.check("x = (\n")  # EOF in a multi-line statement
    limits.check("if x:\n        y\n    z\n")  # inconsistent dedent
    limits.check("s = '''\n")


# ----------------------------------------------------------------------------- C25
class _Deep(Rule):
    code, name, triggers = "TL990", "deep-one", ()

    def check(self, model):  # type: ignore[no-untyped-def]
        def resolve(n: int) -> int:
            return resolve(n + 1)

        yield from ()
        resolve(0)


class _Deep2(_Deep):
    code, name = "TL991", "deep-two"


def test_every_rule_that_gives_up_is_named_with_its_reason() -> None:
    registry = {**load_registry(), "TL990": _Deep, "TL991": _Deep2}
    analyzer = FileAnalyzer(RunOptions(codes=("TL405", "TL990", "TL991")), registry)
    result = analyzer.analyze_text(GOOD, Path("x.py"), "x.py")
    assert result.error is not None
    assert "TL990, TL991 gave up" in result.error
    assert "recursion in resolve" in result.error and "test_hostile_limits.py" in result.error
    assert [f.code for f in result.findings] == ["TL405"]  # the other rule's finding stays


# ----------------------------------------------------------------------------- C26
FORM_FEED = "class A:\n\x0c    x = 1\n    def f(self):\n        pass\n    y = 2\noptimizer.step()\n"


@pytest.mark.parametrize("jobs", JOBS)
def test_valid_python_the_parser_rejects_is_not_a_syntax_error(project: Path, jobs: str) -> None:
    (project / "ff.py").write_text(FORM_FEED)
    code, document, _ = invoke("--no-cache", jobs=jobs)
    assert code == 2 and findings(document) == EXPECTED
    (error,) = document["errors"]
    assert error["message"].startswith("cannot analyze: the parser does not support this")
    assert "syntax error" not in error["message"] and "form feed" in error["message"]
    assert error["line"] == 2


def test_real_syntax_errors_stay_syntax_errors(project: Path) -> None:
    (project / "bad.py").write_text(TRAINING + "def f(:\n")
    code, document, _ = invoke("--no-cache")
    (error,) = document["errors"]
    assert code == 2 and error["message"].startswith("syntax error") and error["line"] == 3


# ----------------------------------------------------------------------------- A14 time budget
class _Endless(Rule):
    """Never finishes on a file named spin.py (a stand-in for a rule quadratic in its loops)."""

    code, name, triggers = "TL992", "endless", ()

    def check(self, model):  # type: ignore[no-untyped-def]
        yield from ()
        while Path(str(model.path)).name == "spin.py":
            pass


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_over_its_time_budget_is_given_up_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    from trainlint import engine

    registry = {**load_registry(), "TL992": _Endless}
    real = engine.load_catalog()
    catalog = dataclasses.replace(real, rules=registry)
    monkeypatch.setattr(engine, "load_catalog", lambda: catalog)  # forked workers too
    names = ["spin.py", *(f"n{n}.py" for n in range(NEIGHBOURS))]
    for name in names:
        (tmp_path / name).write_text(GOOD)
    options = RunOptions(codes=("TL405", "TL992"), root=tmp_path, jobs=jobs, time_budget=0.5)
    results = {r.display: r for r in engine.run([tmp_path / n for n in names], options)}
    spin = results.pop("spin.py")
    assert spin.error is not None and spin.error.startswith("gave up after 0.5 s")
    assert "in rule TL992" in spin.error
    assert all(r.error is None and [f.line for f in r.findings] == [2] for r in results.values())


def _work_for_loops(n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Calls to the model's per-node helpers (the steps that were quadratic in the number of
    loops) for a file of ``n`` small flagged loops: a count, not a time."""
    from trainlint.model import TrainingModel
    from trainlint.model.loops import placement
    from trainlint.model.values.resolve import ValueResolver

    counts = [0]

    def counting(cls: type, name: str) -> None:
        real = getattr(cls, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            counts[0] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counting(TrainingModel, "order_of")
    counting(ValueResolver, "_value_of_binding")
    counting(placement.Placement, "parent")
    loop = "for x in loader:\n    loss = model(x)\n    loss.backward()\n    optimizer.step()\n"
    # No time budget: this counts work, and a loaded machine must not turn it into a timeout.
    analyzer = FileAnalyzer(RunOptions(codes=tuple(load_registry()), time_budget=0))
    result = analyzer.analyze_text("import torch\n" + loop * n, Path("x.py"), "x.py")
    assert result.error is None and len([f for f in result.findings if f.code == "TL101"]) == n
    monkeypatch.undo()
    return counts[0]


def test_analysis_work_grows_linearly_with_the_number_of_loops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small, large = _work_for_loops(100, monkeypatch), _work_for_loops(400, monkeypatch)
    assert large < 4 * small * 1.25, (small, large)  # quadratic would be 16 times


def _outcome(tokens: object) -> object:
    try:
        limits._measure(tokens, 0)  # type: ignore[arg-type]
    except limits.TooComplex as exc:
        return exc.message, exc.line
    return None


@pytest.mark.skipif(limits._c_tokens("x") is None, reason="only Python 3.11 has the C tokenizer")
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_fast_tokenizer_measures_as_tokenize_does(shape: str) -> None:
    text = TRAINING + SHAPES[shape][0]()
    python = _outcome(limits._python_tokens(text))
    try:
        fast = _outcome(limits._c_tokens(text))
    except SyntaxError:  # brackets over Python's limit: check() measures again with tokenize
        assert python is not None and "brackets" in str(python)
        return
    assert fast == python
    engine = (Path(__file__).parent.parent / "src/trainlint/engine.py").read_text()
    assert _outcome(limits._c_tokens(engine)) == _outcome(limits._python_tokens(engine)) is None
