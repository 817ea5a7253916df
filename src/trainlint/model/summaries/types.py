"""What a function or class of another module does, as small JSON-able records.

A summary is a pure function of its module's text: it never reads another module (a base class
imported from elsewhere is recorded by its qualified name and resolved by the reader). That
keeps every summary cacheable by its module's content hash, and its :func:`digest` stable: a
file's cached result records the digests of the summaries it read, and stays valid while they
do (editing a function body that changes nothing summarized changes no digest).

Names in a summary are in the callee's own terms: ``subject`` and ``operand`` are rooted at a
parameter name or ``self`` (``optimizer``, ``self.sum``, ``val * n``); the reader renames them
to the caller's arguments at each call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

#: Bump when the layout of a summary changes: cached summaries of another layout stop matching.
SUMMARY_FORMAT = 4


@dataclass(frozen=True)
class Effect:
    """One thing a function does, in the order its body does it.

    ``kind`` is an :class:`~trainlint.model.loops.event_types.EventKind` value (``step``,
    ``zero_grad``, ``backward``, ``eval_mode``, ``accumulate``, ...).
    """

    kind: str
    subject: str | None = None  # ``optimizer`` / ``self.sum`` / a local name
    operand: str | None = None  # the value, as the callee writes it (``val * n``, ``loss``)
    #: Which loop of the function it runs in (0, 1, ... in order; None: not in a loop). The
    #: caller cannot see that loop: the events are its nested loop's.
    loop: int | None = None
    condition: str | None = None  # the test it runs under, as written (``(i + 1) % k == 0``)
    contexts: tuple[str, ...] = ()  # ``no_grad``, ``autocast``, ...
    scaled_by: str | None = None  # ``scaler.scale(loss).backward()``: the scaler
    managed: bool = False  # an accelerator/engine call that scales by itself
    role: str | None = None  # the role the callee knows its subject by (a Role value)

    @property
    def in_loop(self) -> bool:
        return self.loop is not None

    @property
    def conditional(self) -> bool:
        return self.condition is not None


@dataclass(frozen=True)
class Returned:
    """What a function returns (``slot`` None: the whole value; else one tuple slot)."""

    slot: int | None = None
    activation: str = "unknown"  # an Activation value: ``logits``, ``probabilities``, ...
    producer: str = ""  # ``nn.Linear``, ``softmax``: for messages
    reduction: str = "unknown"  # a Reduction value when it is a loss: ``mean``, ``sum``, ...
    loss: str = ""  # how the callee computes the loss (``F.cross_entropy``)
    token_level: str | None = None  # ``ignore_index``: the mean's denominator varies
    role: str | None = None  # a Role value when it returns an object: ``model``, ``optimizer``
    graph: bool | None = None  # False when made under no_grad / by a decorated function
    #: The whole tensor kind (``TensorKind.to_fact``: softmax axis, layer width, what an
    #: activation was applied to) and ``line``, the line of its producer; None when unknown.
    tensor: dict[str, Any] | None = None


@dataclass(frozen=True)
class FunctionSummary:
    name: str  # ``train_one_epoch`` / ``AverageMeter.update``
    params: tuple[str, ...] = ()  # without ``self`` / ``cls``
    defaults: tuple[tuple[str, Any], ...] = ()  # literal defaults: (("n", 1),)
    effects: tuple[Effect, ...] = ()
    returns: tuple[Returned, ...] = ()
    contexts: tuple[str, ...] = ()  # decorators: ``no_grad`` for ``@torch.no_grad()``
    is_method: bool = False

    def returned(self, slot: int | None = None) -> Returned | None:
        return next((r for r in self.returns if r.slot == slot), None)

    def default(self, param: str) -> Any:
        return dict(self.defaults).get(param)

    @property
    def disables_grad(self) -> bool:
        return "no_grad" in self.contexts

    def kinds(self) -> set[str]:
        return {e.kind for e in self.effects}


@dataclass(frozen=True)
class MeterInfo:
    """How ``update(val, n)`` of a meter class accumulates (see ``dataflow.objects``)."""

    total: str
    count: str
    value_param: str
    weight_param: str | None
    weight_default: Any
    averages: tuple[str, ...]


class MethodSource(Protocol):
    """Summarizes a class's methods when they are first asked for (:class:`ClassSummary`)."""

    names: tuple[str, ...]  # every method's name (``update``), in the class's order

    def summary(self, name: str) -> FunctionSummary | None: ...


