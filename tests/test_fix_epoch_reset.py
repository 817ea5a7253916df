"""TL204's unsafe fix: start carried totals (and the counters they are divided by) and metric
objects afresh at the top of each epoch."""

from __future__ import annotations

from pathlib import Path

from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.fixes import applicable, fix_text
from trainlint.rule import load_registry

REGISTRY = load_registry()
ANALYZER = FileAnalyzer(RunOptions(codes=tuple(REGISTRY)), REGISTRY)

SOURCE = """\
import torchmetrics


def fit(model, loader, optimizer, criterion, epochs):
    correct = 0
    seen = 0
    f1 = torchmetrics.F1Score(task="binary")
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            optimizer.zero_grad()
            out = model(x)
            criterion(out, y).backward()
            optimizer.step()
            correct += (out.argmax(1) == y).sum().item()
            seen += y.size(0)
            f1.update(out, y)
        print(epoch, correct / seen, f1.compute())
"""


def _tl204(path: Path) -> list:
    return [f for f in ANALYZER.analyze_file(path, path.name).findings if f.code == "TL204"]


def test_fix_resets_the_total_its_divisor_and_the_metric(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(SOURCE)
    findings = _tl204(path)
    assert len(findings) == 2
    assert all(f.applicability == "unsafe" for f in findings)
    assert not any(applicable(f, unsafe=False) for f in findings)
    text = SOURCE
    for _ in range(3):  # two inserts at one place: the second waits for the next pass
        done = fix_text(text, findings)
        text = done.text
        path.write_text(text)
        findings = _tl204(path)
        if not findings:
            break
    assert text == SOURCE.replace(
        "    for epoch in range(epochs):\n",
        "    for epoch in range(epochs):\n"
        "        f1.reset()\n"
        "        correct = 0\n"
        "        seen = 0\n",
    )
    assert findings == []


def test_keras_metrics_reset_with_reset_state(tmp_path: Path) -> None:
    source = (
        "import tensorflow as tf\n"
        "\n"
        "loss_metric = tf.keras.metrics.Mean()\n"
        "\n"
        "\n"
        "def run(step, dataset, epochs):\n"
        "    for epoch in range(epochs):\n"
        "        for x, y in dataset:\n"
        "            loss_metric(step(x, y))\n"
        "        print(loss_metric.result())\n"
    )
    path = tmp_path / "k.py"
    path.write_text(source)
    [finding] = _tl204(path)
    done = fix_text(source, [finding])
    assert "    for epoch in range(epochs):\n        loss_metric.reset_state()\n" in done.text


def test_a_meter_is_reset_with_its_own_method(tmp_path: Path) -> None:
    source = (
        "class Meter:\n"
        "    def __init__(self):\n"
        "        self.reset()\n"
        "\n"
        "    def reset(self):\n"
        "        self.sum, self.count = 0.0, 0\n"
        "\n"
        "    def update(self, val, n=1):\n"
        "        self.sum += val * n\n"
        "        self.count += n\n"
        "        self.avg = self.sum / self.count\n"
        "\n"
        "\n"
        "def train(model, loader, optimizer, criterion, epochs):\n"
        "    losses = Meter()\n"
        "    for epoch in range(epochs):\n"
        "        for x, y in loader:\n"
        "            optimizer.zero_grad()\n"
        "            loss = criterion(model(x), y)\n"
        "            loss.backward()\n"
        "            optimizer.step()\n"
        "            losses.update(loss.item(), x.size(0))\n"
        "        print(epoch, losses.avg)\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    [finding] = _tl204(path)
    done = fix_text(source, [finding])
    assert done.text == source.replace(
        "    for epoch in range(epochs):\n",
        "    for epoch in range(epochs):\n        losses.reset()\n",
    )
    path.write_text(done.text)
    assert _tl204(path) == []
