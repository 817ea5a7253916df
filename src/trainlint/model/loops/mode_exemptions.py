"""Model calls that have no train/eval mode to get wrong, for the eval-mode rule (TL401).

* a model written as a plain function (``def net(X): return softmax(X @ W + b)``, d2l's
  ``net, loss = linreg, squared_loss``): a function has no ``.eval()``;
* a generator sampled from noise (``netG(fixed_noise)``) by a file that never switches it to
  eval mode: GAN samples drawn for a picture run in the mode the generator always runs in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.calls import passed_for
from trainlint.model.loops.mode_switches import same_model
from trainlint.model.summaries.queries import lookup
from trainlint.model.summaries.types import FunctionSummary
from trainlint.model.syntax.nodes import dotted, literal, method_call, positional

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
    """A generative model run on noise (``netG(fixed_noise)``, ``G(torch.randn(n, z))``)
    that the file never switches to eval mode: GAN samples drawn for a picture during or
    after training, in the mode the generator always runs in, not an evaluation."""
    call = forward.via[0] if forward.via else forward.node
    if not isinstance(call, cst.Call) or not _is_noise(model, positional(call, 0), region):
        return False
    subject = forward.subject
    for site in model.calls:
        found = method_call(site.node)
        if found is None or found[1] not in ("eval", "train"):
            continue
        if found[1] == "train" and literal(positional(site.node, 0), True) is not False:
            continue
        receiver = dotted(found[0])
        if receiver is not None and subject is not None and same_model(receiver, subject):
            return False
    return True


_NOISE_NAME = re.compile(r"(noise|latent)|^(fixed_)?z(_\w+)?$", re.I)
_NOISE_MAKERS = ("torch.randn", "torch.rand", "torch.normal", "torch.randn_like", "torch.rand_like")


def _is_noise(model: TrainingModel, expr: cst.BaseExpression | None, region: EvalRegion) -> bool:
    """``fixed_noise``, ``z``, ``latent`` or a ``torch.randn(...)`` (``.uniform_()``) draw."""
    name = dotted(expr)
    if name is not None and _NOISE_NAME.search(name.rsplit(".", 1)[-1]):
        return True
    if name is not None:
        bindings = model.lookup(name, region.scope)
        values = [b.value for b in bindings if b.value is not None]
        return bool(values) and all(_draws(model, v) for v in values)
    return _draws(model, expr)


def _draws(model: TrainingModel, expr: cst.BaseExpression | None) -> bool:
    while isinstance(expr, cst.Call):
        found = method_call(expr)
        if (model.imports.qualify(expr.func) or "") in _NOISE_MAKERS:
            return True
        if found is None or found[1] not in ("uniform_", "normal_", "to", "cuda", "view"):
            return False
        if found[1] in ("uniform_", "normal_"):
            return True
        expr = found[0]
    return False
