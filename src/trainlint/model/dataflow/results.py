"""Whether the value a call returns is looked at: discarded results and what a method returns.

* :func:`unused_result` -- how a call's result is thrown away: the call is a statement of
  its own (``model.load_state_dict(sd, strict=False)``), or is bound to names nothing reads
  (``msg = model.load_state_dict(...)`` and ``msg`` never used). ``_`` is a deliberate
  discard and does not count; nor does a notebook cell's last expression, which Jupyter
  displays (the reader sees ``_IncompatibleKeys(...)`` under the cell).
* :func:`own_method_returns_nothing` -- whether the class an object is an instance of
  overrides a method with a body that returns no value (a wrapper whose ``load_state_dict``
  loads and returns ``None``: there is nothing to capture).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.dataflow.objects import instance_class
from trainlint.model.syntax.cells import may_end_cell
from trainlint.model.syntax.nodes import descendants, dotted

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import Scope


@dataclass(frozen=True)
class UnusedResult:
    """How a call's result is lost: the statement that holds the call and, when the result
    is bound to names nobody reads, those names."""

    statement: cst.SimpleStatementLine | None  # None: a statement sharing its line (``a; b``)
    unread: tuple[str, ...] = ()  # empty: the call is an expression statement


def unused_result(model: TrainingModel, call: cst.Call, scope: Scope) -> UnusedResult | None:
    """How the result of ``call`` is discarded, or None when something may read it."""
    parent = model.dataflow.parent(call)
    if isinstance(parent, cst.Expr) and parent.value is call:
        line = model.dataflow.parent(parent)
        statement = _alone(line)
        if statement is not None and may_end_cell(model, statement):
            return None
        return UnusedResult(statement)
    if isinstance(parent, cst.Assign) and parent.value is call and len(parent.targets) == 1:
        names = _plain_names(parent.targets[0].target)
        if not names or scope.is_module or any(n == "_" for n in names):
            return None  # module-level names may be imported elsewhere; ``_``: deliberate
        if any(_read_in(scope, name) for name in names):
            return None
        return UnusedResult(_alone(model.dataflow.parent(parent)), tuple(names))
    return None


def own_method_returns_nothing(
    model: TrainingModel, receiver: cst.BaseExpression, scope: Scope, method: str
) -> bool | None:
    """Whether ``receiver``'s class defines ``method`` itself and it returns no value: True
    (it returns nothing), False (it returns something), None (no override is known: the
    library's method runs) -- an override in another module counts as returning nothing, its
    body is not visible here."""
    name = dotted(receiver)
    cls = scope.cls if name == "self" else instance_class(model, receiver, scope)
    if cls is None:
        return None
    own = model.method(cls, method)
    if own is None:
        return None
    if model.stubs.class_summary(cls) is not None or not isinstance(own.node, cst.FunctionDef):
        return True  # another module's override: what it returns is not known
    returns = [
        n
        for n in descendants(own.node.body, stop=(cst.FunctionDef, cst.ClassDef, cst.Lambda))
        if isinstance(n, cst.Return)
    ]
    return not any(r.value is not None for r in returns)


def _alone(line: cst.CSTNode | None) -> cst.SimpleStatementLine | None:
    if isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1:
        return line
    return None


def _plain_names(target: cst.BaseExpression) -> list[str]:
    """``a`` or ``a, b`` (a tuple or list of plain names); [] for anything else."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        names = [e.value for e in target.elements if isinstance(e.value, cst.Name)]
        if len(names) == len(target.elements) and not any(
            isinstance(e, cst.StarredElement) for e in target.elements
        ):
            return [n.value for n in names]
    return []


def _read_in(scope: Scope, name: str) -> bool:
    """Whether ``name`` appears in ``scope``'s function other than as a plain assignment
    target (nested functions included: a closure may read it). ``global``/``nonlocal``
    declarations count as reads: someone else sees the name."""
    written: set[int] = set()
    for node in descendants(scope.node):
        if isinstance(node, cst.Assign):
            for target in node.targets:
                written |= _bound_name_ids(target.target)
        elif isinstance(node, (cst.AnnAssign, cst.For)):
            written |= _bound_name_ids(node.target)
        elif isinstance(node, cst.Attribute):
            written.add(id(node.attr))  # ``self.msg`` is another name
        elif isinstance(node, cst.Arg) and node.keyword is not None:
            written.add(id(node.keyword))  # ``f(msg=...)`` names a parameter
        elif isinstance(node, (cst.Global, cst.Nonlocal)) and any(
            n.name.value == name for n in node.names
        ):
            return True
    return any(
        isinstance(node, cst.Name) and node.value == name and id(node) not in written
        for node in descendants(scope.node)
    )


def _bound_name_ids(target: cst.BaseExpression) -> set[int]:
    """The names a target binds (``a``, ``a, (b, *c)``), not those it reads (``d[k]``)."""
    if isinstance(target, cst.Name):
        return {id(target)}
    if isinstance(target, (cst.Tuple, cst.List)):
        found: set[int] = set()
        for element in target.elements:
            found |= _bound_name_ids(element.value)
        return found
    return set()
