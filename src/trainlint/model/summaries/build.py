"""Summaries of a module's definitions, read off its :class:`~trainlint.model.TrainingModel`.

The summary of a function is what the model already knows about it, in the function's own
terms: its events (``function_events``: same-file helpers inlined, roles classified) with the
subjects rooted at its parameters, and what its returns are (the tensor lattice's activation,
the loss flow's reduction, a role). The model used has no project index: a summary depends on
its own module's text only (see :mod:`.types`).
"""

from __future__ import annotations

from keyword import iskeyword
from typing import TYPE_CHECKING, Any, Protocol

import libcst as cst

from trainlint.model.loops.event_types import function_context
from trainlint.model.summaries.types import (
    ClassSummary,
    Definition,
    Effect,
    FunctionSummary,
    MeterInfo,
    Reexport,
    Returned,
)
from trainlint.model.syntax.nodes import calls_in, descendants, dotted, literal
from trainlint.model.values.kinds import UNKNOWN, Activation, TensorKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.loops.event_types import Event
    from trainlint.model.syntax.scopes import ClassInfo, Scope

#: Layers whose behaviour differs between train and eval mode.
_DROPOUT = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "SpatialDropout")
_BATCHNORM = ("BatchNorm", "SyncBatchNorm", "BatchNormalization")
_JSON_SCALARS = (int, float, str, bool, type(None))


def summarize(
    model: TrainingModel, name: str, methods: LazyMethods | None = None
) -> Definition | None:
    """The summary of the top-level definition ``name`` of ``model``'s module, if any.
    ``methods``: a class's methods are left to it, to be summarized when asked for."""
    info = model.classes.get(name)
    if info is not None and info.node in _top_level(model):
        return summarize_class(model, info, methods)
    function = model.module_scope.functions.get(name)
    if function is not None:
        return summarize_function(model, function)
    target = _reexport(model, name)
    return Reexport(name, target) if target else None


def _top_level(model: TrainingModel) -> list[cst.CSTNode]:
    return list(model.module.body)


def _reexport(model: TrainingModel, name: str) -> str | None:
    """Where an imported ``name`` comes from (``.meters.AverageMeter``), for re-exports."""
    return model.imports.project_target(name) or model.imports.qualify_dotted(name)


def summarize_function(model: TrainingModel, scope: Scope) -> FunctionSummary:
    params = [p for p in scope.params if p not in ("self", "cls")] if scope.cls else scope.params
    loops: dict[int, int] = {}
    effects = []
    for event in model.function_events(scope):
        outer = event.loops[0] if event.loops else None
        loop = loops.setdefault(id(outer.node), len(loops)) if outer is not None else None
        effects.append(
            Effect(
                kind=event.kind.value,
                subject=event.subject,
                operand=_operand(model, event),
                loop=loop,
                condition=_condition(model, event),
                contexts=tuple(sorted(event.contexts)),
                scaled_by=event.scaled_by if not event.via else None,
                managed=event.managed,
                role=_role(model, event),
            )
        )
    return FunctionSummary(
        name=scope.name,
        params=tuple(params),
        defaults=_defaults(scope),
        effects=tuple(effects),
        returns=_returns(model, scope),
        contexts=tuple(sorted(function_context(model, scope))),
        is_method=scope.cls is not None,
    )


_MAX_TEXT = 240


def _text(model: TrainingModel, node: cst.CSTNode | None) -> str | None:
    """Source text of an expression, one line; None when absent or too long to be useful."""
    if node is None:
        return None
    text = " ".join(model.text_of(node).split())
    return text if len(text) <= _MAX_TEXT else None


def _operand(model: TrainingModel, event: Event) -> str | None:
    """The event's operand in terms the caller can rename: a parameter the function rebinds
    before the event (``v = v.data.sum()`` then ``self.sum += v``) is not the caller's argument
    any more, so the rebinding's value stands for it; when that cannot be told (several
    rebindings, unpacking), the operand is unknown rather than the argument."""
    node = event.operand
    text = _text(model, node)
    if node is None or text is None:
        return text
    scope = event.scope
    order = model.order_of(event.node)
    rebound: dict[str, list] = {}
    for name in {n.value for n in (node, *descendants(node)) if type(n) is cst.Name}:
        if name in scope.params and name not in ("self", "cls"):
            earlier = [b for b in scope.bindings.get(name, []) if order is None or b.order < order]
            if earlier:
                rebound[name] = earlier
    if not rebound:
        return text
    if isinstance(node, cst.Name) and len(rebound.get(node.value, ())) == 1:
        (binding,) = rebound[node.value]
        plain = binding.augmented is None and binding.unpack_index is None
        if plain and not binding.from_iteration and binding.value is not None:
            return _text(model, binding.value)
    return None


