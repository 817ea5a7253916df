"""A synthetic corpus for the benchmark: training scripts mixed with ordinary code.

``generate(directory, count)`` writes ``count`` deterministic ``.py`` files (same seed, same
bytes) so anyone can run the bench without fetching real repositories. About 40 % are training
code in the styles the rules care about (plain PyTorch loops, gradient accumulation, AMP,
Lightning modules, Keras ``fit``), the rest is code a training repository also holds but no rule
needs (utilities, data classes, CLI glue, generated tables), so the prefilter has real work.
One file in 500 is over the default size cap, to exercise the "skipped: too large" path.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

_OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop")
_LOSSES = ("CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "NLLLoss", "L1Loss")
_LAYERS = ("nn.Linear({a}, {b})", "nn.Conv2d({a}, {b}, 3, padding=1)", "nn.LayerNorm({a})")


def _model_class(rng: random.Random, name: str) -> str:
    width = rng.choice((64, 128, 256, 512))
    layers = [rng.choice(_LAYERS).format(a=width, b=width) for _ in range(rng.randint(2, 6))]
    body = "\n".join(f"        self.layer{i} = {layer}" for i, layer in enumerate(layers))
    calls = "\n".join(f"        x = torch.relu(self.layer{i}(x))" for i in range(len(layers)))
    extra = "        self.dropout = nn.Dropout(0.1)\n" if rng.random() < 0.5 else ""
    norm = f"        self.norm = nn.BatchNorm1d({width})\n" if rng.random() < 0.4 else ""
    return (
        f"class {name}(nn.Module):\n"
        f'    """A small network ({len(layers)} layers of width {width})."""\n\n'
        f"    def __init__(self, num_classes: int = 10) -> None:\n"
        f"        super().__init__()\n{body}\n{extra}{norm}"
        f"        self.head = nn.Linear({width}, num_classes)\n\n"
        f"    def forward(self, x):\n{calls}\n        return self.head(x)\n"
    )


def _train_loop(rng: random.Random) -> str:
    accumulate = rng.random() < 0.3
    amp = rng.random() < 0.3
    scheduler = rng.random() < 0.5
    forget_zero = rng.random() < 0.1
    lines = ["def train_one_epoch(model, loader, optimizer, criterion, device, epoch):"]
    lines.append("    model.train()")
    lines.append("    running = 0.0")
    if amp:
        lines.insert(1, "    scaler = torch.cuda.amp.GradScaler()")
    lines.append("    for step, (inputs, targets) in enumerate(loader):")
    lines.append("        inputs, targets = inputs.to(device), targets.to(device)")
    if amp:
        lines.append("        with torch.autocast(device_type='cuda'):")
        lines.append("            outputs = model(inputs)")
        lines.append("            loss = criterion(outputs, targets)")
    else:
        lines.append("        outputs = model(inputs)")
        lines.append("        loss = criterion(outputs, targets)")
    if accumulate:
        lines.append("        loss = loss / ACCUMULATION_STEPS")
    lines.append("        scaler.scale(loss).backward()" if amp else "        loss.backward()")
    indent = "        "
    if accumulate:
        lines.append("        if (step + 1) % ACCUMULATION_STEPS == 0:")
        indent = "            "
    lines.append(indent + ("scaler.step(optimizer)" if amp else "optimizer.step()"))
    if amp:
        lines.append(indent + "scaler.update()")
    if not forget_zero:
        lines.append(indent + "optimizer.zero_grad()")
    lines.append("        running += loss.item()")
    lines.append("        if step % 100 == 0:")
    lines.append("            print(f'epoch {epoch} step {step} loss {running / (step + 1):.4f}')")
    lines.append("    return running / max(1, len(loader))")
    text = "\n".join(lines) + "\n"
    if scheduler:
        text += "\n\ndef make_scheduler(optimizer, epochs):\n"
        text += "    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)\n"
    return text


def _evaluate(rng: random.Random) -> str:
    guard = "    with torch.no_grad():\n" if rng.random() < 0.8 else "    if True:\n"
    return (
        "def evaluate(model, loader, device):\n"
        "    model.eval()\n"
        "    correct = total = 0\n"
        f"{guard}"
        "        for inputs, targets in loader:\n"
        "            outputs = model(inputs.to(device))\n"
        "            correct += (outputs.argmax(1) == targets.to(device)).sum().item()\n"
        "            total += targets.size(0)\n"
        "    return correct / max(1, total)\n"
    )


def torch_script(rng: random.Random, index: int) -> str:
    optimizer = rng.choice(_OPTIMIZERS)
    loss = rng.choice(_LOSSES)
    parts = [
        f'"""Training script {index}: {optimizer} with {loss}."""',
        "import argparse\n\nimport torch\nimport torch.nn as nn\n"
        "from torch.utils.data import DataLoader, TensorDataset",
        f"ACCUMULATION_STEPS = {rng.choice((2, 4, 8))}",
        _model_class(rng, f"Net{index}"),
        _train_loop(rng),
        _evaluate(rng),
    ]
    parts += [_utility_function(rng, i) for i in range(rng.randint(0, 6))]
    parts.append(
        textwrap.dedent(
            f"""\
            def main():
                parser = argparse.ArgumentParser()
                parser.add_argument("--epochs", type=int, default={rng.randint(1, 90)})
                parser.add_argument("--lr", type=float, default={rng.choice((0.1, 0.01, 3e-4))})
                args = parser.parse_args()
                device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
                data = TensorDataset(torch.randn(1024, 64), torch.randint(0, 10, (1024,)))
                loader = DataLoader(data, batch_size=32, shuffle=True, drop_last=True)
                model = Net{index}().to(device)
                optimizer = torch.optim.{optimizer}(model.parameters(), lr=args.lr)
                criterion = nn.{loss}()
                for epoch in range(args.epochs):
                    train_one_epoch(model, loader, optimizer, criterion, device, epoch)
                    print("accuracy", evaluate(model, loader, device))
                torch.save(model.state_dict(), "model.pt")


            if __name__ == "__main__":
                main()
            """
        )
    )
    return "\n\n".join(parts)


def lightning_module(rng: random.Random, index: int) -> str:
    optimizer = rng.choice(_OPTIMIZERS)
    return textwrap.dedent(
        f"""\
        import lightning as L
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class LitModel{index}(L.LightningModule):
            def __init__(self, lr: float = 1e-3) -> None:
                super().__init__()
                self.save_hyperparameters()
                self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self.net(x), y)
                self.log("train_loss", loss)
                return loss

            def validation_step(self, batch, batch_idx):
                x, y = batch
                self.log("val_loss", F.cross_entropy(self.net(x), y))

            def configure_optimizers(self):
                return torch.optim.{optimizer}(self.parameters(), lr=self.hparams.lr)
        """
    ) + "\n\n".join(_utility_function(rng, i) for i in range(rng.randint(0, 4)))


def keras_script(rng: random.Random, index: int) -> str:
    activation = rng.choice(("softmax", "sigmoid", None))
    from_logits = rng.choice(("True", "False"))
    final = f", activation={activation!r}" if activation else ""
    return textwrap.dedent(
        f"""\
        import numpy as np
        import tensorflow as tf
        from tensorflow import keras


        def build_model{index}():
            model = keras.Sequential([
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10{final}),
            ])
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits={from_logits}),
                metrics=["accuracy"],
            )
            return model


        if __name__ == "__main__":
            x = np.random.rand(256, 32).astype("float32")
            y = np.random.randint(0, 10, size=(256,))
            build_model{index}().fit(x, y, epochs={rng.randint(1, 20)}, batch_size=32)
        """
    )


def _utility_function(rng: random.Random, index: int) -> str:
    kind = rng.randrange(5)
    name = f"helper_{index}_{rng.randrange(10_000)}"
    if kind == 0:
        return (
            f"def {name}(items, key=None):\n"
            '    """Group items by key, keeping their order."""\n'
            "    groups = {}\n"
            "    for item in items:\n"
            "        groups.setdefault(key(item) if key else item, []).append(item)\n"
            "    return groups\n"
        )
    if kind == 1:
        return (
            f"def {name}(path):\n"
            "    with open(path, encoding='utf-8') as handle:\n"
            "        return [line.strip() for line in handle if line.strip()]\n"
        )
    if kind == 2:
        return (
            f"class {name.title().replace('_', '')}:\n"
            "    def __init__(self, capacity=128):\n"
            "        self.capacity = capacity\n"
            "        self.items = []\n\n"
            "    def push(self, value):\n"
            "        self.items.append(value)\n"
            "        if len(self.items) > self.capacity:\n"
            "            self.items.pop(0)\n\n"
            "    def mean(self):\n"
            "        return sum(self.items) / max(1, len(self.items))\n"
        )
    if kind == 3:
        return (
            f"def {name}(text: str, width: int = 80) -> list[str]:\n"
            "    words, lines, current = text.split(), [], ''\n"
            "    for word in words:\n"
            "        if len(current) + len(word) + 1 > width:\n"
            "            lines.append(current)\n"
            "            current = word\n"
            "        else:\n"
            "            current = f'{current} {word}'.strip()\n"
            "    return lines + ([current] if current else [])\n"
        )
    return (
        f"def {name}(n: int) -> list[int]:\n"
        "    sieve = [True] * (n + 1)\n"
        "    for i in range(2, int(n ** 0.5) + 1):\n"
        "        if sieve[i]:\n"
        "            sieve[i * i :: i] = [False] * len(sieve[i * i :: i])\n"
        "    return [i for i in range(2, n + 1) if sieve[i]]\n"
    )


def unrelated_module(rng: random.Random, index: int) -> str:
    header = (
        f'"""Support module {index}: nothing here trains anything."""\n'
        "import json\nimport os\nimport re\nfrom dataclasses import dataclass, field\n"
    )
    config = textwrap.dedent(
        f"""\
        @dataclass
        class Settings{index}:
            name: str = "run-{index}"
            retries: int = {rng.randint(1, 5)}
            tags: list[str] = field(default_factory=list)

            @classmethod
            def from_env(cls):
                return cls(name=os.environ.get("RUN_NAME", "default"))

            def dump(self, path):
                with open(path, "w") as handle:
                    json.dump(self.__dict__, handle)
        """
    )
    parts = [header, config]
    parts += [_utility_function(rng, i) for i in range(rng.randint(3, 25))]
    return "\n\n".join(parts)


def generated_table(rng: random.Random, index: int, rows: int) -> str:
    """A large data module (the kind code generators write): long, and never training code."""
    lines = [f'"""Generated lookup table {index}; do not edit."""', "", "TABLE = {"]
    for row in range(rows):
        lines.append(f"    {row}: ({rng.random():.6f}, {rng.randrange(1 << 30)}, 'k{row}'),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(directory: Path, count: int, seed: int = 0) -> list[Path]:
    """Write ``count`` files under ``directory`` (in a few sub-packages); return their paths."""
    rng = random.Random(seed)
    written: list[Path] = []
    for index in range(count):
        package = directory / f"pkg{index % 7}"
        package.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if index % 500 == 499:
            text, stem = generated_table(rng, index, 40_000), "oversized_table"
        elif roll < 0.25:
            text, stem = torch_script(rng, index), "train"
        elif roll < 0.32:
            text, stem = lightning_module(rng, index), "lit"
        elif roll < 0.40:
            text, stem = keras_script(rng, index), "keras_fit"
        elif roll < 0.43:
            text, stem = generated_table(rng, index, rng.randint(500, 4000)), "table"
        else:
            text, stem = unrelated_module(rng, index), "util"
        path = package / f"{stem}_{index:05d}.py"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
