"""Who owns which gradients: what a clearing event clears and where gradients come from.

Questions the gradient-cycle rules (TL101-TL103) ask of a loop's events:

* which optimizers a loop steps in the PyTorch way (``opt.step()`` / ``scaler.step(opt)``),
  as opposed to TensorFlow's ``apply_gradients`` that takes the gradients as arguments;
* whether a clearing event (``opt.zero_grad()``, ``model.zero_grad()``, ``p.grad = None``)
  clears a given optimizer -- ``model.zero_grad()`` clears the optimizer whose parameters
  came from that model (or one of its submodules);
* whether code the model cannot see (a helper imported from another file) might clear the
  gradients or compute them, so that rules stay silent instead of guessing
  (:mod:`.unseen_code`).

Answers are tri-state where it matters: ``True`` (proven), ``False`` (proven not), ``None``
(unknown). Rules choose how lenient to be with ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.events import CLEARING, Condition, Event, EventKind
from trainlint.model.loops.unseen_code import may_compute_gradients_unseen, regions
from trainlint.model.syntax.nodes import descendants, dotted, keyword, method_call, positional

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import LoopInfo, Scope

_TORCH_STEP_METHODS = ("step",)
_PARAMETER_METHODS = ("parameters", "named_parameters")


# ---------------------------------------------------------------------------- steps
def is_torch_step(event: Event) -> bool:
    """``opt.step()`` or ``scaler.step(opt)``; not TF ``apply_gradients``/``minimize``."""
    if event.kind is not EventKind.STEP:
        return False
    found = method_call(event.node)
    method = event.method or (found[1] if found is not None else None)
    return method in _TORCH_STEP_METHODS


def torch_steps(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if is_torch_step(e)]


def produces_gradients(event: Event) -> bool:
    """A backward, ``autograd.grad`` or a manual ``p.grad = ...`` assignment."""
    return event.kind in (EventKind.BACKWARD, EventKind.GRAD)


# ---------------------------------------------------------------------------- identities
def _alias_root(model: TrainingModel, name: str, scope: Scope) -> str:
    """Follow plain ``a = b`` aliases (``optimizer = self.optimizer``) to the last name."""
    seen = {name}
    current = name
    for _ in range(4):
        bindings = [b for b in model.lookup(current, scope) if not b.augmented]
        if len(bindings) != 1 or bindings[0].unpack_index is not None:
            break
        value = bindings[0].value
        target = dotted(value) if isinstance(value, (cst.Name, cst.Attribute)) else None
        if target is None or target in seen:
            break
        seen.add(target)
        current = target
    return current


def _constructor(model: TrainingModel, name: str, scope: Scope) -> cst.Call | None:
    value = model.value_of(cst.parse_expression(name), scope) if _is_dotted(name) else None
    return value.call if value is not None else None


def _is_dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def same_object(model: TrainingModel, first: str, second: str, scope: Scope) -> bool | None:
    """Whether two names (as the loop spells them) hold the same optimizer or model."""
    if first == second:
        return True
    if is_loop_variable(model, first, scope) or is_loop_variable(model, second, scope):
        return None
    root_a, root_b = _alias_root(model, first, scope), _alias_root(model, second, scope)
    if root_a == root_b:
        return True
    call_a, call_b = _constructor(model, first, scope), _constructor(model, second, scope)
    if call_a is not None and call_b is not None:
        return call_a is call_b
    if root_a.rsplit(".", 1)[-1] == root_b.rsplit(".", 1)[-1]:
        return None  # ``self.optimizer`` and ``optimizer``: probably, not provably
    return False


# ---------------------------------------------------------------------------- parameters
def parameter_sources(model: TrainingModel, optimizer: str, scope: Scope) -> set[str] | None:
    """The models whose ``.parameters()`` built ``optimizer`` (``None`` when unknown)."""
    if not _is_dotted(optimizer):
        return None
    value = model.value_of(cst.parse_expression(optimizer), scope)
    if value is None or value.call is None:
        return None
    params = keyword(value.call, "params")
    if params is None:
        params = positional(value.call, 0)
    found: set[str] = set()
    if params is not None:
        _collect_sources(model, params, scope, found, depth=3)
    return found or None


def _collect_sources(
    model: TrainingModel, expr: cst.BaseExpression, scope: Scope, found: set[str], depth: int
) -> None:
    """Receivers of ``.parameters()`` in a params expression, through lists, param-group
    dicts, ``chain``/``filter``/``list`` calls, comprehensions and local names."""
    if isinstance(expr, cst.Call):
        method = method_call(expr)
        if method is not None and method[1] in _PARAMETER_METHODS:
            receiver = dotted(method[0])
            if receiver is not None:
                found.add(receiver)
            return
        for arg in expr.args:
            _collect_sources(model, arg.value, scope, found, depth)
    elif isinstance(expr, (cst.Name, cst.Attribute)) and depth > 0:
        name = dotted(expr)
        for binding in model.lookup(name, scope) if name else ():
            if binding.value is not None and not binding.from_iteration:
                _collect_sources(model, binding.value, scope, found, depth - 1)
    elif isinstance(expr, (cst.List, cst.Tuple, cst.Set)):
        for element in expr.elements:
            _collect_sources(model, element.value, scope, found, depth)
    elif isinstance(expr, cst.Dict):
        for element in expr.elements:
            if isinstance(element, cst.DictElement):
                _collect_sources(model, element.value, scope, found, depth)
    elif isinstance(expr, cst.BinaryOperation):
        _collect_sources(model, expr.left, scope, found, depth)
        _collect_sources(model, expr.right, scope, found, depth)
    elif isinstance(expr, (cst.ListComp, cst.GeneratorExp, cst.SetComp)):
        _collect_sources(model, expr.for_in.iter, scope, found, depth)


def shared_parameters(model: TrainingModel, zeroed: str, stepped: str, scope: Scope) -> bool | None:
    """Whether ``zeroed.zero_grad()`` (another optimizer) clears the gradients ``stepped``
    steps: parameter groups may overlap (InfoGAN's ``Adam(chain(G.parameters(),
    D.parameters()))`` beside ``Adam(G.parameters())``; a whole-model optimizer beside a
    head-only one). ``True`` when every model ``stepped`` was built from is cleared, ``None``
    when only some are (other clearings may cover the rest), ``False`` when they share none
    or either optimizer's parameters are unknown (two optimizers: two sets of gradients)."""
    cleared = parameter_sources(model, zeroed, scope)
    wanted = parameter_sources(model, stepped, scope)
    if not cleared or not wanted:
        return False
    covered = [any(_feeds(model, z, s, scope) is True for z in cleared) for s in wanted]
    if all(covered):
        return True
    parts = any(z.startswith(s + ".") for z in cleared for s in wanted)
    return None if any(covered) or parts else False


