"""Activations meeting losses: what TL302-TL307 read.

* ``logit_loss_inputs(model)`` -- every torch loss that applies its own log-softmax/sigmoid
  (``CrossEntropyLoss``, ``BCEWithLogitsLoss``, ``sigmoid_focal_loss``) or expects
  log-probabilities (``NLLLoss``), with the kind of its **input** (never the target: a softmax
  on a distillation target is fine);
* ``softmax_applications(model)`` -- every softmax/log-softmax in the file (library calls,
  tensor methods, ``nn.Softmax`` layers applied or stacked in ``nn.Sequential``) with its kind;
* ``drop_activation(model, kind, loss)`` -- the edit that removes an activation feeding a loss,
  when the activation's value is used by nothing but that loss (in the loss's own function);
* ``implicit_softmax_dims`` -- torch softmaxes with no ``dim``, and what they are applied to;
* ``logs_of_probabilities`` / ``fused_log_softmax`` -- ``log`` of a softmax or sigmoid (through
  a clamp or not), and the edit to ``log_softmax``;
* ``degenerate_heads`` -- one-unit linear outputs under a softmax over their last axis, or
  scored by a cross-entropy over one class.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.frameworks.keras_compile import LossKind
from trainlint.model.frameworks.keras_layers import dense_output
from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, keyword, literal, method_call, positional
from trainlint.model.values import kinds as k
from trainlint.model.values.kinds import Activation, TensorKind, log_argument
from trainlint.model.values.layers import stack_layers
from trainlint.model.values.losses import LossCall, LossFamily

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import CallSite, Scope
    from trainlint.rule import Edit

#: Loss families whose input must be raw scores (the loss squashes them itself) ...
LOGIT_FAMILIES = (LossFamily.CROSS_ENTROPY, LossFamily.BCE_WITH_LOGITS)


@dataclass(frozen=True)
class LossInput:
    loss: LossCall
    kind: TensorKind


def logit_loss_inputs(model: TrainingModel) -> Iterator[LossInput]:
    """Torch losses on logits or log-probabilities, with what their input holds."""
    for loss in model.loss_calls:
        if loss.keras or loss.prediction is None:
            continue
        if loss.family not in (*LOGIT_FAMILIES, LossFamily.NLL):
            continue
        kind = model.tensor_kind(loss.prediction, loss.site.scope, loss.site.statement_order)
        yield LossInput(loss, kind)


@dataclass(frozen=True)
class SoftmaxApplication:
    """A softmax (or log-softmax) in the file: the node to report and what it computes."""

    node: cst.Call  # the call (``F.softmax(x)``, ``self.sm(x)``) or the ``nn.Softmax`` built
    kind: TensorKind
    scope: Scope


def softmax_applications(model: TrainingModel) -> Iterator[SoftmaxApplication]:
    """Softmaxes applied in the file (calls and layer applications) and the ``nn.Sequential``
    stacks ending in one (their input is the layer before)."""
    for site in model.calls:
        if _may_apply_softmax(model, site):
            kind = model.tensor_kind(site.node, site.scope, site.statement_order)
            if kind.producer in ("softmax", "log_softmax") and kind.applied is site.node:
                yield SoftmaxApplication(site.node, kind, site.scope)
        elif site.qualified and site.qualified.endswith(".Sequential"):
            layers = stack_layers(site.node)
            if layers:
                kind = model.tensors.layers.stack(layers, site.scope)
                if kind.producer in ("softmax", "log_softmax"):
                    yield SoftmaxApplication(site.node, kind, site.scope)


def _may_apply_softmax(model: TrainingModel, site: CallSite) -> bool:
    """A cheap test before evaluating: the call is a softmax by name, or calls an object."""
    if site.qualified:
        return site.qualified in k.SOFTMAX or site.qualified in k.LOG_SOFTMAX
    if isinstance(site.node.func, cst.Call):
        built = model.imports.qualify(site.node.func.func) or ""
        return built.endswith(("Softmax", "LogSoftmax"))
    method = method_call(site.node)
    if method is not None and method[1] in ("softmax", "log_softmax"):
        return True
    value = model.value_of(site.node.func, site.scope)
    return value is not None and value.kind.endswith(("Softmax", "LogSoftmax"))


def kind_at(model: TrainingModel, node: cst.CSTNode) -> TensorKind | None:
    """What a softmax layer built by ``node`` is applied to, when every application agrees:
    the layer before it in a ``Sequential``, or the operand of each ``self.sm(x)`` call."""
    found: list[TensorKind] = []
    for application in model.softmax_applications:
        if application.kind.node is node and application.kind.source is not None:
            found.append(application.kind.source)
    if not found:
        return None
    return found[0] if len({f.producer for f in found}) == 1 else None


def made_at(model: TrainingModel, kind: TensorKind) -> str:
    """Where a kind was made, for messages: "line 12", "models.py:12", or ""."""
    if kind.origin:
        return kind.origin
    if kind.node is not None:
        line = model.line_of(kind.node)
        return f"line {line}" if line else ""
    return ""


# ---------------------------------------------------------------------- fixes
def drop_activation(model: TrainingModel, kind: TensorKind, loss: LossCall) -> Edit | None:
    """Replace the activation feeding ``loss`` by its operand, when that is all its value is
    used for: it is written in the loss call itself, or bound to a name in the same function
    that nothing else reads."""
    from trainlint.rule import Edit

    applied, operand = kind.applied, kind.operand
    if applied is None or operand is None:
        return None
    scope = loss.site.scope
    prediction = _strip_reshapes(loss.prediction)
    feeds_only_loss = prediction is applied or (
        isinstance(prediction, cst.Name) and _only_feeds(model, prediction, applied, scope)
    )
    if not feeds_only_loss:
        return None
    text = model.text_of(operand)
    atomic = isinstance(operand, (cst.Name, cst.Attribute, cst.Call, cst.Subscript))
    if not atomic and not getattr(operand, "lpar", ()):
        text = f"({text})"
    return Edit(applied, text)


def _strip_reshapes(expr: cst.BaseExpression | None) -> cst.BaseExpression | None:
    while True:
        method = method_call(expr)
        if method is not None and method[1] in k.SHAPE_METHODS:
            expr = method[0]
        else:
            return expr


def _only_feeds(model: TrainingModel, name: cst.Name, applied: cst.Call, scope: Scope) -> bool:
    bindings = scope.bindings.get(name.value, [])
    if len(bindings) != 1 or _strip_reshapes(bindings[0].value) is not applied:
        return False
    if bindings[0].unpack_index is not None or bindings[0].augmented:
        return False
    reads = [
        n for n in descendants(scope.node) if isinstance(n, cst.Name) and n.value == name.value
    ]
    return len(reads) == 2  # the assignment's target and the loss argument


# ---------------------------------------------------------------------- implicit axes
_IMPLICIT_DIM_FUNCTIONS = {
    "torch.nn.functional.softmax",
    "torch.nn.functional.log_softmax",
    "torch.softmax",
    "torch.log_softmax",
}

#: Bound to C++ with numpy-style aliases: ``torch.softmax(x, axis=1)`` is ``dim=1`` (the
#: Python ``F.softmax`` and the ``nn.Softmax`` constructor take no ``axis``).
_NUMPY_AXIS = {"torch.softmax", "torch.log_softmax"}


def implicit_softmax_dims(
    model: TrainingModel,
) -> Iterator[tuple[CallSite, cst.BaseExpression | None, TensorKind | None]]:
    """Torch softmaxes written without ``dim`` (or ``dim=None``): the call or layer
    constructor, the ``None`` given (to replace), and what the softmax is applied to when
    that is known (every application agreeing)."""
    for site in model.calls:
        qualified = site.qualified or ""
        if qualified in _IMPLICIT_DIM_FUNCTIONS:
            position = 1
        elif is_under(qualified, "torch.nn") and qualified.rsplit(".", 1)[-1] in (
            "Softmax",
            "LogSoftmax",
        ):
            position = 0
        else:
            continue
        given = keyword(site.node, "dim")
        if given is None and qualified in _NUMPY_AXIS:
            given = keyword(site.node, "axis")  # torch's own functions take numpy's name too
        if given is None:
            given = positional(site.node, position)
        if given is not None and literal(given, "?") is not None:
            continue
        if any(a.star for a in site.node.args):
            continue  # ``F.softmax(*args)`` / ``nn.Softmax(**kw)``: the axis may be there
        if position == 1:
            source = model.tensor_kind(positional(site.node, 0), site.scope, site.statement_order)
        else:
            source = kind_at(model, site.node)
        yield site, given, source


# ---------------------------------------------------------------------- logs of probabilities
@dataclass(frozen=True)
class LogOfProbabilities:
    """``torch.log(p)`` where ``p`` holds softmax/sigmoid probabilities (``clamped``: through a
    clamp or an added epsilon, which keeps it finite but not accurate)."""

    call: cst.Call
    kind: TensorKind  # what ``p`` holds: the softmax/sigmoid, or the clamp around it
    squashed: TensorKind  # the softmax/sigmoid itself
    clamped: bool


def logs_of_probabilities(model: TrainingModel) -> Iterator[LogOfProbabilities]:
    for site in model.calls:
        argument = log_argument(model.imports, site.node)
        if argument is None:
            continue
        kind = model.tensor_kind(argument, site.scope, site.statement_order)
        if kind.is_squashed:
            yield LogOfProbabilities(site.node, kind, kind, clamped=False)
        elif kind.activation is Activation.BOUNDED and kind.source and kind.source.is_squashed:
            yield LogOfProbabilities(site.node, kind, kind.source, clamped=True)


#: Softmaxes whose namespace also has a ``log_softmax`` with the same signature.
_LOG_SOFTMAX_SIBLINGS = {
    "torch.softmax",
    "torch.nn.functional.softmax",
    "tensorflow.nn.softmax",
    "tensorflow.math.softmax",
    "tensorflow.keras.ops.softmax",
}


def fused_log_softmax(model: TrainingModel, found: LogOfProbabilities) -> Edit | None:
    """``torch.log(F.softmax(x, 1))`` -> ``F.log_softmax(x, 1)`` (also ``x.softmax(-1).log()``
    -> ``x.log_softmax(-1)``), when the softmax call is the log's own argument."""
    from trainlint.rule import Edit

    softmax = found.kind.applied
    if found.clamped or found.kind.producer != "softmax" or softmax is None:
        return None
    if found.kind.node is not softmax or not isinstance(softmax.func, cst.Attribute):
        return None  # a layer object (``self.softmax(x)``) or a bare imported name
    if log_argument(model.imports, found.call) is not softmax:
        return None
    qualified = model.imports.qualify(softmax.func)
    if qualified and qualified not in _LOG_SOFTMAX_SIBLINGS:
        return None
    func = softmax.func.with_changes(attr=cst.Name("log_softmax"))
    return Edit(found.call, softmax.with_changes(func=func, lpar=(), rpar=()))