@dataclass(frozen=True)
class ClassSummary:
    """What a class is and does. Its methods are summarized when first asked for (``source``):
    a class is mostly looked up for what it is (a module, its final activation, a meter), and
    only a stub of it needs every method. The summary is the same either way: :attr:`methods`,
    the JSON and the digest hold every method."""

    name: str
    bases: tuple[str, ...] = ()  # qualified where imported (``.base.BaseNet``), else as written
    is_module: bool = False  # an nn.Module / Model subclass (through this module's bases)
    _methods: tuple[FunctionSummary, ...] = ()  # with ``source``: summarized when asked
    final_activation: str = "unknown"  # what ``forward`` returns (an Activation value)
    has_dropout: bool = False
    has_batchnorm: bool = False
    meter: MeterInfo | None = None
    #: A Dataset's NumPy draws in its item methods (``workers.numpy_draws``): (kind
    #: ``global``/``state``, the call as written, the methods from the item method to it).
    numpy_draws: tuple[tuple[str, str, str], ...] = ()
    #: Where the methods come from when they are not summarized yet (None: ``_methods``).
    source: MethodSource | None = field(default=None, compare=False, repr=False)

    @property
    def methods(self) -> tuple[FunctionSummary, ...]:
        if self.source is None:
            return self._methods
        found = tuple(self.source.summary(name) for name in self.source.names)
        return tuple(m for m in found if m is not None)

    def _compared(self) -> tuple[Any, ...]:
        skip = ("_methods", "source")
        return (*(getattr(self, f.name) for f in fields(self) if f.name not in skip), self.methods)

    def __eq__(self, other: object) -> bool:  # every method, summarized yet or not
        if not isinstance(other, ClassSummary):
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash((self.name, self.bases))

    def may_define(self, name: str) -> bool:
        """Whether ``name`` may be one of its methods (false: it is not), without summarizing
        any: a stub's methods (:mod:`.stubs`) are among these names."""
        if self.source is not None:
            return name in self.source.names
        return any(m.name.rsplit(".", 1)[-1] == name for m in self._methods)

    def method(self, name: str) -> FunctionSummary | None:
        if self.source is not None:
            return self.source.summary(name) if name in self.source.names else None
        return next((m for m in self._methods if m.name.rsplit(".", 1)[-1] == name), None)

    @property
    def forward(self) -> FunctionSummary | None:
        return self.method("forward") or self.method("call") or self.method("__call__")


@dataclass(frozen=True)
class Reexport:
    """A module name bound by an import (``from .meters import AverageMeter`` in utils)."""

    name: str
    target: str  # ``.meters.AverageMeter``: leading dots for a relative import's level


Definition = FunctionSummary | ClassSummary | Reexport


@dataclass(frozen=True)
class ModuleSummaries:
    """The summaries of the definitions one module provides, by top-level name."""

    definitions: dict[str, Definition] = field(default_factory=dict)


# ---------------------------------------------------------------------- JSON
def to_json(definition: Definition | None) -> dict[str, Any] | None:
    if definition is None:
        return None
    kind = type(definition).__name__
    if isinstance(definition, ClassSummary):  # ``methods`` as a field (every method)
        methods = definition.methods
        plain = replace(definition, _methods=(), source=None)
        data = {k: v for k, v in asdict(plain).items() if k not in ("_methods", "source")}
        return {"type": kind, **data, "methods": [asdict(m) for m in methods]}
    return {"type": kind, **asdict(definition)}


def from_json(data: Any) -> Definition | None:
    """The summary a :func:`to_json` record holds; None for anything malformed."""
    try:
        if not isinstance(data, dict):
            return None
        data = dict(data)
        kind = data.pop("type", None)
        if kind == "FunctionSummary":
            return _function(data)
        if kind == "ClassSummary":
            meter = data.get("meter")
            return ClassSummary(
                name=data["name"],
                bases=tuple(data["bases"]),
                is_module=bool(data["is_module"]),
                _methods=tuple(_function(m) for m in data["methods"]),
                final_activation=data["final_activation"],
                has_dropout=bool(data["has_dropout"]),
                has_batchnorm=bool(data["has_batchnorm"]),
                meter=MeterInfo(**{**meter, "averages": tuple(meter["averages"])})
                if meter
                else None,
                numpy_draws=tuple(tuple(d) for d in data.get("numpy_draws", ())),
            )
        if kind == "Reexport":
            return Reexport(data["name"], data["target"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None


def _function(data: dict[str, Any]) -> FunctionSummary:
    return FunctionSummary(
        name=data["name"],
        params=tuple(data["params"]),
        defaults=tuple((k, v) for k, v in data["defaults"]),
        effects=tuple(Effect(**{**e, "contexts": tuple(e["contexts"])}) for e in data["effects"]),
        returns=tuple(Returned(**r) for r in data["returns"]),
        contexts=tuple(data["contexts"]),
        is_method=bool(data["is_method"]),
    )


def digest(definition: Definition | None) -> str:
    """A stable digest of a summary (the same summary gives the same digest in every run)."""
    text = json.dumps([SUMMARY_FORMAT, to_json(definition)], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