def _feeds(model: TrainingModel, zeroed: str, source: str, scope: Scope) -> bool | None:
    """Whether ``zeroed.zero_grad()`` clears the parameters ``source.parameters()`` gave."""
    if zeroed == source or source.startswith(zeroed + "."):
        return True  # the model itself, or a parent of the submodule the optimizer holds
    if zeroed.startswith(source + "."):
        return False  # a submodule only: the rest keeps its gradients
    return same_object(model, zeroed, source, scope)


def clears(model: TrainingModel, event: Event, optimizer: str, scope: Scope) -> bool | None:
    """Whether clearing ``event`` clears ``optimizer``'s gradients (``None``: cannot tell)."""
    if event.kind is EventKind.ZERO_GRAD:
        if event.subject is None:
            return None
        same = same_object(model, event.subject, optimizer, scope)
        return (
            same if same is not False else shared_parameters(model, event.subject, optimizer, scope)
        )
    if event.kind is EventKind.MODEL_ZERO_GRAD:
        zeroed = event.subject
        if zeroed is None or zeroed == "self":
            return None
        sources = parameter_sources(model, optimizer, scope)
        if sources is None:
            return None
        answers = [_feeds(model, zeroed, source, scope) for source in sources]
        if any(answers):
            return True
        return False if all(a is False for a in answers) else None
    if event.kind is EventKind.GRAD_CLEAR:
        return None  # ``p.grad = None`` over some parameters: which ones is rarely clear
    if event.kind is EventKind.GRAD and isinstance(event.node, cst.Assign):
        return None  # ``p.grad = g`` overwrites whatever had accumulated
    return False


def clearing_events(events: Iterable[Event]) -> list[Event]:
    return [
        e
        for e in events
        if e.kind in CLEARING or (e.kind is EventKind.GRAD and isinstance(e.node, cst.Assign))
    ]


# ---------------------------------------------------------------------------- ordering
def runs_whenever(event: Event, other: Event) -> bool:
    """``event`` runs on every path where ``other`` runs: each of its conditions is also one
    of ``other``'s (the same test written twice, as in ``if args.amp:`` ... ``if args.amp:``,
    counts as one)."""
    return all(
        any(_same_condition(mine, theirs) for theirs in other.conditions)
        for mine in event.conditions
    )


