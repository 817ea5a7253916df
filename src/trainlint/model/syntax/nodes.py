"""Small, allocation-light helpers over libcst expression nodes.

The hottest helpers test a node's class with ``type(node) is cst.Name`` rather than
``isinstance``: every libcst node class has ``ABCMeta`` for metaclass, so an ``isinstance``
that fails runs ``ABCMeta.__instancecheck__`` (Python code), millions of times a run. No
concrete libcst node class has subclasses, so both tests agree.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import libcst as cst


def dotted(node: cst.CSTNode | None) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, ``None`` for anything else."""
    if type(node) is cst.Name:  # the commonest case: no list, no join
        return node.value
    parts: list[str] = []
    while type(node) is cst.Attribute:
        parts.append(node.attr.value)
        node = node.value
    if type(node) is cst.Name:
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def root_name(node: cst.CSTNode | None) -> str | None:
    """The leftmost name of an attribute/call/subscript chain: ``a`` in ``a.b(c)[0].d``."""
    while True:
        if isinstance(node, cst.Name):
            return node.value
        if isinstance(node, cst.Attribute):
            node = node.value
        elif isinstance(node, cst.Call):
            node = node.func
        elif isinstance(node, cst.Subscript):
            node = node.value
        else:
            return None


def last_attr(node: cst.CSTNode | None) -> str | None:
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, cst.Name):
        return node.value
    return None


def method_call(node: cst.CSTNode | None) -> tuple[cst.BaseExpression, str] | None:
    """``(receiver, method)`` for ``receiver.method(...)``."""
    if type(node) is cst.Call and type(node.func) is cst.Attribute:
        return node.func.value, node.func.attr.value
    return None


def keyword(call: cst.Call, name: str) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg.value
    return None


def positional(call: cst.Call, index: int) -> cst.BaseExpression | None:
    position = 0
    for arg in call.args:
        if arg.keyword is not None or arg.star:
            continue
        if position == index:
            return arg.value
        position += 1
    return None


def argument(call: cst.Call, index: int, name: str) -> cst.BaseExpression | None:
    """An argument given by keyword ``name`` or at position ``index``."""
    found = keyword(call, name)
    return found if found is not None else positional(call, index)


_MISSING = object()


def literal(node: cst.CSTNode | None, default: object = _MISSING) -> object:
    """The Python value of a simple literal; ``default`` (or raise ValueError) otherwise."""
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if isinstance(node, cst.Integer):
        return int(node.value.replace("_", ""), 0)
    if isinstance(node, cst.Float):
        return float(node.value.replace("_", ""))
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = literal(node.expression, None)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
    if default is _MISSING:
        raise ValueError("not a literal")
    return default


def unparenthesize(node: cst.BaseExpression) -> cst.BaseExpression:
    return node.with_changes(lpar=(), rpar=()) if getattr(node, "lpar", ()) else node


# Fields that hold only layout (whitespace, punctuation, comments): never worth descending into.
_TRIVIA = re.compile(
    r"^(whitespace.*|lpar|rpar|lbrace|rbrace|lbracket|rbracket|comma|semicolon|colon|"
    r"first_colon|second_colon|equal|dot|star|operator|header|footer|leading_lines|"
    r"lines_after_decorators|empty_lines|newline|trailing_whitespace|leading_whitespace|"
    r"first_line|last_line|comment|asynchronous|separator|trailing_comma|indent|"
    r"default_indent|default_newline|encoding|has_trailing_newline|conversion|"
    r"posonly_ind|relative)$"
)
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def _child_fields(node_type: type) -> tuple[str, ...]:
    found = _CHILD_FIELDS.get(node_type)
    if found is None:
        found = tuple(f.name for f in dataclasses.fields(node_type) if not _TRIVIA.match(f.name))
        _CHILD_FIELDS[node_type] = found
    return found


#: Per type of a field's value: 1 a node, 2 a list or tuple (of nodes, or not), 0 anything else.
#: ``isinstance(value, cst.CSTNode)`` runs ``ABCMeta.__instancecheck__`` (Python code) for every
#: value that is not a node; a dict lookup by type does not.
_VALUE_KINDS: dict[type, int] = {list: 2, tuple: 2}


