"""Model calls that have no train/eval mode to get wrong, for the eval-mode rule (TL401).

* a model written as a plain function (``def net(X): return softmax(X @ W + b)``, d2l's
  ``net, loss = linreg, squared_loss``): a function has no ``.eval()``;
* a generator sampled from a random draw (``netG(fixed_noise)``, ``fixed_noise`` made by
  ``torch.randn``) by a file that never switches it to eval mode: GAN samples drawn for a
  picture run in the mode the generator always runs in. What is noise is told by where the
  value was made (:mod:`..values.draws`), and whether the file evaluates the generator by its
  mode-switch events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import passed_for
from trainlint.model.loops.event_types import EventKind
from trainlint.model.loops.mode_switches import MODE_SWITCHES, same_model
from trainlint.model.summaries.queries import lookup
from trainlint.model.summaries.types import FunctionSummary
from trainlint.model.syntax.nodes import dotted, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.event_types import Event
    from trainlint.model.loops.regions import EvalRegion
    from trainlint.model.syntax.scopes import Binding, Scope


def plain_function(
    model: TrainingModel, expr: cst.BaseExpression | None, scope: Scope, depth: int = 0
) -> bool:
    """Whether ``expr``, called like a model, is a plain function (``def net(X): return
    softmax(X @ W + b)``, ``net, loss = linreg, squared_loss``, ``net = d2l.linreg`` from a
    project module, or a parameter every same-file caller passes such a function for): it has
    no train/eval mode."""
    name = dotted(expr)
    if not name or depth >= 3 or name == "self":
        return False
    current: Scope | None = scope
    while isinstance(expr, cst.Name) and current is not None:
        if name in current.bindings or name in current.params:
            break
        if name in current.functions:
            return True
        current = current.parent
    bindings = [b for b in model.lookup(name, scope) if not b.augmented and not b.from_iteration]
    if bindings:
        return all(plain_function(model, _bound(b), b.scope or scope, depth + 1) for b in bindings)
    if isinstance(expr, cst.Name) and name in scope.params:
        passed = passed_for(model.dataflow, name, scope)
        return bool(passed) and all(
            plain_function(model, argument, caller, depth + 1) for argument, caller, _ in passed
        )
    return isinstance(lookup(model, name, scope), FunctionSummary)


def _bound(binding: Binding) -> cst.BaseExpression | None:
    """What ``binding`` holds: its value, or the element of a tuple it unpacks."""
    value = binding.value
    if binding.unpack_index is None or value is None:
        return value
    if isinstance(value, (cst.Tuple, cst.List)) and binding.unpack_index < len(value.elements):
        element = value.elements[binding.unpack_index]
        return None if isinstance(element, cst.StarredElement) else element.value
    return None


def samples_noise(model: TrainingModel, region: EvalRegion, forward: Event) -> bool:
    """A generative model run on a random draw (``netG(fixed_noise)`` where ``fixed_noise =
    torch.randn(...)``, ``G(torch.randn(n, z))``, a helper's or another module's draw; see
    :mod:`..values.draws`: by provenance, never by name) that the file never switches to eval
    mode: GAN samples drawn for a picture during or after training, in the mode the generator
    always runs in, not an evaluation."""
    call = forward.node
    if not isinstance(call, cst.Call):
        return False
    drawn = model.random_draw(positional(call, 0), forward.scope, model.order_of(call))
    return drawn and not _ever_evaluated(model, forward.subject)


def _ever_evaluated(model: TrainingModel, subject: str | None) -> bool:
    """Whether any function of the file (or its top level) switches ``subject`` to eval mode:
    ``.eval()``, ``.train(False)``, or ``.train(flag)`` whose flag may be false (the mode
    events of :mod:`.events`, helpers inlined with their arguments)."""
    for scope in model.scopes:
        for event in model.modes.scope_events(scope):
            if event.kind not in MODE_SWITCHES or not same_model(event.subject, subject):
                continue
            if event.kind is EventKind.EVAL_MODE or event.operand is not None:
                return True
    return False
