"""``trainable`` changes that a keras ``fit()`` never sees, because no ``compile()`` follows.

``compile()`` freezes which weights ``fit()``/``train_on_batch()`` update: a later
``base.trainable = True`` (or ``for layer in base.layers[:k]: layer.trainable = False``) takes
effect only when the model is compiled again. For each fit of one function (or of the
module: a notebook is one module), the events before it are read in order -- every
``compile()``, every ``X.trainable = v`` -- along the first iteration of the loops around the
fit and along later ones (what the loop body does after the fit comes before it next time);
a method of a class starts after what the class's ``__init__`` did.
A change is *stale* for that fit when:

* it comes after the latest ``compile()`` of the fitted model, and changes that model or a
  layer or base model of it (by name, or found in its structure, see :mod:`.keras_models`);
* its value is not the one the object had when the model was compiled (the latest earlier
  assignment, else the constructor's ``trainable=``, else True): toggling back before the
  fit is harmless;
* nothing that could compile another model follows it before the fit: the GAN idiom sets
  ``discriminator.trainable = False`` so that the *combined* model compiled next freezes it,
  while the discriminator keeps training as it was compiled. A same-file function that
  compiles, or any call of another module given the changed object, counts as compiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.nodes import (
    descendants,
    dotted,
    keyword,
    literal,
    method_call,
    names_in,
)

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Binding, CallSite, LoopInfo, Scope

FIT_METHODS = ("fit", "fit_generator", "train_on_batch")
_NOT_MODELS = ("re", "regex", "torch", "jax", "numba")
_UNKNOWN = "?"


@dataclass(frozen=True, eq=False)
class TrainableChange:
    """``X.trainable = value`` (``owner``: the object whose weights it concerns)."""

    binding: Binding
    owner: str  # ``base`` for ``base.trainable`` and for ``for layer in base.layers: ...``
    key: str  # the assignment target as written (``base.trainable``, ``layer.trainable``)
    value: object  # the literal assigned, ``"?"`` when not a literal

    @property
    def order(self) -> int:
        return self.binding.order

    @property
    def node(self) -> cst.CSTNode:
        return self.binding.statement


@dataclass(frozen=True)
class StaleChange:
    change: TrainableChange
    compiled: CallSite  # the compile() it comes after
    fit: CallSite  # the fit that trains with the weights frozen as compiled


@dataclass(frozen=True)
class _Event:
    order: int
    site: CallSite | None = None  # a compile, a fit, or a call that may compile
    change: TrainableChange | None = None
    may_compile: bool = False


class TrainableChanges:
    """``TrainingModel.trainable_changes``: ``changes`` and the ``stale`` ones."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model

    @cached_property
    def changes(self) -> list[TrainableChange]:
        found = []
        for scope in self.model.scopes:
            for target, bindings in scope.bindings.items():
                if not target.endswith(".trainable") or target.count(".") > 2:
                    continue
                for binding in bindings:
                    if binding.augmented or binding.value is None:
                        continue
                    owner = self._owner(target[: -len(".trainable")], scope, binding.order)
                    found.append(
                        TrainableChange(binding, owner, target, literal(binding.value, _UNKNOWN))
                    )
        return found

    @cached_property
    def stale(self) -> list[StaleChange]:
        """Changes a later fit does not see, each reported once (the first for each fit)."""
        imports = self.model.imports
        if not (imports.imports("tensorflow") or imports.imports("keras")):
            return []
        found: list[StaleChange] = []
        reported: set[int] = set()
        for scope, setup in self._fitting_scopes():
            events = self._events(scope)
            for event in events:
                site = event.site
                if site is None or (method_call(site.node) or (None, ""))[1] not in FIT_METHODS:
                    continue
                for sequence in self._sequences(events, event):
                    stale = self._stale_in(setup + sequence, site)
                    if stale is not None and id(stale.change) not in reported:
                        reported.add(id(stale.change))
                        found.append(stale)
        return sorted(found, key=lambda s: s.change.order)

    # ------------------------------------------------------------------ events
    def _fitting_scopes(self) -> list[tuple[Scope, list[_Event]]]:
        """Scopes with changes, each with what ran before it: a method of a class whose
        ``__init__`` compiles and changes ``self.x.trainable`` starts after ``__init__``."""
        found: dict[int, tuple[Scope, list[_Event]]] = {}
        for change in self.changes:
            scope = change.binding.scope
            if scope is None:
                continue
            found.setdefault(id(scope), (scope, []))
            info = scope.cls
            if info is None or scope is not self.model.method(info, "__init__"):
                continue
            setup = self._events(scope)
            for method in info.methods.values():
                if method is not scope:
                    found.setdefault(id(method), (method, setup))
        return list(found.values())

    def _owner(self, target: str, scope: Scope, order: int) -> str:
        """``layer`` bound by ``for layer in base.layers[...]`` stands for ``base``."""
        if "." in target:
            return target
        for binding in self.model.lookup(target, scope, order)[:1]:
            if binding.from_iteration and binding.value is not None:
                iterated = binding.value
                name = dotted(iterated.value) if isinstance(iterated, cst.Subscript) else None
                name = name or dotted(iterated)
                if name and name.endswith((".layers", ".submodules")):
                    return name.rsplit(".", 1)[0]
        return target

    def _events(self, scope: Scope) -> list[_Event]:
        events = [_Event(c.order, change=c) for c in self.changes if c.binding.scope is scope]
        owners = {c.owner for c in self.changes}
        for site in self.model.calls_in(scope):
            method = method_call(site.node)
            name = method[1] if method is not None else ""
            if name in FIT_METHODS or (name == "compile" and self._compiles_model(site)):
                events.append(_Event(site.order, site))
            elif self._may_compile(site, owners):
                events.append(_Event(site.order, site, may_compile=True))
        return sorted(events, key=lambda e: e.order)

    def _compiles_model(self, site: CallSite) -> bool:
        receiver = method_call(site.node)[0]  # type: ignore[index]
        return dotted(receiver) not in _NOT_MODELS and not self.model.imports.qualify(receiver)

    def _may_compile(self, site: CallSite, owners: set[str]) -> bool:
        """A same-file function that compiles, or another module's function given a changed
        object (``gan = build_gan(generator, discriminator)``)."""
        callee = self.model.callee(site.node, site.scope, external=False)
        if callee is not None:
            return any(
                (method_call(c) or (None, ""))[1] == "compile"
                for c in descendants(callee.node)
                if isinstance(c, cst.Call)
            )
        given = {dotted(a.value) for a in site.node.args}
        return bool(given & owners) and dotted(site.node.func) not in (None, "print")

    def _sequences(self, events: list[_Event], fit: _Event) -> list[list[_Event]]:
        """The events before ``fit`` in its first iteration, and in a later one."""
        first = [e for e in events if e.order < fit.order]
        loop = self._loop_around(fit)
        if loop is None:
            return [first]
        start, end = loop.order, self._end_of(loop)
        before_loop = [e for e in events if e.order < start]
        after_fit = [e for e in events if fit.order < e.order <= end]
        in_loop_before = [e for e in events if start <= e.order < fit.order]
        return [first, before_loop + after_fit + in_loop_before]

    def _loop_around(self, fit: _Event) -> LoopInfo | None:
        innermost = None
        for loop in self.model.loops:
            around = loop.scope is fit.site.scope and loop.order < fit.order <= self._end_of(loop)
            if around and (innermost is None or loop.order > innermost.order):
                innermost = loop
        return innermost

    def _end_of(self, loop: LoopInfo) -> int:
        """The largest order inside the loop (the calls of its last statement included)."""
        orders = [self.model.order_of(n) for n in descendants(loop.node)]
        last = max((o for o in orders if o is not None), default=loop.order)
        calls = [
            site.order
            for site in self.model.calls_in(loop.scope)
            if loop.order < site.statement_order <= last
        ]
        return max([last, *calls])

    # ------------------------------------------------------------------ staleness
    def _stale_in(self, sequence: list[_Event], fit: CallSite) -> StaleChange | None:
        receiver = dotted(method_call(fit.node)[0])  # type: ignore[index]
        if receiver is None:
            return None
        compiled_at = None
        for index, event in enumerate(sequence):
            if (
                event.site is not None
                and not event.may_compile
                and self._is_compile_of(event.site, receiver)
            ):
                compiled_at = index
        if compiled_at is None:
            return None
        compiled = sequence[compiled_at].site
        for index in range(compiled_at + 1, len(sequence)):
            change = sequence[index].change
            if change is None or not self._part_of(change.owner, compiled):  # type: ignore[arg-type]
                continue
            latest = self._latest(sequence[index:], change.key)
            if latest.value != _UNKNOWN and latest.value == self._value_at(
                sequence[:compiled_at], change
            ):
                continue
            later = sequence[sequence.index(next(e for e in sequence if e.change is latest)) :]
            if any(e.may_compile or self._is_other_compile(e, receiver) for e in later):
                continue  # another model is compiled with it frozen: the GAN idiom
            return StaleChange(change, compiled, fit)  # type: ignore[arg-type]
        return None

    def _is_compile_of(self, site: CallSite, receiver: str) -> bool:
        method = method_call(site.node)
        return method is not None and method[1] == "compile" and dotted(method[0]) == receiver

    def _is_other_compile(self, event: _Event, receiver: str) -> bool:
        method = method_call(event.site.node) if event.site is not None else None
        return method is not None and method[1] == "compile" and dotted(method[0]) != receiver

    @staticmethod
    def _latest(events: list[_Event], key: str) -> TrainableChange:
        changes = [e.change for e in events if e.change is not None and e.change.key == key]
        return changes[-1]  # type: ignore[return-value]

    def _value_at(self, events: list[_Event], change: TrainableChange) -> object:
        """What ``trainable`` was for the changed object when the model was compiled."""
        for event in reversed(events):
            if event.change is not None and event.change.key == change.key:
                return event.change.value
        if change.owner != change.key[: -len(".trainable")]:
            return _UNKNOWN  # a loop over layers: each layer's own setting is not known
        scope = change.binding.scope
        for binding in self.model.lookup(change.owner, scope, change.order)[:1]:  # type: ignore[arg-type]
            if isinstance(binding.value, cst.Call):
                given = keyword(binding.value, "trainable")
                return True if given is None else literal(given, _UNKNOWN)
        return True

    def _part_of(self, owner: str, compiled: CallSite) -> bool:
        """Whether ``owner`` is the compiled model or a layer/base model in it."""
        receiver = method_call(compiled.node)[0]  # type: ignore[index]
        if owner.split(".", 1)[0] == dotted(receiver):
            return True
        name = dotted(receiver)
        bindings = self.model.lookup(name, compiled.scope, compiled.statement_order) if name else []
        for binding in bindings[:1]:
            if binding.value is not None and owner in names_in(binding.value):
                return True  # ``combined = Sequential([g, self.d])``, ``Model(z, d(g(z)))``
        keras = self.model.keras
        built = keras.model_of(receiver, compiled.scope, compiled.statement_order)
        if built is None:
            return False
        parts = {id(c) for c in (*built.layers, *built.bases)}
        for binding in self.model.lookup(owner, compiled.scope, compiled.statement_order)[:1]:
            if isinstance(binding.value, cst.Call) and id(binding.value) in parts:
                return True
            inner = keras.model_of(binding.value, compiled.scope, binding.order)
            if inner is not None and id(inner.node) in parts:
                return True
        return False