def _condition(model: TrainingModel, event: Event) -> str | None:
    """The conditions an event runs under, as one test (callee terms)."""
    if not event.conditions:
        return None
    parts = []
    for condition in event.conditions:
        text = _text(model, condition.test)
        if text is None:
            return "__condition__"
        parts.append(f"not ({text})" if condition.negated else f"({text})")
    joined = " and ".join(parts)
    return joined if len(joined) <= _MAX_TEXT else "__condition__"


def _role(model: TrainingModel, event: Event) -> str | None:
    """The role the function's own model gives the event's subject (its binding, its name)."""
    root = event.subject.split(".", 1)[0] if event.subject else None
    if root is None or (root in event.scope.params and root != "self"):
        return None  # a parameter: the caller's argument says what it is
    expr = _expression(event.subject)
    if expr is None:
        return None
    value = model.value_of(expr, event.scope)
    return value.role.value if value is not None else None


def _expression(text: str) -> cst.BaseExpression | None:
    """``text`` as an expression: a dotted name built directly (what parsing it gives, at a
    fraction of the cost: subjects are nearly always dotted names), anything else parsed."""
    parts = text.split(".")
    if all(part.isidentifier() and not iskeyword(part) for part in parts):
        expr: cst.BaseExpression = cst.Name(parts[0])
        for part in parts[1:]:
            expr = cst.Attribute(value=expr, attr=cst.Name(part))
        return expr
    try:
        return cst.parse_expression(text)
    except cst.ParserSyntaxError:
        return None


def _defaults(scope: Scope) -> tuple[tuple[str, object], ...]:
    node = scope.node
    if not isinstance(node, cst.FunctionDef):
        return ()
    found = []
    for param in (*node.params.params, *node.params.kwonly_params):
        if param.default is not None:
            value = literal(param.default, NotImplemented)
            if isinstance(value, _JSON_SCALARS):
                found.append((param.name.value, value))
    return tuple(found)


def _returns(model: TrainingModel, scope: Scope) -> tuple[Returned, ...]:
    if not scope.returns:
        return ()
    from trainlint.model.dataflow.lossflow import expression_flow

    widths = {len(r.elements) if isinstance(r, cst.Tuple) else None for r in scope.returns}
    slots: list[int | None] = [None]
    if len(widths) == 1 and None not in widths:
        slots = list(range(widths.pop()))  # type: ignore[arg-type]
    found = []
    for slot in slots:
        activation = model.tensors.returned(scope, slot) or UNKNOWN
        reductions, losses, tokens, roles = set(), set(), set(), set()
        for returned, order in zip(scope.returns, scope.return_orders, strict=False):
            if slot is not None:
                returned = returned.elements[slot].value  # type: ignore[attr-defined]
            for expr, before in _alternatives(model, returned, scope, order):
                flow = expression_flow(model, expr, scope, before)
                reductions.add(flow.reduction.value)
                losses.update(s.label for s in flow.sources)
                tokens.update(s.token_level for s in flow.sources if s.token_level)
            value = model.value_of(returned, scope)
            roles.add(value.role.value if value is not None else None)
        reduction = reductions.pop() if len(reductions) == 1 else "unknown"
        role = roles.pop() if len(roles) == 1 else None
        record = Returned(
            slot=slot,
            activation=activation.activation.value,
            producer=activation.producer,
            tensor=_tensor_fact(model, activation),
            reduction=reduction,
            loss=", ".join(sorted(losses))[:80] if reduction != "unknown" else "",
            token_level=min(tokens) if tokens else None,
            role=role,
            graph=False if "no_grad" in function_context(model, scope) else None,
        )
        if record != Returned(slot=slot):
            found.append(record)
    return tuple(found)


def _tensor_fact(model: TrainingModel, kind: TensorKind) -> dict[str, Any] | None:
    """The whole kind (axis, layer width, what an activation was applied to) and the line
    that made it, for messages and for rules that need more than the activation."""
    if kind.activation is Activation.UNKNOWN:
        return None
    fact = kind.to_fact()
    if kind.node is not None:
        line = model.line_of(kind.node)
        if line:
            fact["line"] = line
    return fact


