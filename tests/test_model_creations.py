"""Optimizers built in loops: their loops, conditions, owners, and models re-made in a loop."""

from __future__ import annotations

from model_helpers import build

SOURCE = """
import copy
import torch
from torch import nn

model = nn.Linear(2, 2)
params = [p for p in model.parameters() if p.requires_grad]
for epoch in range(3):
    a = torch.optim.Adam(model.parameters())
    if epoch == 2:
        b = torch.optim.SGD(params, lr=0.1)
    for net in [nn.Linear(1, 1)]:
        c = torch.optim.AdamW([{"params": net.parameters()}, {"params": model.fc.parameters()}])
    model.load_state_dict({})
d = torch.optim.SGD(model.parameters(), lr=1)
"""


def test_optimizer_creations() -> None:
    model = build(SOURCE)
    found = {c.target: c for c in model.creations.optimizers}
    assert set(found) == {"a", "b", "c", "d"}
    assert len(found["a"].loops) == 1 and not found["a"].conditional
    assert found["b"].conditional and found["b"].owners == ("model",)
    assert found["b"].given == "params"
    assert len(found["c"].loops) == 2 and found["c"].owners == ("net", "model.fc")
    assert found["d"].loops == ()


def test_made_in_loop() -> None:
    model = build(SOURCE)
    found = {c.target: c for c in model.creations.optimizers}
    outer, inner = found["c"].loops[1], found["c"].loops[0]
    scope = model.module_scope
    assert model.creations.made_in_loop("net", scope, inner)  # the loop's own target
    assert model.creations.made_in_loop("model", scope, outer)  # load_state_dict in the loop
    assert model.creations.made_in_loop("model.fc", scope, outer)
    assert not model.creations.made_in_loop("model", scope, inner)
    assert not model.creations.made_in_loop("params", scope, outer)