def _value_kind(value_type: type) -> int:
    kind = _VALUE_KINDS.get(value_type)
    if kind is None:
        kind = _VALUE_KINDS[value_type] = 1 if issubclass(value_type, cst.CSTNode) else 0
    return kind


def child_nodes(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The syntactic children of ``node`` in source order, skipping layout-only nodes.

    libcst's ``children`` runs its visitor machinery and includes every whitespace node; reading
    the dataclass fields directly is about 4x faster, which matters on the hot path.
    """
    found: list[cst.CSTNode] = []
    kinds = _VALUE_KINDS
    for name in _child_fields(type(node)):
        value = getattr(node, name)
        kind = kinds.get(type(value))
        if kind is None:
            kind = _value_kind(type(value))
        if kind == 1:
            found.append(value)
        elif kind == 2:
            for item in value:
                item_kind = kinds.get(type(item))
                if item_kind == 1 or (item_kind is None and _value_kind(type(item)) == 1):
                    found.append(item)
    return found


def contains(root: cst.CSTNode, node: cst.CSTNode) -> bool:
    """Whether ``node`` is ``root`` or one of its descendants (by identity)."""
    return root is node or any(child is node for child in descendants(root))


def descendants(
    node: cst.CSTNode, stop: tuple[type[cst.CSTNode], ...] = ()
) -> Iterator[cst.CSTNode]:
    """Every syntactic node below ``node`` (depth first, source order); nodes of a ``stop``
    type are yielded but not entered."""
    stack = list(reversed(child_nodes(node)))
    if not stop:
        while stack:
            current = stack.pop()
            yield current
            stack.extend(reversed(child_nodes(current)))
        return
    # Whether a node stops the walk, by its class (``issubclass`` once per class and ``stop``).
    stops = _STOPS.get(stop)
    if stops is None:
        stops = _STOPS[stop] = {}
    while stack:
        current = stack.pop()
        yield current
        kind = type(current)
        stopped = stops.get(kind)
        if stopped is None:
            stopped = stops[kind] = issubclass(kind, stop)
        if not stopped:
            stack.extend(reversed(child_nodes(current)))


_STOPS: dict[tuple[type[cst.CSTNode], ...], dict[type, bool]] = {}
_NAMES = frozenset({cst.Name, cst.Attribute})


def calls_in(node: cst.CSTNode) -> Iterator[cst.Call]:
    for child in descendants(node):
        if type(child) is cst.Call:
            yield child


def names_in(node: cst.CSTNode) -> set[str]:
    found = {dotted(n) for n in descendants(node) if type(n) in _NAMES}
    found.discard(None)
    if type(node) in _NAMES:
        found.add(dotted(node))
    return {n for n in found if n}


def bare_names(node: cst.CSTNode) -> set[str]:
    """Every plain name in ``node``, itself included (``x`` and ``y`` in ``x.to(y)``; unlike
    :func:`names_in`, which gives dotted names)."""
    found = {n.value for n in descendants(node) if type(n) is cst.Name}
    if type(node) is cst.Name:
        found.add(node.value)
    return found


def ends_in_jump(suite: cst.BaseSuite) -> bool:
    """Whether a block always leaves by ``continue``/``break``/``return``/``raise``."""
    body = suite.body if isinstance(suite, cst.IndentedBlock) else [suite]
    if not body:
        return False
    last = body[-1]
    smalls = (
        last.body if isinstance(last, (cst.SimpleStatementLine, cst.SimpleStatementSuite)) else []
    )
    return bool(smalls) and isinstance(smalls[-1], (cst.Continue, cst.Break, cst.Return, cst.Raise))


def target_names(target: cst.BaseExpression) -> set[str]:
    """The dotted names an assignment target binds, through nested tuples and lists
    (``a, (b, self.c)`` -> ``{"a", "b", "self.c"}``)."""
    if isinstance(target, (cst.Tuple, cst.List)):
        found: set[str] = set()
        for element in target.elements:
            found |= target_names(element.value)
        return found
    name = dotted(target)
    return {name} if name else set()


def dotted_prefixes(name: str) -> list[str]:
    """``self.model.fc`` -> ``self.model.fc``, ``self.model`` (``self`` alone is not one)."""
    parts = name.split(".")
    found = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [f for f in found if f != "self"]
