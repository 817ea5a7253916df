"""The train/eval-mode rules' fixes (TL401, TL402): exact fixed text, and clean afterwards."""

from __future__ import annotations

from pathlib import Path

from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.fixes import applicable, fix_text
from trainlint.rule import load_registry

REGISTRY = load_registry()
ANALYZER = FileAnalyzer(RunOptions(codes=tuple(REGISTRY)), REGISTRY)


def _fixed(tmp_path: Path, source: str, code: str) -> str:
    path = tmp_path / "t.py"
    path.write_text(source)
    findings = [f for f in ANALYZER.analyze_file(path, "t.py").findings if f.code == code]
    assert findings and all(f.applicability == "unsafe" for f in findings)
    assert not any(applicable(f, unsafe=False) for f in findings)
    done = fix_text(source, findings)
    path.write_text(done.text)
    left = [f for f in ANALYZER.analyze_file(path, "t.py").findings if f.code == code]
    assert left == [], left
    return done.text


LOOP = """import torch

def run(model, train_loader, val_loader, optimizer):
    for epoch in range(3):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
        with torch.no_grad():
            for x, y in val_loader:
                print(model(x))
"""


def test_tl401_switches_to_eval_before_the_loop_and_back_after(tmp_path: Path) -> None:
    assert _fixed(tmp_path, LOOP, "TL401") == LOOP.replace(
        "        with torch.no_grad():\n            for x, y in val_loader:\n"
        "                print(model(x))\n",
        "        with torch.no_grad():\n            model.eval()\n"
        "            for x, y in val_loader:\n                print(model(x))\n"
        "            model.train()\n",
    )


FUNCTION = '''import torch

@torch.no_grad()
def validate(model, loader):
    """Mean score."""
    return [model(x) for x in loader]
'''


def test_tl401_switches_a_function_region_to_eval_after_its_docstring(tmp_path: Path) -> None:
    assert _fixed(tmp_path, FUNCTION, "TL401") == FUNCTION.replace(
        '"""Mean score."""\n', '"""Mean score."""\n    model.eval()\n'
    )


EVAL_LOOP = """import torch as T

def main(model, val_loader):
    model.eval()
    for x, y in val_loader:
        out = model(x)
        print(out)
"""


def test_tl402_wraps_the_loop_in_no_grad(tmp_path: Path) -> None:
    assert _fixed(tmp_path, EVAL_LOOP, "TL402") == (
        "import torch as T\n\ndef main(model, val_loader):\n    model.eval()\n"
        "    with T.no_grad():\n        for x, y in val_loader:\n"
        "            out = model(x)\n            print(out)\n"
    )


def test_tl402_decorates_a_function_region(tmp_path: Path) -> None:
    source = (
        "import torch\n\n\ndef predict(model, xs):\n"
        "    model.eval()\n    return [model(x) for x in xs]\n"
    )
    assert _fixed(tmp_path, source, "TL402") == source.replace(
        "def predict", "@torch.no_grad()\ndef predict"
    )


RESTORE = """import torch

def fit(model, train_loader, val_loader, optimizer):
    model.train()
    for epoch in range(3):
        for x, y in train_loader:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            print([model(x) for x, _ in val_loader])
"""


def test_tl403_switches_back_before_the_training_loop(tmp_path: Path) -> None:
    assert _fixed(tmp_path, RESTORE, "TL403") == RESTORE.replace(
        "        for x, y in train_loader:\n",
        "        model.train()\n        for x, y in train_loader:\n",
    )


DROPOUT = """import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def forward(self, x):
        x = F.dropout(x, 0.5)
        return F.dropout(
            x,
            p=0.1,
        )
"""


def test_tl404_passes_the_module_training_flag(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text(DROPOUT)
    findings = [f for f in ANALYZER.analyze_file(path, "t.py").findings if f.code == "TL404"]
    assert [f.applicability for f in findings] == ["safe", "safe"]
    done = fix_text(DROPOUT, findings)
    assert done.text == DROPOUT.replace(
        "F.dropout(x, 0.5)", "F.dropout(x, 0.5, training=self.training)"
    ).replace("p=0.1,", "p=0.1, training=self.training,")
    path.write_text(done.text)
    assert not [f for f in ANALYZER.analyze_file(path, "t.py").findings if f.code == "TL404"]


def test_tl402_names_legacy_volatile_only_where_it_is_written(tmp_path: Path) -> None:
    legacy = (
        "from torch.autograd import Variable\n\n"
        "def test(model, test_loader):\n"
        "    model.eval()\n"
        "    for data, target in test_loader:\n"
        "        data = Variable(data, volatile=True)\n"
        "        print(model(data))\n"
    )
    plain = legacy.replace("Variable(data, volatile=True)", "data.float()")

    def messages(source: str) -> list[str]:
        path = tmp_path / "t.py"
        path.write_text(source)
        found = ANALYZER.analyze_file(path, "t.py").findings
        return [f.message for f in found if f.code == "TL402"]

    assert [("volatile=True" in m) for m in messages(legacy)] == [True]
    assert [("volatile" in m) for m in messages(plain)] == [False]
