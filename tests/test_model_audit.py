"""Model behaviour pinned down by the real-code precision audit: totals rebuilt within one
iteration (dataflow.restarted_before), averages finalized in a loop's ``else`` clause or on
the way to a reset (averages.finalizers), and negated conditions (gradients.runs_whenever)."""

from __future__ import annotations

import textwrap

import libcst as cst

from trainlint.model import EventKind, TrainingModel
from trainlint.model.dataflow.averages import finalizers
from trainlint.model.dataflow.graph import own_nodes
from trainlint.model.loops.gradients import runs_whenever
from trainlint.model.syntax.nodes import dotted


def build(source: str) -> TrainingModel:
    return TrainingModel.from_source("import torch\n" + textwrap.dedent(source))


def additions(model: TrainingModel, name: str) -> list[cst.CSTNode]:
    """Every ``name += ...`` / ``name = name + ...`` statement, in source order."""
    found = []
    for scope in model.scopes:
        for node in own_nodes(scope.node):
            if isinstance(node, cst.AugAssign) and dotted(node.target) == name:
                found.append(node)
            elif isinstance(node, cst.Assign) and dotted(node.targets[0].target) == name:
                value = node.value
                if (
                    isinstance(value, cst.BinaryOperation)
                    and isinstance(value.operator, cst.Add)
                    and dotted(value.left) == name
                ):
                    found.append(node)
    return found


def test_total_rebuilt_in_the_same_iteration_is_restarted() -> None:
    model = build(
        """
        for x, y in loader:
            with torch.autocast("cuda"):
                if simple:
                    loss = criterion(model(x), y)
                else:
                    loss = 0.5 * criterion(model(x), y)
                    loss = loss + 0.5 * aux(x)
            loss += penalty
        """
    )
    inner, outer = additions(model, "loss")
    assert model.dataflow.restarted_before("loss", inner)
    assert model.dataflow.restarted_before("loss", outer)  # the ``with`` always binds it


def test_total_carried_across_iterations_is_not_restarted() -> None:
    model = build(
        """
        running = 0.0
        for step, (x, y) in enumerate(loader):
            loss = criterion(model(x), y)
            if step % 100 == 0:
                running = 0.0
            running += loss
            running = running + loss
        """
    )
    for statement in additions(model, "running"):
        assert not model.dataflow.restarted_before("running", statement)


def test_binding_from_itself_or_after_does_not_restart() -> None:
    model = build(
        """
        def fit(self, loader):
            for x, y in loader:
                self.total = self.total * 0.9
                self.total += self.criterion(self.model(x), y)
                self.other = 0.0
        """
    )
    (statement,) = additions(model, "self.total")
    assert not model.dataflow.restarted_before("self.total", statement)


def test_inner_loop_total_reset_in_the_outer_loop_still_accumulates() -> None:
    model = build(
        """
        for epoch in range(3):
            total = 0.0
            for x, y in loader:
                total += criterion(model(x), y)
        """
    )
    (statement,) = additions(model, "total")
    assert not model.dataflow.restarted_before("total", statement)


def test_average_in_the_loop_else_clause_is_a_finalizer() -> None:
    model = build(
        """
        for epoch in range(3):
            total = 0
            for x, y in loader:
                total += criterion(model(x), y).item()
            else:
                mean = total / len(loader)
        """
    )
    flow = model.dataflow
    batch_loop = next(loop for loop in model.loops if dotted(loop.node.iter) == "loader")
    found = finalizers(flow, batch_loop, "total", is_list=False)
    assert [model.module.code_for_node(f.node).strip() for f in found] == ["total / len(loader)"]


def test_average_assigned_back_to_the_total_is_a_finalizer() -> None:
    model = build(
        """
        total = 0.0
        for x, y in loader:
            total += criterion(model(x), y).item()
        total = (total / len(loader)).real
        total = 0.0
        late = total / len(loader)
        """
    )
    found = finalizers(model.dataflow, model.loops[0], "total", is_list=False)
    assert [model.module.code_for_node(f.node).strip() for f in found] == ["(total / len(loader))"]


def test_negated_comparisons_match_the_else_branch() -> None:
    model = build(
        """
        for x, y in loader:
            if optimizer is not None:
                optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            if optimizer is None:
                manual_update(params)
            else:
                optimizer.step()
            if not use_amp:
                optimizer.zero_grad()
            if use_amp:
                pass
            else:
                optimizer.step()
            if mode != "eval":
                optimizer.zero_grad()
            if mode == "eval":
                pass
            else:
                optimizer.step()
            if optimizer is not None:
                optimizer.zero_grad()
            if optimizer is None:
                optimizer.step()
        """
    )
    events = model.iteration(model.loops[0])
    clears = [e for e in events if e.kind is EventKind.ZERO_GRAD]
    steps = [e for e in events if e.kind is EventKind.STEP]
    assert [runs_whenever(c, s) for c, s in zip(clears, steps, strict=True)] == [
        True,
        True,
        True,
        False,
    ]


def test_attribute_of_a_model_call_holds_its_graph() -> None:
    model = build(
        """
        net = torch.nn.Linear(4, 2)
        for batch in loader:
            probe = net(**batch).loss
            probe_detached = net(**batch).loss.detach()
        """
    )
    flow = model.dataflow
    scope = model.module_scope
    values = {}
    for node in own_nodes(model.module):
        if isinstance(node, cst.Assign) and dotted(node.targets[0].target).startswith("probe"):
            values[dotted(node.targets[0].target)] = node.value
    assert flow.is_graph(values["probe"], scope)
    assert not flow.is_graph(values["probe_detached"], scope)
