"""How a backward is scaled over an accumulation window.

* :func:`backward_scaling`: ``accelerator.backward(loss)`` divides by
  ``gradient_accumulation_steps`` itself when the ``Accelerator`` was built with it (or with a
  plugin) and inside ``accelerator.accumulate()``; Fabric and plain ``backward()`` do not.
* :func:`divides_by_window` / :func:`divides_by_accumulation`: whether a loss's divisions
  (see :mod:`.lossflow`) are by the window size;
* :func:`divides_by_running_counter`: a division by a micro-step counter (``loss / (i + 1)``)
  instead, which weighs the micro-batches of a window unequally;
* :func:`presumed_mean`: a reduction read off a convention (``outputs[0]``), not resolved;
* :func:`divided_on_some_path`: a division of the loss on any branch, for findings that need
  more confidence than the definition chain (which follows the latest binding in source
  order, whatever branch it is on) gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.flows import Division, Flow
from trainlint.model.loops.counters import counts_micro_steps
from trainlint.model.syntax.nodes import descendants, dotted, literal, method_call, positional
from trainlint.model.values.roles import Role

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.events import Event
    from trainlint.model.syntax.scopes import Scope


def _options(call: cst.Call) -> dict[str, cst.BaseExpression]:
    return {a.keyword.value: a.value for a in call.args if a.keyword is not None}


def divides_by_window(
    flow: Flow, steps: cst.BaseExpression | None, counters: frozenset[str] = frozenset()
) -> Division | None:
    """A division of ``flow`` that plausibly is by the window's size ``steps``.

    Any non-literal divisor counts (the window size goes by many names) except a running
    micro-step counter among ``counters`` (see :mod:`..loops.counters`); a literal one counts
    when it equals a literal ``steps``, or, with ``steps`` unknown, when it is above 2 (``/ 2``
    is usually an average of two losses, as in a GAN discriminator).
    """
    window = literal(steps, None) if steps is not None else None
    for division in flow.divisions:
        value = literal(division.divisor, None)
        if value is None:
            if counts_micro_steps(division.divisor, counters):
                continue
            return division
        if isinstance(window, int) and not isinstance(window, bool):
            if value == window:
                return division
        elif isinstance(value, (int, float)) and value > 2:
            return division
    return None


def divides_by_running_counter(flow: Flow, counters: frozenset[str]) -> Division | None:
    """A division of ``flow`` by a running micro-step counter (``loss / (i + 1)``)."""
    for division in flow.divisions:
        if counts_micro_steps(division.divisor, counters):
            return division
    return None


def presumed_mean(flow: Flow) -> bool:
    """A mean only by convention: every source is ``outputs[0]`` of an unseen model, which
    is a transformers loss when labels were passed and something else otherwise."""
    return bool(flow.sources) and all(isinstance(s.node, cst.Subscript) for s in flow.sources)


def divided_on_some_path(model: TrainingModel, event: Event) -> bool:
    """Whether the backward operand, or a value it is made from, is divided anywhere in its
    function: ``if k > 1: loss = loss / k`` in one branch and ``loss = engine.backward(loss)``
    in another, ``with amp.scale_loss(loss, opt) as scaled:`` over a divided ``loss``."""
    pending = [n for n in _names_in(event.operand) if n] if event.operand is not None else []
    seen: set[str] = set()
    while pending and len(seen) < 12:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for binding in model.lookup(name, event.scope):
            value = binding.value
            if binding.augmented in ("DivideAssign", "FloorDivideAssign"):
                return True
            if value is None or binding.augmented is not None or binding.from_iteration:
                continue
            if _divides(value):
                return True
            if isinstance(value, (cst.Name, cst.Attribute)):
                pending.append(dotted(value) or "")
            elif isinstance(value, cst.Call):  # ``amp.scale_loss(loss, ...)``, ``loss.mean()``
                found = method_call(value)
                if found is not None:
                    pending.append(dotted(found[0]) or "")
                pending += [dotted(a.value) or "" for a in value.args if a.keyword is None]
    return False


def _divides(node: cst.CSTNode) -> bool:
    for part in (node, *descendants(node)):
        if isinstance(part, cst.BinaryOperation) and isinstance(part.operator, cst.Divide):
            return True
        called = method_call(part) if isinstance(part, cst.Call) else None
        if called is not None and called[1] in ("div", "div_", "true_divide"):
            return True
    return False


def divides_by_accumulation(flow: Flow, configured: cst.BaseExpression | None) -> Division | None:
    """A division by the accumulation count: the expression Accelerate was configured with,
    or a name that says so (``gradient_accumulation_steps``, ``accum_iter``)."""
    wanted = set(_names_in(configured)) if configured is not None else set()
    for division in flow.divisions:
        names = _names_in(division.divisor)
        if wanted & set(names) or any("accum" in n.lower() for n in names):
            return division
    return None


def _names_in(node: cst.CSTNode) -> list[str]:
    found = [
        dotted(n) for n in (node, *descendants(node)) if isinstance(n, (cst.Name, cst.Attribute))
    ]
    return [n for n in found if n]


@dataclass(frozen=True)
class BackwardScaling:
    """Whether a backward call divides by the accumulation steps itself (Accelerate)."""

    divides: bool | None  # True: Accelerate divides; False: plain backward; None: cannot tell
    receiver: str | None = None  # ``accelerator``
    configured: cst.BaseExpression | None = None  # ``gradient_accumulation_steps=...`` value
    constructor: cst.Call | None = None  # ``Accelerator(...)``


def backward_scaling(model: TrainingModel, event: Event) -> BackwardScaling:
    """``accelerator.backward(loss)`` divides by ``gradient_accumulation_steps`` when the
    Accelerator was built with it (or a plugin), and inside ``accelerator.accumulate()``."""
    found = method_call(event.node) if isinstance(event.node, cst.Call) else None
    if found is None or found[1] != "backward":
        return BackwardScaling(False)
    if not event.managed:
        call = event.node
        argument = positional(call, 0) if isinstance(call, cst.Call) else None
        passes_loss = argument is not None and "loss" in (dotted(argument) or "").lower()
        if passes_loss and found[0] is event.operand:  # not ``loss.backward(gradient)``
            # ``self.deepspeed.backward(loss)`` on an object trainlint does not know: some
            # engine's own backward, which may scale the loss itself (DeepSpeed does).
            return BackwardScaling(None, dotted(found[0]))
        return BackwardScaling(False)
    receiver, _ = found
    name = dotted(receiver)
    value = model.value_of(receiver, event.scope)
    if value is not None and value.role is Role.ENGINE:
        return BackwardScaling(None, name)  # DeepSpeed divides by its own accumulation steps
    if value is not None and value.kind and not value.kind.startswith("accelerate"):
        return BackwardScaling(False, name)  # Fabric: backward does not divide
    constructors = _constructors(model, name, event.scope)
    if value is not None and value.call is not None and value.call not in constructors:
        constructors.append(value.call)
    for call in constructors:
        options = _options(call)
        steps = options.get("gradient_accumulation_steps")
        if "gradient_accumulation_plugin" in options or (
            steps is not None and literal(steps, None) != 1
        ):
            return BackwardScaling(True, name, steps, call)
    if "accumulate" in event.contexts:
        return BackwardScaling(True, name)
    if not constructors or any(arg.star for call in constructors for arg in call.args):
        return BackwardScaling(None, name)
    return BackwardScaling(False, name)


def _constructors(model: TrainingModel, name: str | None, scope: Scope) -> list[cst.Call]:
    """Every ``Accelerator(...)`` call bound to ``name`` (one per branch of an ``if``)."""
    found = []
    for binding in model.lookup(name, scope) if name else ():
        value = binding.value
        candidates = [value.body, value.orelse] if isinstance(value, cst.IfExp) else [value]
        for candidate in candidates:
            if isinstance(candidate, cst.Call):
                qualified = model.imports.qualify(candidate.func) or ""
                if qualified.startswith("accelerate"):
                    found.append(candidate)
    return found
