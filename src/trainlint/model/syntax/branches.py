"""Which statements of a function run only on some paths (inside an ``if`` branch).

``x = fc(x)`` then ``if not self.training: x = F.softmax(x, dim=1)`` then ``return x``: the
value returned is the softmax on one path and the logits on the other. Analyses that take
"the latest binding before the use" ask here whether that binding sits in a branch the use
is not in, and where that branch starts, so they can join it with what was bound before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from trainlint.model.syntax.nodes import child_nodes

#: Nested definitions have their own map; expressions hold no statements.
_SKIPPED = (cst.FunctionDef, cst.ClassDef, cst.BaseExpression)


@dataclass(frozen=True, eq=False)
class Branch:
    """An ``if`` statement (all its branches), as the range of statement orders it covers."""

    node: cst.If
    start: int  # the order of the ``if`` statement itself
    end: int  # the largest statement order inside it

    def contains(self, order: int) -> bool:
        return self.start < order <= self.end


class BranchMap:
    """For each statement of one function, the ``if`` statements around it."""

    def __init__(self, body: cst.CSTNode, order_of: Callable[[cst.CSTNode], int | None]) -> None:
        self._order_of = order_of
        self._around: dict[int, tuple[Branch, ...]] = {}
        self._walk(body, ())

    def _walk(self, node: cst.CSTNode, around: tuple[Branch, ...]) -> int:
        """Record ``around`` for every statement under ``node``; return the largest order."""
        order = self._order_of(node)
        if order is not None:
            self._around[id(node)] = around
        if isinstance(node, cst.If) and order is not None:
            branch = Branch(node, order, self._largest(node))
            around = (*around, branch)
        largest = order or 0
        for child in child_nodes(node):
            if not isinstance(child, _SKIPPED):
                largest = max(largest, self._walk(child, around))
        return largest

    def _largest(self, node: cst.CSTNode) -> int:
        largest = self._order_of(node) or 0
        for child in child_nodes(node):
            if not isinstance(child, _SKIPPED):
                largest = max(largest, self._largest(child))
        return largest

    def branches_around(self, statement: cst.CSTNode) -> tuple[Branch, ...]:
        """The conditional statements enclosing ``statement``, outermost first."""
        return self._around.get(id(statement), ())

    def in_other_arm(self, statement: cst.CSTNode, use: int) -> bool:
        """Whether ``statement`` and the statement of order ``use`` sit in different arms of
        one ``if`` (``if a: ds = ds.batch(8)`` / ``else: ds.shuffle(8)``): never both run."""
        order = self._order_of(statement)
        if order is None:
            return False
        for branch in self.branches_around(statement):
            if not branch.contains(use):
                continue
            body_end = self._largest(branch.node.body)
            if (order <= body_end) != (use <= body_end):
                return True
        return False

    def outermost_not_containing(self, statement: cst.CSTNode, use: int | None) -> Branch | None:
        """The outermost branch around ``statement`` that does not also hold the statement of
        order ``use`` (None for a use after the whole function); None when there is none."""
        for branch in self.branches_around(statement):
            if use is None or not branch.contains(use):
                return branch
        return None