# ---------------------------------------------------------------------- degenerate heads
@dataclass(frozen=True)
class DegenerateHead:
    """A one-unit linear output normalized over a single value (always 1) or scored by a
    cross-entropy over a single class (always 0)."""

    layer: TensorKind  # the one-unit linear layer (``node`` None when in another module)
    loss: LossCall | None  # the loss that shows it, when that is how it was found
    softmax: TensorKind | None  # the softmax over it, if any
    #: How the code names the loss that shows it (also a ``compile()`` loss, with no call).
    loss_label: str = ""


#: keras losses that normalize over the last axis: with one unit they see a single class
#: (on probabilities keras rescales the output to sum to 1 first, so even a sigmoid is 1).
_CATEGORICAL = (LossFamily.CROSS_ENTROPY, LossFamily.CATEGORICAL_ON_PROBABILITIES)


def degenerate_heads(model: TrainingModel) -> Iterator[DegenerateHead]:
    for application in model.softmax_applications:
        kind = application.kind
        source = kind.source
        if kind.producer == "softmax" and kind.axis == -1 and _one_unit(source):
            yield DegenerateHead(source, None, kind)  # type: ignore[arg-type]
    yield from _dense_softmax_heads(model)
    for loss in model.loss_calls:
        if loss.prediction is None:
            continue
        kind = model.tensor_kind(loss.prediction, loss.site.scope, loss.site.statement_order)
        if kind.producer == "softmax" and kind.axis in (-1, 1, None) and _one_unit(kind.source):
            yield DegenerateHead(kind.source, loss, kind, loss.label)  # type: ignore[arg-type]
        elif loss.family is LossFamily.CROSS_ENTROPY and not loss.keras and _one_unit(kind):
            yield DegenerateHead(kind, loss, None, loss.label)
        elif loss.keras and loss.family in _CATEGORICAL and _one_unit(_linear_map(kind)):
            yield DegenerateHead(_linear_map(kind), loss, None, loss.label)  # type: ignore[arg-type]
    yield from _compiled_heads(model)


