"""Graph retention: lists that keep a graph tensor of every iteration alive.

``outputs.append(model(x))`` in a loop that runs with gradients enabled keeps each
iteration's autograd graph (every activation the forward saved) for as long as the list
lives. :func:`retained_appends` finds such appends (``append``, ``extend`` of a literal list,
``xs += [v]``), in loops of the file and in same-file helpers they call, when:

* the appended value is a graph tensor (:meth:`~.graph.Dataflow.fact`: a loss, a model output,
  arithmetic on these; not ``.item()``, ``.detach()``, ``.cpu().numpy()``, ``.tolist()``);
* gradients are enabled there (no ``no_grad`` block, decorator, or caller that disables them);
* the list outlives the iteration: it is not made afresh inside the innermost loop around the
  append (a helper's local list restarts on every call; an attribute or a list passed in
  does not);
* the loop it outlives repeats over data or steps, not over a few things written out
  (``for net in [a, b]``, ``for name, p in model.named_parameters()``): such a list holds one
  graph per model, not one per batch;
* the list does not live only through one iteration of an enclosing loop whose backward
  frees what it keeps (``terms = []`` per step, each term also summed into the loss);
* the list is never back-propagated: nothing derived from it reaches a backward (the
  REINFORCE ``saved_log_probs`` stacked into a loss, also as ``policy.saved_log_probs`` when
  the appends are written as ``self.saved_log_probs``), a model call, or a ``return`` (the
  caller may build a loss from it).

``kept_on_cpu`` marks a value moved with ``.cpu()`` / ``.to("cpu")`` alone: the tensor is on
the CPU, but its graph (and the activations it saved on the device) is still referenced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.facts import Fact, Holds
from trainlint.model.loops.event_types import Event, EventKind
from trainlint.model.syntax.nodes import dotted, literal, method_call, names_in, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope


@dataclass(frozen=True)
class RetainedAppend:
    """An append that keeps one graph per iteration alive."""

    event: Event
    loop: LoopInfo  # the loop whose iterations the list outlives
    name: str  # the list, as written at the append
    value: cst.BaseExpression  # what is appended
    fact: Fact
    kept_on_cpu: bool = False


def retained_appends(model: TrainingModel) -> list[RetainedAppend]:
    found: list[RetainedAppend] = []
    seen: set[int] = set()
    for loop in model.loops:
        if model.is_framework_managed(loop.scope):
            continue
        for event in model.iteration(loop):
            if id(event.node) in seen:
                continue
            retained = _retained(model, loop, event)
            if retained is not None:
                seen.add(id(event.node))
                found.append(retained)
    return found


def _appended(event: Event) -> tuple[str, list[cst.BaseExpression]] | None:
    """The list and the values an append event adds to it."""
    node = event.node
    if event.kind is EventKind.APPEND and isinstance(node, cst.Call):
        called = method_call(node)
        name = dotted(called[0]) if called is not None else None
        value = positional(node, 0)
        if name is None or value is None or called is None:
            return None
        if called[1] == "extend":
            if not isinstance(value, (cst.List, cst.Tuple)):
                return None  # ``xs.extend(batch_losses)``: what the iterable holds is unknown
            return name, [e.value for e in value.elements]
        return name, [value]
    augmented = event.kind is EventKind.ACCUMULATE and isinstance(node, cst.AugAssign)
    if augmented and isinstance(node.value, cst.List):  # ``xs += [v]``
        name = dotted(node.target)
        return (name, [e.value for e in node.value.elements]) if name else None
    return None


def _retained(model: TrainingModel, loop: LoopInfo, event: Event) -> RetainedAppend | None:
    appended = _appended(event)
    if appended is None:
        return None
    name, values = appended
    flow = model.dataflow
    scope = event.scope
    if model.modes.grad_disabled(loop.scope, event, loop.node):
        return None
    before = flow.order(event.node)
    graphs = [
        (v, f)
        for v in values
        for f in [flow.fact_through(v, scope, before, event.via)]
        if f.holds is Holds.GRAPH
    ]
    if not graphs:
        return None
    owner = _outlived_loop(model, loop, event, name)
    if owner is None or _bounded(model, owner) or _backpropagated_later(model, name, scope):
        return None
    if _terms_of_this_iteration(model, owner, name, [v for v, _ in graphs], scope):
        return None
    value, fact = graphs[0]
    return RetainedAppend(event, owner, name, value, fact, _moved_to_cpu(value))


def _outlived_loop(
    model: TrainingModel, loop: LoopInfo, event: Event, name: str
) -> LoopInfo | None:
    """The innermost loop whose iterations the list lives through, if any."""
    scope = event.scope
    own = [inner for inner in event.loops if inner.scope is scope]
    if not own and event.via:
        root = name.split(".", 1)[0]
        if root != "self" and root not in scope.params:
            return None  # a helper's local list starts afresh on every call
        callers = [inner for inner in event.loops if inner.scope is not scope]
        return callers[-1] if callers else loop
    innermost = own[-1] if own else loop
    if model.dataflow.restarted_before(name, event.node):
        return None  # ``xs = []`` earlier in the same iteration
    return innermost


def _terms_of_this_iteration(
    model: TrainingModel, owner: LoopInfo, name: str, values: list, scope: Scope
) -> bool:
    """The list is made afresh in each iteration of the loop around ``owner`` and what it
    keeps is back-propagated there anyway (``terms = []``, then per term ``loss += t;
    terms.append(t)``, then ``loss.backward()``): it holds graphs that the backward needs and
    frees, one outer iteration's worth, and memory does not grow."""
    if owner.parent is None or owner.parent.scope is not scope:
        return False
    flow = model.dataflow
    if not flow.restarted_before(name, owner.node):
        return False
    return all(isinstance(v, cst.Name) and flow.uses(v.value, scope).backward for v in values)


