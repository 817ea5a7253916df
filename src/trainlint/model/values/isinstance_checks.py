"""``isinstance`` checks as evidence about a value inside the branch they guard.

``if isinstance(o, torch.optim.Optimizer): o.step()`` steps an optimizer whatever ``o`` is
called; ``if not isinstance(m, nn.Module): ... else: m.forward(x)`` runs a module's forward in
the ``else`` branch; ``assert isinstance(o, Optimizer)`` and ``if not isinstance(o, Optimizer):
raise ...`` hold for the rest of their block. A check against a tuple of types counts when
every type gives the same role. The narrowing holds for every node inside the branch (nested
blocks included); it is computed once per file, only when the file's text has ``isinstance(``.
Inside expressions too: ``o.step() if isinstance(o, Optimizer) else o(params)`` narrows ``o``
in the ``if`` part (and the ``else`` part by the negated check); ``isinstance(o, Optimizer)
and o.step()`` in the right operand of ``and``, ``not isinstance(o, Optimizer) or o.step()``
in the right operand of ``or``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.syntax.names import is_under
from trainlint.model.syntax.nodes import descendants, dotted, ends_in_jump
from trainlint.model.values.roles import Role, Value

if TYPE_CHECKING:
    from trainlint.model import TrainingModel


_NO_BLOCKS_BELOW = (cst.SimpleStatementLine, cst.BaseExpression)
#: A check followed on its line by a conditional expression's ``else`` or a boolean operator:
#: only then are expressions walked for checks (most files with ``isinstance`` have none).
_IN_EXPRESSION = re.compile(r"isinstance\(.*\b(?:and|or|else)\b")


def _narrow(
    node: cst.CSTNode, checks: dict[str, Value], found: dict[int, dict[str, Value]]
) -> None:
    # ``type(...) is``, not ``isinstance``: see :mod:`trainlint.model.syntax.nodes` (every node
    # of the branch is tested).
    for inner in descendants(node):
        kind = type(inner)
        if kind is cst.Name or kind is cst.Attribute:
            found.setdefault(id(inner), {}).update(checks)


def role_of_type(qualified: str) -> Role | None:
    """The role a value has when it is an instance of the library type ``qualified``."""
    last = qualified.rsplit(".", 1)[-1]
    if is_under(qualified, "torch.optim.lr_scheduler") or last in ("_LRScheduler", "LRScheduler"):
        return Role.SCHEDULER
    if is_under(qualified, "torch.optim") and last[:1].isupper():
        return Role.OPTIMIZER
    if last == "GradScaler" and is_under(qualified, "torch"):
        return Role.SCALER
    if last == "DataLoader" and is_under(qualified, "torch"):
        return Role.LOADER
    if is_under(qualified, "torch.utils.data") and last.endswith("Dataset"):
        return Role.DATASET
    if is_under(qualified, "torch.nn") and last[:1].isupper() and last != "Parameter":
        return Role.MODEL
    if qualified in ("transformers.PreTrainedModel", "transformers.modeling_utils.PreTrainedModel"):
        return Role.MODEL
    return None


class Narrowing:
    """Roles given to names by the ``isinstance`` checks around them."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._by_node: dict[int, dict[str, Value]] | None = None

    def role_at(self, expr: cst.BaseExpression, name: str) -> Value | None:
        """The role an enclosing ``isinstance`` check gives ``name`` at ``expr``."""
        if self._by_node is None:
            self._by_node = self._collect()
        if not self._by_node:
            return None
        return self._by_node.get(id(expr), {}).get(name)

    def _collect(self) -> dict[int, dict[str, Value]]:
        found: dict[int, dict[str, Value]] = {}
        if "isinstance(" not in self.model.text:
            return found
        # Blocks and ``if`` statements are never inside an expression or a simple statement:
        # not entering those skips most of the tree.
        for node in descendants(self.model.module, _NO_BLOCKS_BELOW):
            kind = type(node)
            if kind is cst.IndentedBlock:
                self._guards(node.body, found)
            if kind is not cst.If:
                continue
            positive, negative = self._checks(node.test)
            for branch, checks in ((node.body, positive), (node.orelse, negative)):
                if branch is not None and checks:
                    _narrow(branch, checks, found)
        if _IN_EXPRESSION.search(self.model.text):
            self._in_expressions(found)
        return found

    def _in_expressions(self, found: dict[int, dict[str, Value]]) -> None:
        """Checks in conditional expressions and ``and``/``or`` chains narrow the parts
        evaluated only when they hold (or fail)."""
        for node in descendants(self.model.module):
            if isinstance(node, cst.IfExp):
                positive, negative = self._checks(node.test)
                for part, checks in ((node.body, positive), (node.orelse, negative)):
                    if checks:
                        _narrow(part, checks, found)
            elif isinstance(node, cst.BooleanOperation):
                positive, negative = self._checks(node.left)
                checks = positive if isinstance(node.operator, cst.And) else negative
                if checks:
                    _narrow(node.right, checks, found)

    def _guards(self, statements, found: dict[int, dict[str, Value]]) -> None:
        """``assert isinstance(x, T)`` and ``if not isinstance(x, T): raise ...``: the checks
        hold for the statements after them in the same block."""
        for index, statement in enumerate(statements):
            checks: dict[str, Value] = {}
            if isinstance(statement, cst.SimpleStatementLine):
                for small in statement.body:
                    if isinstance(small, cst.Assert):
                        checks.update(self._checks(small.test)[0])
            elif (
                isinstance(statement, cst.If)
                and statement.orelse is None
                and ends_in_jump(statement.body)
            ):
                checks = self._checks(statement.test)[1]
            for later in statements[index + 1 :] if checks else ():
                _narrow(later, checks, found)

    def _checks(self, test: cst.BaseExpression) -> tuple[dict[str, Value], dict[str, Value]]:
        """Names narrowed by ``test`` when it holds, and when it does not."""
        if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
            positive, negative = self._checks(test.expression)
            return negative, positive
        if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
            left, _ = self._checks(test.left)
            right, _ = self._checks(test.right)
            return {**left, **right}, {}
        if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or):
            _, left = self._checks(test.left)
            _, right = self._checks(test.right)
            return {}, {**left, **right}  # ``a or b`` fails only when both fail
        if not (isinstance(test, cst.Call) and dotted(test.func) == "isinstance"):
            return {}, {}
        if len(test.args) != 2:
            return {}, {}
        name = dotted(test.args[0].value)
        role = self._role_of_types(test.args[1].value)
        if name is None or role is None:
            return {}, {}
        return {name: Value(role, "isinstance", test)}, {}

    def _role_of_types(self, types: cst.BaseExpression) -> Role | None:
        if isinstance(types, cst.Tuple):
            roles = {self._role_of_types(e.value) for e in types.elements}
            return roles.pop() if len(roles) == 1 else None
        name = dotted(types)
        if name is None:
            return None
        qualified = self.model.imports.qualify_dotted(name)
        if qualified is not None:
            return role_of_type(qualified)
        info = self.model.classes.get(name)
        if info is not None and self.model.class_kind(info).is_torch_module:
            return Role.MODEL
        return None
