"""Where a node sits: its parent, the contexts open around it, and restarts before it.

Parents are those the model's scope walk recorded (``TrainingModel.node_parents``): every node
of the module, mapped while it is walked anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.loops.event_types import context_of
from trainlint.model.syntax.nodes import dotted, names_in

if TYPE_CHECKING:
    from trainlint.model import TrainingModel


class Placement:
    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._parents = model.node_parents

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(id(node))

    def contexts_at(self, node: cst.CSTNode) -> frozenset[str]:
        """Contexts (``no_grad``, ``autocast``, ...) open around ``node`` in its function,
        including the function's decorators."""
        found: set[str] = set()
        current = self.parent(node)
        while current is not None:
            if type(current) is cst.With:  # no ABC isinstance (see syntax.nodes)
                for item in current.items:
                    kind = context_of(self.model, item.item)
                    if kind:
                        found.add(kind)
            if type(current) is cst.FunctionDef:
                for decorator in current.decorators:
                    kind = context_of(self.model, decorator.decorator)
                    if kind:
                        found.add(kind)
                break
            current = self.parent(current)
        return frozenset(found)

    def grad_disabled(self, *nodes: cst.CSTNode) -> bool:
        """Whether any of ``nodes`` (a statement and the calls it is reached through) runs with
        gradients off."""
        return any("no_grad" in self.contexts_at(node) for node in nodes)

    # ------------------------------------------------------------------ restarts
    def restarted_before(self, name: str, statement: cst.CSTNode) -> bool:
        """Whether ``name`` is bound afresh (not from itself) on every path from the top of
        the innermost loop (or function) around ``statement`` to ``statement``.

        ``loss = a; loss = loss + b`` in a loop body builds one iteration's sum: the value
        carried in from the previous iteration is dropped, so nothing accumulates.
        """
        current: cst.CSTNode = statement
        parent = self.parent(current)
        while parent is not None and not isinstance(
            parent, (cst.For, cst.While, cst.FunctionDef, cst.Module)
        ):
            if isinstance(parent, (cst.IndentedBlock, cst.SimpleStatementSuite, cst.Module)):
                for sibling in parent.body:
                    if sibling is current:
                        break
                    if _binds_afresh(sibling, name):
                        return True
            elif isinstance(parent, cst.SimpleStatementLine):
                for small in parent.body:
                    if small is current:
                        break
                    if _binds_afresh(small, name):
                        return True
            current, parent = parent, self.parent(parent)
        return False


def _binds_afresh(statement: cst.CSTNode, name: str) -> bool:
    """``statement`` always rebinds ``name`` to a value not computed from ``name``: a plain
    assignment, one inside a ``with`` block, or one in every branch of an ``if``."""
    if isinstance(statement, cst.SimpleStatementLine):
        return any(_binds_afresh(small, name) for small in statement.body)
    if isinstance(statement, cst.With):
        return any(_binds_afresh(inner, name) for inner in statement.body.body)
    if isinstance(statement, cst.If):  # every branch binds it
        orelse = statement.orelse
        if orelse is None or not any(_binds_afresh(s, name) for s in statement.body.body):
            return False
        if isinstance(orelse, cst.If):
            return _binds_afresh(orelse, name)
        return any(_binds_afresh(s, name) for s in orelse.body.body)
    if isinstance(statement, cst.Assign):
        targets = [t.target for t in statement.targets]
        value = statement.value
    elif isinstance(statement, cst.AnnAssign) and statement.value is not None:
        targets, value = [statement.target], statement.value
    else:
        return False
    bound = {dotted(t) for t in targets if not isinstance(t, (cst.Tuple, cst.List))}
    for target in targets:
        if isinstance(target, (cst.Tuple, cst.List)):
            bound |= {dotted(e.value) for e in target.elements}
    if name not in bound:
        return False
    return not any(n == name or n.startswith(name + ".") for n in names_in(value))