def _is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _alternatives(
    model: TrainingModel, returned: cst.BaseExpression, scope: Scope, order: int
) -> list[tuple[cst.BaseExpression, int]]:
    """The values a returned slot may hold, ``None`` left out: ``return logits, loss`` where
    ``loss = F.cross_entropy(...)`` on one branch and ``loss = None`` on the other is a loss
    (the caller that passes no targets gets no loss, not another reduction)."""
    if _is_none(returned):
        return []
    if not isinstance(returned, cst.Name):
        return [(returned, order)]
    bindings = [
        b
        for b in scope.bindings.get(returned.value, [])
        if b.order < order and b.augmented is None and b.value is not None
    ]
    if len(bindings) < 2 or any(b.unpack_index is not None or b.from_iteration for b in bindings):
        return [(returned, order)]
    return [(b.value, b.order) for b in bindings if not _is_none(b.value)]  # type: ignore[misc]


class LazyMethods(Protocol):
    """A :class:`~.types.MethodSource` that learns the class's methods from its model."""

    names: tuple[str, ...]

    def summary(self, name: str) -> FunctionSummary | None: ...


def summarize_method(model: TrainingModel, cls: str, name: str) -> FunctionSummary | None:
    """The summary of method ``name`` of the top-level class ``cls`` of ``model``'s module."""
    info = model.classes.get(cls)
    scope = info.methods.get(name) if info is not None else None
    return summarize_function(model, scope) if scope is not None else None


def summarize_class(
    model: TrainingModel, info: ClassInfo, lazy: LazyMethods | None = None
) -> ClassSummary:
    methods: tuple[FunctionSummary, ...] = ()
    if lazy is None:
        methods = tuple(summarize_function(model, scope) for scope in info.methods.values())
        forward = next((m for m in methods if m.name.endswith((".forward", ".call"))), None)
    else:  # only the forward now (the final activation); the others when asked for
        lazy.names = tuple(info.methods)
        first = next((n for n in lazy.names if n in ("forward", "call")), None)
        forward = lazy.summary(first) if first is not None else None
    final = None
    if forward is not None:  # ``return logits, loss``: the first slot is the output
        final = forward.returned(None) or forward.returned(0)
    layers = _layer_names(model, info)
    return ClassSummary(
        name=info.name,
        bases=tuple(model.imports.project_target(b) or b for b in info.bases),
        is_module=model.is_module_class(info),
        _methods=methods,
        final_activation=final.activation if final is not None else "unknown",
        has_dropout=any(n.startswith(_DROPOUT) or n == "dropout" for n in layers),
        has_batchnorm=any(n.startswith(_BATCHNORM) or n == "batch_norm" for n in layers),
        meter=_meter(model, info),
        numpy_draws=_numpy_draws(model, info),
        source=lazy,
    )


def _numpy_draws(model: TrainingModel, info: ClassInfo) -> tuple[tuple[str, str, str], ...]:
    """What a Dataset's item methods draw from NumPy (read where its loader is built)."""
    if not model.imports.imports("numpy"):
        return ()
    dataset = model.data.dataset_class(info)
    if dataset is None:
        return ()
    from trainlint.model.frameworks.workers import numpy_draws

    return tuple(
        (d.kind.value, model.text_of(d.call.func), " -> ".join(d.via))
        for d in numpy_draws(model, dataset)
    )


def _layer_names(model: TrainingModel, info: ClassInfo) -> set[str]:
    """Last components of the layer constructors and functional calls used in the class."""
    found: set[str] = set()
    for node in calls_in(info.node):
        name = model.imports.qualify(node.func) or dotted(node.func) or ""
        found.add(name.rsplit(".", 1)[-1])
    return found


def _meter(model: TrainingModel, info: ClassInfo) -> MeterInfo | None:
    from trainlint.model.dataflow.objects import meter_summary

    found = meter_summary(model, info)
    if found is None:
        return None
    default = found.weight_default if isinstance(found.weight_default, _JSON_SCALARS) else None
    return MeterInfo(
        total=found.total,
        count=found.count,
        value_param=found.value_param,
        weight_param=found.weight_param,
        weight_default=default,
        averages=tuple(sorted(found.averages)),
    )
