"""``tf.GradientTape`` blocks: what they record, what ``tape.gradient`` differentiates, and
whether the gradients are applied.

A tape is made by ``with tf.GradientTape(...) as tape:`` (several items in one ``with`` are
several tapes over one block) or by ``tape = tf.GradientTape(...)`` entered later with
``with tape:``; it records what runs in the bodies of those ``with`` statements. A gradient
call ``tape.gradient(target, sources)`` belongs to the tape its receiver is bound to. Its
gradients are *applied* when what it returns (through rebindings: clipping, ``zip``, loops
over them) reaches ``optimizer.apply_gradients``/``minimize``/``apply`` or a variable's
``assign_sub``/``assign_add``/``assign``, in the same function or, when the function
returns them, in a same-file caller. ``train_step`` overrides of a keras model are where
``fit()`` runs such a tape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from trainlint.model.values.roles import Role
from trainlint.model.values.types import ClassKind

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import CallSite, LoopInfo, Scope

_TAPE = "tensorflow.GradientTape"
_NESTED = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
#: Methods that apply gradients: optimizers' and (manual SGD) variables'.
_OPTIMIZER_APPLY = ("apply_gradients", "minimize", "apply")
_VARIABLE_APPLY = ("assign_sub", "assign_add", "assign")


@dataclass(eq=False)
class Tape:
    """One ``tf.GradientTape(...)`` and the ``with`` blocks that record on it."""

    constructor: cst.Call
    scope: Scope
    name: str | None  # the tape's variable (None when the ``with`` binds none)
    blocks: list[cst.With] = field(default_factory=list)
    #: ids of every node inside the blocks' bodies: what the tape records.
    recorded: set[int] = field(default_factory=set)

    @property
    def persistent(self) -> bool | None:
        """``persistent=`` as a literal (False when absent, None when not a literal)."""
        given = keyword(self.constructor, "persistent")
        return False if given is None else literal(given, None)  # type: ignore[return-value]

    def records(self, node: cst.CSTNode) -> bool:
        return id(node) in self.recorded


@dataclass(eq=False)
class TapeGradient:
    """``tape.gradient(target, sources)``."""

    call: cst.Call
    tape: Tape
    site: CallSite

    @property
    def target(self) -> cst.BaseExpression | None:
        return _argument(self.call, 0, "target")

    @property
    def sources(self) -> cst.BaseExpression | None:
        return _argument(self.call, 1, "sources")


def _argument(call: cst.Call, index: int, name: str) -> cst.BaseExpression | None:
    found = keyword(call, name)
    if found is not None:
        return found
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    return positional[index] if index < len(positional) else None


def statements_of(scope: Scope) -> list[cst.CSTNode]:
    """Every node of a function (or module) body, not entering nested defs and lambdas."""
    return list(descendants(scope.node, stop=_NESTED))


class Tapes:
    """The gradient tapes of one file (``TrainingModel.tapes``)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._sites = {id(site.node): site for site in model.calls}

    # ------------------------------------------------------------------ tapes
    @cached_property
    def tapes(self) -> list[Tape]:
        """Every tape made and entered in the file, in file order."""
        if "GradientTape" not in self.model.text:
            return []
        found: dict[int, Tape] = {}
        for scope in self.model.scopes:
            for node in statements_of(scope):
                if isinstance(node, cst.With):
                    for item in node.items:
                        tape = self._tape_of_item(item, scope, found)
                        if tape is not None:
                            tape.blocks.append(node)
                            tape.recorded.update(id(n) for n in statements_of_block(node))
        return list(found.values())

    def _tape_of_item(
        self, item: cst.WithItem, scope: Scope, found: dict[int, Tape]
    ) -> Tape | None:
        value = item.item
        if isinstance(value, cst.Call) and self._is_tape_constructor(value):
            name = dotted(item.asname.name) if item.asname is not None else None
            return found.setdefault(id(value), Tape(value, scope, name))
        name = dotted(value)
        if name is None:
            return None
        order = self.model.order_of(item) or None
        for binding in self.model.lookup(name, scope, order):
            if isinstance(binding.value, cst.Call) and self._is_tape_constructor(binding.value):
                return found.setdefault(
                    id(binding.value), Tape(binding.value, binding.scope or scope, name)
                )
            return None
        return None

    def _is_tape_constructor(self, call: cst.Call) -> bool:
        return (self.model.imports.qualify(call.func) or "") == _TAPE

    def recording(self, node: cst.CSTNode) -> list[Tape]:
        """The tapes that record ``node`` (it sits in one of their ``with`` blocks)."""
        return [tape for tape in self.tapes if tape.records(node)]

    def recorded_calls(self, tape: Tape) -> list[CallSite]:
        """The calls written in the tape's blocks (not in functions defined there)."""
        return [s for s in self.model.calls_in(tape.scope) if tape.records(s.node)]

    # ------------------------------------------------------------------ gradients
    @cached_property
    def gradients(self) -> list[TapeGradient]:
        """Every ``tape.gradient(...)`` whose tape is known."""
        if not self.tapes:
            return []
        by_constructor = {id(t.constructor): t for t in self.tapes}
        found = []
        for site in self.model.calls:
            method = method_call(site.node)
            if method is None or method[1] != "gradient":
                continue
            name = dotted(method[0])
            if name is None:
                continue
            for binding in self.model.lookup(name, site.scope, site.order):
                tape = by_constructor.get(id(binding.value))
                if tape is not None:
                    found.append(TapeGradient(site.node, tape, site))
                break
        return found

    def gradients_of(self, tape: Tape) -> list[TapeGradient]:
        return [g for g in self.gradients if g.tape is tape]

    def applied(self, gradient: TapeGradient) -> bool:
        """Whether what ``gradient`` computes reaches an optimizer or a variable update."""
        scope = gradient.site.scope
        tainted = self._results(gradient.call, scope)
        if self._reaches_apply(gradient.call, tainted, scope):
            return True
        if scope.is_module or not self._returned(gradient.call, tainted, scope):
            return False
        for site in self.model.calls:  # ``return grads``: applied by a same-file caller
            if self.model.callee(site.node, site.scope, external=False) is not scope:
                continue
            if self._reaches_apply(site.node, self._results(site.node, site.scope), site.scope):
                return True
        return False

    def trained_models(self, tape: Tape) -> set[str] | None:
        """The models whose variables the tape's applied gradients are taken for, as written
        (``{"self.generator"}`` for ``gen_tape.gradient(loss, self.generator.
        trainable_variables)``); None when some sources are not of that form (a list of
        variables, a parameter): then any model may be trained."""
        found: set[str] = set()
        for gradient in self.gradients_of(tape):
            if not self.applied(gradient):
                continue
            owners = _variable_owners(gradient.sources)
            if owners is None:
                return None
            found |= owners
        return found

    def kept_across_iterations(self, tape: Tape) -> LoopInfo | None:
        """The innermost same-function loop that makes a ``persistent=True`` tape on every
        iteration and never releases it there (``del tape`` or ``tape = None``): each tape
        keeps its recorded graph alive into the next iteration."""
        if tape.persistent is not True or tape.name is None:
            return None
        loops = [
            loop
            for loop in self.model.loops
            if loop.scope is tape.scope and _inside(tape.constructor, loop.node.body)
        ]
        if not loops:
            return None
        loop = max(loops, key=lambda candidate: candidate.depth)
        for node in descendants(loop.node.body, stop=_NESTED):
            if isinstance(node, cst.Del) and tape.name in names_in(node.target):
                return None
            if isinstance(node, cst.Assign) and isinstance(node.value, cst.Name):
                released = node.value.value == "None"
                if released and any(dotted(t.target) == tape.name for t in node.targets):
                    return None
        return loop

    def is_train_step_override(self, scope: Scope) -> bool:
        """``train_step`` of a keras model subclass: ``fit()`` runs its tape every batch."""
        cls = scope.cls
        return (
            scope.short_name == "train_step"
            and cls is not None
            and self.model.class_kind(cls) is ClassKind.KERAS_MODEL
        )

    # ------------------------------------------------------------------ helpers
    def _results(self, call: cst.Call, scope: Scope) -> set[str]:
        """Names that hold what ``call`` returns, through later rebindings in ``scope``."""
        tainted: set[str] = set()
        bindings = sorted(
            (b for group in scope.bindings.values() for b in group), key=lambda b: b.order
        )
        for binding in bindings:
            if binding.value is not None and _holds(binding.value, call):
                tainted.add(binding.target)
        for _ in range(3):  # a few rounds: ``g = clip(g)``; ``pairs = zip(g, v)``
            before = len(tainted)
            for binding in bindings:
                if binding.value is not None and names_in(binding.value) & tainted:
                    tainted.add(binding.target)
            if len(tainted) == before:
                break
        return tainted

    def _reaches_apply(self, call: cst.Call, tainted: set[str], scope: Scope) -> bool:
        for site in self.model.calls_in(scope):
            method = method_call(site.node)
            if method is None or not self._applies(site.node, method, scope):
                continue
            arguments = [a.value for a in site.node.args]
            if any(_holds(a, call) or names_in(a) & tainted for a in arguments):
                return True
        return False

    def _applies(
        self, call: cst.Call, method: tuple[cst.BaseExpression, str], scope: Scope
    ) -> bool:
        receiver, name = method
        if name in _VARIABLE_APPLY:
            return True
        if name == "apply_gradients":
            return True
        if name in _OPTIMIZER_APPLY:
            text = (dotted(receiver) or "").lower()
            return "optim" in text or self.model.role_of(receiver, scope) is Role.OPTIMIZER
        return False

    def _returned(self, call: cst.Call, tainted: set[str], scope: Scope) -> bool:
        return any(_holds(r, call) or names_in(r) & tainted for r in scope.returns)


