"""Shortcuts the events take for speed answer exactly as the long way would:

* a loop's own iteration, placed in the events of the function or loop around it
  (``IterationBuilder.reuse_iterations``), gives the events flattening the loop's body again
  gives, field by field;
* ``may_hold_events`` (the names of the calls a function may reach, :mod:`.loops.reach`) never
  rules out a kind the function's events hold, and TL111's backwards are the same with it.
"""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from trainlint.model import TrainingModel
from trainlint.model.loops.events import Event, EventKind, IterationBuilder
from trainlint.model.loops.reach import REACHABLE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FILES = sorted(FIXTURES.rglob("*.py"))

RECURSIVE = """\
import torch


def run(model, loader, optimizer, train=True):
    if train:
        for x, y in loader:
            with torch.no_grad():
                model.eval() if not train else model.train()
            optimizer.zero_grad()
            loss = model(x).sum()
            loss.backward()
            optimizer.step()
            run(model, loader, optimizer, train=False)
    else:
        for x, y in loader:
            for part in x:
                model(part)


def outer(model, loader, opt):
    with torch.no_grad():
        for batch in loader:
            if batch is None:
                continue
            for micro in batch:
                opt.zero_grad()
                model(micro).backward()
                opt.step()
"""


def _models(text: str) -> tuple[TrainingModel, TrainingModel]:
    """Two models over the same tree (so nodes compare by identity)."""
    module = cst.parse_module(text)
    return (
        TrainingModel(module, "a.py", text, parsed_from_text=True),
        TrainingModel(module, "a.py", text, parsed_from_text=True),
    )


def _shape(event: Event) -> tuple:
    return (
        event.kind,
        id(event.node),
        event.scope.name,
        event.subject,
        id(event.operand),
        tuple((id(c.test), c.negated) for c in event.conditions),
        tuple(id(loop.node) for loop in event.loops),
        event.contexts,
        tuple(id(call) for call in event.via),
        event.scaled_by,
        event.closure,
        event.managed,
        event.method,
        event.collective,
    )


def _all_events(model: TrainingModel) -> list[list[tuple]]:
    found = [[_shape(e) for e in model.function_events(scope)] for scope in model.scopes]
    found += [[_shape(e) for e in model.iteration(loop)] for loop in model.loops]
    return found


def _compare_reuse(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reused, flattened = _models(text)
    with_reuse = _all_events(reused)
    monkeypatch.setattr(IterationBuilder, "reuse_iterations", False)
    assert _all_events(flattened) == with_reuse
    monkeypatch.setattr(IterationBuilder, "reuse_iterations", True)


def test_reused_iterations_equal_flattened_ones_on_nested_loops_and_recursion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _compare_reuse(RECURSIVE, monkeypatch)
    model = TrainingModel.from_source(RECURSIVE)
    run = next(s for s in model.scopes if s.name == "run")
    first = next(loop for loop in model.loops if loop.scope is run)
    model.iteration(first)
    assert model.reusable_iteration(first) is None  # it inlines ``run`` itself
    outer = next(s for s in model.scopes if s.name == "outer")
    inner = next(lp for lp in model.loops if lp.scope is outer and lp.parent is not None)
    assert model.reusable_iteration(inner) is not None
    events = model.function_events(outer)
    backward = next(e for e in events if e.kind is EventKind.BACKWARD)
    assert "no_grad" in backward.contexts  # the ``with`` around the loop, not in its iteration
    assert len(backward.loops) == 2 and len(backward.conditions) == 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_reused_iterations_equal_flattened_ones_on_fixtures(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text()
    try:
        _compare_reuse(text, monkeypatch)
    except cst.ParserSyntaxError:
        pytest.skip("not parsable by libcst")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_event_reach_never_rules_out_a_kind_the_events_hold(path: Path) -> None:
    try:
        model = TrainingModel.from_source(path.read_text(), path)
    except cst.ParserSyntaxError:
        pytest.skip("not parsable by libcst")
    for scope in model.scopes:
        kinds = {e.kind for e in model.function_events(scope)}
        for kind in REACHABLE:
            if kind in kinds:
                assert model.may_hold_events(scope, kind), (scope.name, kind)
        if not model.may_hold_events(scope, EventKind.BACKWARD, EventKind.STEP):
            assert not {EventKind.BACKWARD, EventKind.STEP} <= kinds, scope.name


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_detached_backwards_are_the_same_without_the_reach_test(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = path.read_text()
    try:
        narrowed, every = _models(text)
    except cst.ParserSyntaxError:
        pytest.skip("not parsable by libcst")
    backwards = [id(e.node) for e in narrowed.graph_cuts._train_backwards()]
    found = [id(d.event.node) for d in narrowed.graph_cuts.detached_backwards()]
    monkeypatch.setattr(TrainingModel, "may_hold_events", lambda self, scope, *kinds: True)
    assert [id(e.node) for e in every.graph_cuts._train_backwards()] == backwards
    assert [id(d.event.node) for d in every.graph_cuts.detached_backwards()] == found
