from __future__ import annotations

from collections.abc import Iterator

from trainlint import Fix, Rule, Severity
from trainlint.model import TrainingModel
from trainlint.model.loops.carried import CarriedAttribute, CarriedState, RetainedBackward
from trainlint.rule import Violation
from trainlint.slicing import IMPORTS_TORCH


class GraphCarriedAcrossIterations(Rule):
    """The autograd graph of one iteration is carried into the next.

    ## What it does
    Flags a model call in a loop that back-propagates when it is fed a state that the same
    model call (or another) returned in the previous iteration, still attached to the graph:
    `output, hidden = rnn(x, hidden)` or `h = cell(x, h)` with no `hidden.detach()`,
    `repackage_hidden(hidden)`, `Variable(hidden.data)`, fresh `init_hidden()` or in-place
    `detach_()` between them, also when the module keeps the state itself
    (`out, self.hidden = self.lstm(x, self.hidden)` in its `forward`) and the loop never
    resets it (`model.hidden = model.init_hidden()`). Also flags
    `loss.backward(retain_graph=True)` (or `torch.autograd.grad(..., retain_graph=True)`) when
    it is the only gradient computation of each iteration and the loss is computed afresh in
    that iteration.

    Stays silent on truncated backpropagation through time that detaches the state every
    chunk, on a state reset at the top of each iteration, on an inner loop over time steps
    with no backward of its own (one sequence's graph, back-propagated once after the loop),
    on states produced under `torch.no_grad()` (rollouts), on several backwards over one
    graph in an iteration (a GAN's discriminator and generator, several losses, one backward
    per term), and on `create_graph=True` (higher-order gradients need the graph).

    ## Why is this bad?
    The state returned by the model references the graph of every step that produced it.
    Fed back without `.detach()`, the next backward tries to go through the previous
    iteration's graph, which the previous backward already freed: "Trying to backward through
    the graph a second time". Adding `retain_graph=True` to silence that makes every backward
    run through the whole history since the start of training, so memory and time per step
    grow without bound. On its own, `retain_graph=True` on an iteration's only backward keeps
    buffers nobody will use again.

    ## Example
    ```python
    hidden = model.init_hidden(batch_size)
    for inputs, targets in loader:
        optimizer.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = criterion(output, targets)
        loss.backward(retain_graph=True)
        optimizer.step()
    ```

    ## Use instead
    ```python
    hidden = model.init_hidden(batch_size)
    for inputs, targets in loader:
        hidden = hidden.detach()
        optimizer.zero_grad()
        output, hidden = model(inputs, hidden)
        loss = criterion(output, targets)
        loss.backward()
        optimizer.step()
    ```
    """

    code = "TL205"
    name = "graph-carried-across-iterations"
    severity = Severity.WARNING
    frameworks = ("torch",)
    triggers = ("backward", "retain_graph")
    block_triggers = (*triggers, IMPORTS_TORCH, r"loop:backward|retain_graph|\bgrad\b")
    summary = "A hidden state (or a retained graph) carries one iteration's graph into the next."

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        if not model.imports.imports("torch"):
            return
        for state in model.carried_states:
            if model.line_of(state.read):
                yield _carried(model, state)
        for kept in model.carried_attributes:
            if model.line_of(kept.call):
                yield _kept(model, kept)
        for retained in model.needless_retained_graphs:
            if model.line_of(retained.event.node):
                yield _retained(model, retained)


def _carried(model: TrainingModel, state: CarriedState) -> Violation:
    code = model.text_of
    name = state.name
    made = code(state.binding.statement).strip()
    loop_line = model.line_of(state.loop.node)
    retained = [e for e in model.iteration(state.loop) if "retain_graph" in model.text_of(e.node)]
    hidden_by = (
        f"; `{_short(model.text_of(retained[0].node))}` only hides the error: every backward "
        f"then runs through the whole history since the first iteration"
        if retained
        else ""
    )
    message = (
        f"`{_short(code(state.read))}` is fed `{name}`, which the previous iteration of the loop "
        f"at line {loop_line} got from `{_short(made)}` ({model.where(state.binding.statement)}) "
        f"still attached to the autograd graph: the next backward reaches into the previous "
        f"iteration's graph (an error once it is freed, or with `retain_graph=True` a graph that "
        f"grows with every step){hidden_by}"
    )
    return Violation(
        state.read,
        message,
        Fix(
            f"detach the state at the top of each iteration (truncated backpropagation): "
            f"`{name} = {name}.detach()`, or for a tuple of states "
            f"`{name} = tuple(s.detach() for s in {name})`; then drop any `retain_graph=True`"
        ),
    )


def _kept(model: TrainingModel, kept: CarriedAttribute) -> Violation:
    code = model.text_of
    attribute = f"{kept.instance}.{kept.attribute}"
    message = (
        f"`{_short(code(kept.call))}` runs a forward that feeds `self.{kept.attribute}` back "
        f"and stores the new state there (`{_short(code(kept.binding.statement))}`, "
        f"{model.where(kept.binding.statement)}), and nothing in the loop at line "
        f"{model.line_of(kept.loop.node)} resets or detaches `{attribute}`: each backward "
        f"reaches into the previous iterations' graphs"
    )
    return Violation(
        kept.call,
        message,
        Fix(
            f"reset or detach the state at the top of each iteration: `{attribute} = "
            f"{kept.instance}.init_hidden(...)` or `{attribute} = {attribute}.detach()` "
            f"(a tuple: `tuple(s.detach() for s in {attribute})`)"
        ),
    )


def _retained(model: TrainingModel, retained: RetainedBackward) -> Violation:
    call = retained.event.node
    message = (
        f"`{_short(model.text_of(call))}` keeps the graph after the only backward of each "
        f"iteration of the loop at line {model.line_of(retained.loop.node)}, and no other "
        f"backward uses it: its buffers stay allocated for nothing, and if a state of this "
        f"graph is fed to the next iteration, every backward runs through all earlier ones"
    )
    return Violation(call, message, Fix("drop `retain_graph=True` (detach any carried state)"))


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 70 else text[:67] + "..."