def _holds(value: cst.BaseExpression, call: cst.Call) -> bool:
    return value is call or any(child is call for child in descendants(value, stop=_NESTED))


_VARIABLE_ATTRIBUTES = ("trainable_variables", "trainable_weights", "variables", "weights")


def _variable_owners(sources: cst.BaseExpression | None) -> set[str] | None:
    """``a.trainable_variables + b.trainable_weights`` -> ``{"a", "b"}``; None otherwise."""
    if isinstance(sources, cst.BinaryOperation) and isinstance(sources.operator, cst.Add):
        left, right = _variable_owners(sources.left), _variable_owners(sources.right)
        return None if left is None or right is None else left | right
    if isinstance(sources, (cst.List, cst.Tuple)) and sources.elements:
        found: set[str] = set()
        for element in sources.elements:
            owners = _variable_owners(element.value)
            if owners is None:
                return None
            found |= owners
        return found
    if isinstance(sources, cst.Attribute) and sources.attr.value in _VARIABLE_ATTRIBUTES:
        owner = dotted(sources.value)
        return {owner} if owner is not None else None
    return None


def _inside(node: cst.CSTNode, root: cst.CSTNode) -> bool:
    return any(child is node for child in descendants(root, stop=_NESTED))


def statements_of_block(node: cst.With) -> list[cst.CSTNode]:
    """Every node in a ``with`` statement's body, nested defs excluded."""
    return list(descendants(node.body, stop=_NESTED))