def _same_condition(first: Condition, second: Condition) -> bool:
    if first.negated == second.negated and (
        first.test is second.test or first.test.deep_equals(second.test)
    ):
        return True
    (test_a, negated_a), (test_b, negated_b) = _normalized(first), _normalized(second)
    if negated_a != negated_b:
        return False
    if isinstance(test_a, cst.Comparison) and isinstance(test_b, cst.Comparison):
        return (
            test_a.left.deep_equals(test_b.left)
            and len(test_a.comparisons) == len(test_b.comparisons) == 1
            and type(test_a.comparisons[0].operator) is type(test_b.comparisons[0].operator)
            and test_a.comparisons[0].comparator.deep_equals(test_b.comparisons[0].comparator)
        )
    return test_a.deep_equals(test_b)


#: ``a is not b`` is the negation of ``a is b`` (likewise ``!=``, ``not in``).
_NEGATED_OPERATORS: dict[type, type] = {
    cst.IsNot: cst.Is,
    cst.NotEqual: cst.Equal,
    cst.NotIn: cst.In,
}


def _normalized(condition: Condition) -> tuple[cst.BaseExpression, bool]:
    """The condition with ``not`` and negated comparison operators folded into ``negated``:
    ``if opt is not None:`` and the ``else`` of ``if opt is None:`` come out the same."""
    test, negated = condition.test, condition.negated
    while isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, negated = test.expression, not negated
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        target = test.comparisons[0]
        positive = _NEGATED_OPERATORS.get(type(target.operator))
        if positive is not None:
            test = test.with_changes(comparisons=[target.with_changes(operator=positive())])
            negated = not negated
    return test, negated


def local_anchor(event: Event, *context: Event) -> cst.CSTNode:
    """Where to report ``event``: the first helper call on its path that ``context`` events do
    not share (the line in the analyzed loop that leads to it), else the event itself."""
    shared = {id(call) for other in context for call in other.via}
    for call in event.via:
        if id(call) not in shared:
            return call
    return event.node


def is_loop_variable(model: TrainingModel, name: str, scope: Scope) -> bool:
    """``opt`` in ``for opt in optimizers``: it stands for several objects in turn."""
    return any(b.from_iteration for b in model.lookup(name, scope))


# ---------------------------------------------------------------------------- reachability
def backward_reaches_loop(model: TrainingModel, loop: LoopInfo, depth: int = 3) -> bool:
    """Whether gradients are (or may be) computed where ``loop``'s optimizer steps see them:
    in the outermost loop around it (helpers included), earlier in its function, or in the
    same-file callers of that function. ``True`` when that cannot be ruled out."""
    top = loop
    while top.parent is not None:
        top = top.parent
    events = model.iteration(top)
    if any(produces_gradients(e) for e in events):
        return True
    for region, scope in regions(model, top, events):
        if may_compute_gradients_unseen(model, region, scope):
            return True
    if not _computes_loss(model, top, events):
        return True  # a loop over optimizers or parameter groups: the backward is elsewhere
    return _scope_computes_gradients(model, loop.scope, depth, set())


def _computes_loss(model: TrainingModel, loop: LoopInfo, events: list[Event]) -> bool:
    if any(e.kind is EventKind.FORWARD for e in events):
        return True
    for node in descendants(loop.node):
        if isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
            targets = node.targets if isinstance(node, cst.Assign) else [node]
            for target in targets:
                if "loss" in (dotted(target.target) or "").lower():
                    return True
    return False


def _scope_computes_gradients(
    model: TrainingModel, scope: Scope, depth: int, seen: set[int]
) -> bool:
    if not isinstance(scope.node, cst.FunctionDef) or id(scope.node) in seen:
        return False
    seen.add(id(scope.node))
    if any(produces_gradients(e) for e in model.function_events(scope)):
        return True
    if may_compute_gradients_unseen(model, scope.node, scope):
        return True
    callers = _callers(model, scope)
    if callers is None or (callers and depth == 0):
        return True  # passed around as a value (a hook, a closure), or called too deep to see
    return any(_scope_computes_gradients(model, s, depth - 1, seen) for s in callers)


def _callers(model: TrainingModel, scope: Scope) -> list[Scope] | None:
    """Scopes calling ``scope`` in this file; ``None`` when it is also passed as a value."""
    short = scope.short_name
    found: list[Scope] = []
    for site in model.calls:
        if model.callee(site.node, site.scope, external=False) is scope:
            found.append(site.scope)
            continue
        for arg in site.node.args:
            name = dotted(arg.value)
            if name is not None and name.rsplit(".", 1)[-1] == short:
                return None
    return found
