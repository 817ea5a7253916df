"""Property tests: whatever text comes in, the engine returns a result and never raises.

Random text, token soup that looks like training code, and the fixtures with characters and
lines deleted, duplicated and swapped all go through every rule. A rule that raises is caught
by the engine as "internal error in rule ..."; that counts as a failure here too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainlint import sources
from trainlint.engine import FileAnalyzer, FileResult, RunOptions
from trainlint.rule import load_registry
from trainlint.suppressions import Suppressions

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_TEXTS = [p.read_text("utf-8") for p in sorted(FIXTURES.glob("TL*/*.py"))]
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def analyzer() -> FileAnalyzer:
    registry = load_registry()
    return FileAnalyzer(RunOptions(codes=tuple(registry)), registry)


def assert_survives(analyzer: FileAnalyzer, text: str) -> FileResult:
    result = analyzer.analyze_text(text, Path("fuzz.py"), "fuzz.py")
    assert isinstance(result, FileResult)
    assert not (result.error or "").startswith("internal error"), result.error
    for finding in result.findings:
        assert 1 <= finding.line <= finding.end_line and finding.column >= 1
    return result


# ----------------------------------------------------------------------------- random text
@settings(FUZZ, max_examples=60)
@given(text=st.text(max_size=300))
def test_random_text(analyzer: FileAnalyzer, text: str) -> None:
    # Random text rarely mentions a trigger word; prefix one so the parser and rules run.
    assert_survives(analyzer, text)
    assert_survives(analyzer, "optimizer.zero_grad\n" + text)


HEADERS = [
    "for batch in loader:",
    "for epoch in range(10):",
    "for i, (x, y) in enumerate(loader):",
    "for step in range(accum):",
    "while True:",
    "def train(model, optimizer, loader):",
    "def closure():",
    "class Trainer(nn.Module):",
    "with torch.no_grad():",
    "with torch.autocast('cuda'):",
    "with accelerator.accumulate(model):",
    "if (i + 1) % accum == 0:",
    "if i % 10 == 0:",
    "try:",
]
STATEMENTS = [
    "import torch",
    "from torch import nn",
    "import torch.nn.functional as F",
    "import tensorflow as tf",
    "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)",
    "self.optimizer = torch.optim.SGD(self.parameters(), lr=0.1)",
    "scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)",
    "scaler = torch.cuda.amp.GradScaler()",
    "criterion = nn.BCELoss()",
    "criterion = nn.CrossEntropyLoss(reduction='sum')",
    "model = Net()",
    "model, optimizer = accelerator.prepare(model, optimizer)",
    "out = model(x)",
    "out = model.forward(x)",
    "probs = torch.sigmoid(out)",
    "loss = criterion(out, y)",
    "loss = F.binary_cross_entropy(out, y) / accum",
    "loss = loss_fn(model(x), y)",
    "total += loss",
    "total += loss.item()",
    "loss.backward()",
    "accelerator.backward(loss)",
    "scaler.scale(loss).backward()",
    "scaler.unscale_(optimizer)",
    "scaler.step(optimizer)",
    "scaler.update()",
    "optimizer.step()",
    "optimizer.step",
    "optimizer.step(closure)",
    "optimizer.zero_grad()",
    "optimizer.zero_grad",
    "model.zero_grad(set_to_none=True)",
    "self.optimizer.step()",
    "self.optimizer.zero_grad()",
    "scheduler.step()",
    "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
    "model.eval()",
    "model.train()",
    "model.compile(optimizer='adam', loss='binary_crossentropy')",
    "model.fit(x, y, epochs=3)",
    "optimizer, model = model, optimizer",
    "del optimizer",
    "return loss",
    "yield loss",
    "break",
    "continue",
    "pass",
    "x, y = batch",
    "x = x.to(device)  # noqa: TL504",
]


@st.composite
def training_code(draw: st.DrawFn) -> str:
    """Random statements and blocks, always correctly indented (so the parser accepts it)."""
    lines: list[str] = []
    depth = 0
    opened = False  # the previous line opened a block: this one must be indented once more
    for _ in range(draw(st.integers(1, 30))):
        if opened:
            depth += 1
        else:
            depth = draw(st.integers(0, depth))
        opened = draw(st.booleans()) and depth < 6
        line = draw(st.sampled_from(HEADERS if opened else STATEMENTS))
        lines.append("    " * depth + line)
    if opened:
        lines.append("    " * (depth + 1) + "pass")
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=150)
@given(text=training_code())
def test_generated_training_code(analyzer: FileAnalyzer, text: str) -> None:
    result = assert_survives(analyzer, text)
    if "try:" not in text and "yield" not in text and "return" not in text:
        assert result.error is None, (result.error, text)


# ----------------------------------------------------------------------------- mutated fixtures
def mutate(text: str, data: st.DataObject) -> str:
    """Delete, duplicate or swap characters and lines, a few times."""
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        operation = data.draw(
            st.sampled_from(
                ["del_char", "dup_char", "swap_chars", "del_line", "dup_line", "swap_lines"]
            ),
            label="operation",
        )
        if operation.endswith("line") or operation.endswith("lines"):
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            i = data.draw(st.integers(0, len(lines) - 1), label="line")
            j = data.draw(st.integers(0, len(lines) - 1), label="other line")
            if operation == "del_line":
                del lines[i]
            elif operation == "dup_line":
                lines.insert(i, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        else:
            if not text:
                continue
            i = data.draw(st.integers(0, len(text) - 1), label="char")
            j = data.draw(st.integers(0, len(text) - 1), label="other char")
            if operation == "del_char":
                text = text[:i] + text[i + 1 :]
            elif operation == "dup_char":
                text = text[:i] + text[i] + text[i:]
            else:
                chars = list(text)
                chars[i], chars[j] = chars[j], chars[i]
                text = "".join(chars)
    return text


@pytest.mark.skipif(not FIXTURE_TEXTS, reason="no fixtures yet")
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_mutated_fixtures(analyzer: FileAnalyzer, data: st.DataObject) -> None:
    original = data.draw(st.sampled_from(FIXTURE_TEXTS), label="fixture")
    assert_survives(analyzer, mutate(original, data))


# ----------------------------------------------------------------------------- deep and long
#: One level of nesting or one link of a chain each: ``(prefix, suffix)`` around the inside.
LEVELS = {
    "attribute": ("", ".b"),
    "call": ("f(", ")"),
    "subscript": ("", "[0]"),
    "plus": ("1 + ", ""),
    "and": ("a and ", ""),
    "string": ('"s" ', ""),
    "not": ("not ", ""),
    "minus": ("-", ""),
    "lambda": ("lambda: ", ""),
    "ternary": ("a if b else ", ""),
    "list": ("[", "]"),
}


@st.composite
def deep_code(draw: st.DrawFn) -> str:
    """Training code around an expression built of several runs of random nesting and chains
    (short or thousands long), inside random blocks and elif chains."""
    expression = "x"
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(sorted(LEVELS)))
        count = draw(st.one_of(st.integers(0, 60), st.integers(150, 1400), st.integers(2500, 4000)))
        prefix, suffix = LEVELS[kind]
        if prefix.startswith('"'):
            expression = f"({prefix * count}{'+ ' + expression})"
        else:
            expression = f"{prefix * count}{expression}{suffix * count}"
    blocks = draw(st.integers(0, 30))
    elifs = draw(st.sampled_from([0, 5, 400]))
    lines = ["import torch", "for batch in loader:"]
    lines += [f"{'    ' * (i + 1)}if c{i}:" for i in range(blocks)]
    indent = "    " * (blocks + 1)
    lines += [f"{indent}if x == 0:", f"{indent}    pass"]
    for i in range(elifs):
        lines += [f"{indent}elif x == {i}:", f"{indent}    pass"]
    lines += [f"{indent}else:", f"{indent}    y = {expression}"]
    lines += [f"{indent}loss.backward()", f"{indent}optimizer.step()"]
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=25)
@given(text=deep_code())
def test_deep_and_long_code_never_reaches_an_internal_error(
    analyzer: FileAnalyzer, text: str
) -> None:
    result = assert_survives(analyzer, text)
    assert not (result.error or "").startswith("cannot analyze: code nested"), result.error


try:
    import hypothesmith

    PYTHON_SOURCES = hypothesmith.from_grammar()  # built once: compiling the grammar is slow
except ImportError:  # an old test environment: the other fuzz tests still run
    PYTHON_SOURCES = st.just("")


@settings(FUZZ, max_examples=40)
@given(source=PYTHON_SOURCES)
def test_hypothesmith_sources(analyzer: FileAnalyzer, source: str) -> None:
    """Grammar-generated Python (every construct, nonsense names), with training code."""
    assert_survives(analyzer, source)
    assert_survives(analyzer, "import torch\noptimizer.step()\n" + source)


# ----------------------------------------------------------------------------- the other stages
@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decoding_random_bytes_raises_only_source_error(raw: bytes) -> None:
    try:
        text = sources.decode_python(raw)
    except sources.SourceError as exc:
        assert exc.message and "\n" not in exc.message
    else:
        assert isinstance(text, str)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["cells", "cell_type", "source", "code", "metadata"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    document=JSON,
    cells=st.lists(
        st.fixed_dictionaries(
            {
                "cell_type": st.sampled_from(["code", "markdown", "raw", 3]),
                "source": st.text(max_size=60) | st.lists(st.text(max_size=20), max_size=4),
            }
        ),
        max_size=5,
    ),
)
def test_notebooks_raise_only_source_error(document: object, cells: list[object]) -> None:
    for raw in (json.dumps(document), json.dumps({"cells": cells})):
        try:
            text, cell_lines = sources.notebook_to_text(raw.encode())
        except sources.SourceError as exc:
            assert exc.message and "\n" not in exc.message
        else:
            assert text.endswith("\n")
            assert all(1 <= line <= text.count("\n") for line in cell_lines)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), line=st.integers(-2, 20), code=st.sampled_from(["TL101", "X1"]))
def test_suppressions_never_raise(text: str, line: int, code: str) -> None:
    assert isinstance(Suppressions.of(text).suppresses(code, line), bool)