def _dense_softmax_heads(model: TrainingModel) -> Iterator[DegenerateHead]:
    """keras ``Dense(1, activation="softmax")`` and TF 1's ``tf.layers.dense(x, 1,
    activation=tf.nn.softmax)``, wherever they are built (the activation is over the units)."""
    for site in model.calls:
        kind = dense_output(model.imports, site.node)
        if kind is not None and kind.producer == "softmax" and _one_unit(kind.source):
            yield DegenerateHead(kind.source, None, kind)  # type: ignore[arg-type]


def _compiled_heads(model: TrainingModel) -> Iterator[DegenerateHead]:
    """A one-unit output compiled with a categorical cross-entropy."""
    for compiled in model.keras.compiles:
        heads = compiled.model.heads if compiled.model is not None else ()
        for loss in compiled.losses:
            if loss.kind not in (LossKind.CATEGORICAL, LossKind.SPARSE):
                continue
            for head in heads:
                if loss.key is not None and loss.key != head.name:
                    continue
                layer = _linear_map(head.kind)
                if _one_unit(layer):
                    yield DegenerateHead(layer, None, None, loss.label)  # type: ignore[arg-type]


def _linear_map(kind: TensorKind) -> TensorKind | None:
    """The linear layer's output under ``kind`` (itself, or what its activation was applied to)."""
    return kind if kind.activation is Activation.LOGITS else kind.source


def _one_unit(kind: TensorKind | None) -> bool:
    return kind is not None and kind.activation is Activation.LOGITS and kind.width == 1