def _backpropagated_later(model: TrainingModel, name: str, scope: Scope) -> bool:
    """Whether what is derived from the list reaches a backward, a model call or a return,
    also through another object's name for the same attribute (``self.saved_log_probs``
    appended, ``policy.saved_log_probs`` stacked into the loss)."""
    flow = model.dataflow
    uses = flow.uses(name, scope)
    if uses.backward or uses.model_input:
        return True
    derived = flow.derived_names(name, scope)
    returning = model.scopes if "." in name else [scope]  # attributes are read anywhere
    if uses.returned and any(_returns_graph(model, derived, s) for s in returning):
        return True
    if _consumed(model, derived, scope):
        return True
    if "." not in name:
        return False
    attribute = "." + name.rsplit(".", 1)[-1]
    for other in model.scopes:
        for alias in _names_ending(model, other, attribute):
            if alias == name and other is scope:
                continue
            found = flow.uses(alias, other)
            if found.backward or found.model_input:
                return True
    return False


def _returns_graph(model: TrainingModel, derived: set[str], scope: Scope) -> bool:
    """A ``return`` that hands on something made from the list which may still be a graph
    tensor (not ``acc.item()`` or a count): the caller may build a loss from it."""
    flow = model.dataflow
    for returned, order in zip(scope.returns, scope.return_orders, strict=False):
        if isinstance(returned, cst.Call):
            qualified = model.imports.qualify(returned.func) or ""
            if qualified.partition(".")[0] in _READ_ONLY_ROOTS:
                continue  # ``return roc_auc_score(...)``: a metric, not a tensor
        if names_in(returned) & derived and flow.holds(returned, scope, order) in (
            Holds.GRAPH,
            Holds.UNKNOWN,
        ):
            return True
    return False


#: Callees that only read the values they are given (report, plot, save, convert).
_READ_ONLY_ROOTS = {
    "numpy", "math", "statistics", "matplotlib", "logging", "wandb", "json", "sklearn", "scipy",
    "pandas", "seaborn",
}  # fmt: skip
_READ_ONLY_BUILTINS = {"print", "len", "sum", "max", "min", "sorted", "list", "str", "repr"}


def _consumed(model: TrainingModel, derived: set[str], scope: Scope) -> bool:
    """Whether something made from the list is handed to code that may back-propagate it:
    a same-file function that runs a backward, or a call trainlint cannot read
    (``agent.learn(log_probs)``). Reporting, plotting, NumPy and torch functions do not."""
    for site in model.calls_in(scope):
        call = site.node
        if not any(names_in(a.value) & derived for a in call.args):
            continue
        qualified = site.qualified or ""
        root = qualified.partition(".")[0]
        if root in _READ_ONLY_ROOTS or root == "torch":
            continue
        if isinstance(call.func, cst.Name) and call.func.value in _READ_ONLY_BUILTINS:
            continue
        called = method_call(call)
        if called is not None and dotted(called[0]) in derived:
            continue  # a method of the list itself (``xs.append``, ``losses.index``)
        callee = model.callee(call, scope, external=False)
        if callee is None:
            return True
        if any(e.kind is EventKind.BACKWARD for e in model.function_events(callee)):
            return True
    return False


def _names_ending(model: TrainingModel, scope: Scope, suffix: str) -> Iterator[str]:
    """Dotted names read in ``scope`` that end in ``suffix`` (``policy.rewards``)."""
    seen: set[str] = set()
    for site in model.calls_in(scope):
        for name in names_in(site.node):
            if name.endswith(suffix) and name not in seen:
                seen.add(name)
                yield name
    for bindings in scope.bindings.values():
        for binding in bindings:
            if binding.value is None:
                continue
            for name in names_in(binding.value):
                if name.endswith(suffix) and name not in seen:
                    seen.add(name)
                    yield name


def _moved_to_cpu(value: cst.BaseExpression) -> bool:
    """``out.cpu()`` / ``out.to("cpu")`` as the last step: moved, not detached."""
    called = method_call(value)
    if called is None or not isinstance(value, cst.Call):
        return False
    if called[1] == "cpu":
        return True
    return called[1] == "to" and literal(positional(value, 0), None) == "cpu"


_STRUCTURE_METHODS = {
    "parameters", "named_parameters", "children", "named_children", "modules",
    "named_modules", "items", "keys", "values", "buffers",
}  # fmt: skip
_WRAPPERS = {"enumerate", "zip", "tqdm", "reversed", "sorted", "list"}


def _bounded(model: TrainingModel, loop: LoopInfo) -> bool:
    """A loop over a few things written out or over a module's structure (not over data)."""
    source = loop.iter_expr
    if source is None:
        return False
    return _fixed_collection(model, source, loop.scope, 0)


def _fixed_collection(model: TrainingModel, source, scope: Scope, depth: int) -> bool:
    if isinstance(source, (cst.List, cst.Tuple)):
        return bool(source.elements)
    if isinstance(source, cst.Call):
        if dotted(source.func) in _WRAPPERS and source.args:
            return all(_fixed_collection(model, a.value, scope, depth) for a in source.args)
        called = method_call(source)
        return called is not None and called[1] in _STRUCTURE_METHODS
    name = dotted(source)
    if name is None or depth > 2:
        return False
    bindings = model.lookup(name, scope)
    if not bindings or bindings[0].value is None or bindings[0].from_iteration:
        return False
    value = bindings[0].value
    if bindings[0].unpack_index is not None:
        return False
    return isinstance(value, (cst.List, cst.Tuple)) and _fixed_collection(
        model, value, scope, depth + 1
    )
