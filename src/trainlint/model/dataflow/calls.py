"""Facts about a helper's expression as seen from one call of it (context-sensitive).

An event inlined from a helper (``meter.update(loss)`` running ``self.sum += val * n``) is
written in the helper's terms. :func:`fact_through` reads its operand at the call: the
helper's parameters are replaced by the arguments of that call (defaults where none is
passed), and the result is evaluated in the caller's scope, call by call up the chain. So
``losses.update(loss.item())`` and ``graph_meter.update(loss)`` get different answers from
the same ``self.sum += val * n``. :func:`operand_arguments` goes the other way: from an
inlined accumulation back to the caller's arguments its operand is made from (what a fix at
the call converts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.facts import UNKNOWN, Holds, join
from trainlint.model.syntax.nodes import bare_names, child_nodes, keyword, positional
from trainlint.model.syntax.scopes import argument_for

if TYPE_CHECKING:
    from trainlint.model.core import TrainingModel
    from trainlint.model.dataflow.facts import Fact
    from trainlint.model.dataflow.graph import Dataflow
    from trainlint.model.loops.event_types import Event
    from trainlint.model.syntax.scopes import Scope


def call_site(flow: Dataflow, call: cst.Call) -> tuple[Scope, int] | None:
    """The scope a call is written in and its visiting order."""
    return flow.call_sites().get(id(call))


def fact_of_parameter(flow: Dataflow, name: str, scope: Scope) -> Fact:
    """What same-file callers pass for parameter ``name``: a graph if any passes one (read
    context-insensitively; :func:`fact_through` reads one call)."""
    passed = passed_for(flow, name, scope)
    facts = [flow.fact(argument, caller, order) for argument, caller, order in passed]
    found = join(*facts) if facts else UNKNOWN
    return found if found.holds is Holds.GRAPH else UNKNOWN


def passed_for(
    flow: Dataflow, param: str, scope: Scope
) -> list[tuple[cst.BaseExpression, Scope, int]]:
    """What each same-file call of ``scope`` passes for ``param``, its scope and order."""
    if flow.callers is None:
        flow.callers = {}
        for site in flow.model.calls:
            callee = flow.model.callee(site.node, site.scope, external=False)
            if callee is not None:
                entry = (site.node, site.scope, site.order)
                flow.callers.setdefault(id(callee), []).append(entry)
    params = list(scope.params)
    if scope.cls is not None and params and params[0] in ("self", "cls"):
        params = params[1:]
    if param not in params:
        return []
    position = params.index(param)
    found = []
    for call, caller, order in flow.callers.get(id(scope), []):
        argument = keyword(call, param)
        if argument is None and not any(a.star for a in call.args):
            argument = positional(call, position)
        if argument is not None:
            found.append((argument, caller, order))
    return found


def parameter_values(
    flow: Dataflow, call: cst.Call, callee: Scope
) -> dict[str, cst.BaseExpression]:
    """Callee parameter -> what ``call`` passes for it (or the parameter's default)."""
    params = list(callee.params)
    if callee.cls is not None and params and params[0] in ("self", "cls"):
        params = params[1:]
    found: dict[str, cst.BaseExpression] = {}
    node = callee.node
    if isinstance(node, cst.FunctionDef):
        for param in (*node.params.params, *node.params.kwonly_params):
            if param.default is not None:
                found[param.name.value] = param.default
    position = 0
    for arg in call.args:
        if arg.star:
            return {}  # ``f(*args)``: positions unknown
        if arg.keyword is not None:
            found[arg.keyword.value] = arg.value
        elif position < len(params):
            found[params[position]] = arg.value
            position += 1
    return found


def fact_through(
    flow: Dataflow,
    expr: cst.BaseExpression | None,
    scope: Scope,
    before: int | None,
    via: tuple[cst.Call, ...],
) -> Fact:
    """``flow.fact(expr, scope, before)``, with ``scope``'s parameters read at the last call of
    ``via`` (and so on up the chain) instead of joined over every caller."""
    if expr is None or not via:
        return flow.fact(expr, scope, before)
    call = via[-1]
    site = call_site(flow, call)
    if site is None:
        return flow.fact(expr, scope, before)
    caller, order = site
    values = parameter_values(flow, call, scope)
    rebound = {n for n in values if flow.binding_before(n, scope, before) is not None}
    targets = [
        (name, values[name.value])
        for name in _free_names(expr)
        if name.value in values and name.value not in rebound
    ]
    if not targets:
        return flow.fact(expr, scope, before)
    replaced = expr.visit(_Substitute({id(n): _parenthesized(a) for n, a in targets}))
    if not isinstance(replaced, cst.BaseExpression):
        return flow.fact(expr, scope, before)
    flow.pin(replaced)
    return fact_through(flow, replaced, caller, order, via[:-1])


def operand_arguments(
    model: TrainingModel, event: Event, call: cst.Call, scope: Scope
) -> list[cst.BaseExpression]:
    """The arguments ``call`` (written in ``scope``) passes for the helper parameters that the
    operand of ``event``, an accumulation inlined from that helper, is made from: ``loss`` in
    ``meter.update(loss)`` for ``self.sum += val * n``. Empty when ``call`` does not run the
    helper the event is written in (a call further up the chain)."""
    callee = model.callee(call, scope)
    if callee is not event.scope or event.operand is None:
        return []
    operand = event.operand
    # every name node of the operand, attribute names included (``val.loss`` also "uses" a
    # parameter ``loss``): at worst that keeps one more argument for the fix to convert
    used = bare_names(operand)
    found = (argument_for(call, callee, p) for p in callee.params if p in used)
    return [a for a in found if a is not None]


class _Substitute(cst.CSTTransformer):
    """Replaces given Name nodes (by identity) in one pass (``deep_replace`` rebuilds the
    tree, so a second call would no longer find the other names)."""

    def __init__(self, replacements: dict[int, cst.BaseExpression]) -> None:
        super().__init__()
        self.replacements = replacements

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name):  # noqa: ANN201
        return self.replacements.get(id(original_node), updated_node)


def _free_names(expr: cst.CSTNode) -> list[cst.Name]:
    """Names read by ``expr`` (not attribute names, keywords, or lambda/comprehension
    variables)."""
    found: list[cst.Name] = []
    stack: list[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.Name):
            found.append(node)
            continue
        if isinstance(node, (cst.Lambda, cst.ListComp, cst.GeneratorExp, cst.DictComp)):
            continue
        if isinstance(node, cst.Attribute):
            stack.append(node.value)
            continue
        if isinstance(node, cst.Arg):
            stack.append(node.value)
            continue
        stack.extend(child_nodes(node))
    return found


def _parenthesized(expr: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(expr, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) or expr.lpar:
        return expr
    return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
