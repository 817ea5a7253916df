"""The outline the slicer works on: a module's top-level blocks and what each binds.

A block is a function, a class, or a module-level statement (statements joined by ``;`` are
one block); inside a class, each method that is neither a dunder nor a framework hook is a
block of its own (its ``parent`` is the class's block, which keeps the hook methods and the
class body). Names are read from the ``ast`` (bindings) and from the block's text (every
identifier it mentions, strings and comments included: that only keeps more).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOBAL = re.compile(r"^[ \t]*global[ \t]+([\w \t,]+)", re.M)


@dataclass
class Block:
    """One top-level block: lines ``start``..``end`` (1-based, inclusive)."""

    start: int
    end: int
    text: str = ""
    #: Names this block binds at module level.
    binds: set[str] = field(default_factory=set)
    #: Functions, classes and (non-dunder) methods it defines: their callers are kept with it.
    callables: set[str] = field(default_factory=set)
    #: Methods of the classes it defines (a ``x.name`` mention keeps the class).
    methods: set[str] = field(default_factory=set)
    words: set[str] = field(default_factory=set)
    always: bool = False  # imports: kept whatever happens
    script: bool = False  # a module-level statement other than def/class/import
    #: A method's own block: the index of its class's block (kept whenever the method is).
    parent: int | None = None
    #: A class's block: the line ranges of its methods, which are blocks of their own.
    holes: list[tuple[int, int]] = field(default_factory=list)
    #: The block's statements (a class's block: the class, whose split methods are ``split``).
    nodes: list[ast.stmt] = field(default_factory=list)
    split: frozenset[int] = frozenset()  # ids of the method nodes that are blocks of their own
    #: Structural conditions (:mod:`trainlint.slicing.conditions`) already decided.
    decided: dict[str, bool] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.end - self.start + 1 - sum(e - s + 1 for s, e in self.holes)


def outline(tree: ast.Module, lines: list[str]) -> list[Block]:
    """The blocks of ``tree`` (top-level ones first, then the methods split off classes)."""
    blocks: list[Block] = []
    for statement in tree.body:
        start, end = _span(statement)
        if blocks and start <= blocks[-1].end:  # ``a = 1; b = 2``: one line, one block
            block = blocks[-1]
            block.end = max(block.end, end)
            block.nodes.append(statement)
        else:
            blocks.append(Block(start, end, nodes=[statement]))
    methods: list[Block] = []
    for index, block in enumerate(blocks):
        own = _split_methods(block.nodes[0], index) if len(block.nodes) == 1 else []
        block.holes = [(m.start, m.end) for m in own]
        block.split = frozenset(id(m.nodes[0]) for m in own)
        split = {m.binds.pop() for m in own}
        for statement in block.nodes:
            _describe(statement, block, split)
        for method in own:
            method.binds, method.methods, method.callables = set(), {method.text}, {method.text}
        methods.extend(own)
    blocks.extend(methods)
    for block in blocks:
        holes = iter(block.holes)
        hole = next(holes, None)
        chosen = []
        n = block.start
        while n <= block.end:
            if hole is not None and n == hole[0]:
                n = hole[1] + 1
                hole = next(holes, None)
                continue
            chosen.append(lines[n - 1])
            n += 1
        block.text = "".join(chosen)
        block.words = set(_IDENTIFIER.findall(block.text))
        if block.callables and not block.script:  # ``global x`` in a function binds ``x``
            for names in _GLOBAL.findall(block.text):
                block.binds.update(n.strip() for n in names.split(",") if n.strip())
        if block.parent is not None or block.holes:
            block.binds |= _self_stores(block.text)
    return blocks


def _span(statement: ast.stmt) -> tuple[int, int]:
    decorators = getattr(statement, "decorator_list", ())
    start = min([statement.lineno, *(d.lineno for d in decorators)])
    return start, statement.end_lineno or statement.lineno


#: Methods a framework calls without naming them: they stay with their class.
_HOOK = re.compile(
    r"^(?:forward|call|build|setup|teardown|step|fit|compile|configure_\w*|on_\w*"
    r"|\w*(?:step|epoch|train|eval|valid|test|predict|loss|batch)\w*)$"
)


def _split_methods(statement: ast.stmt, parent: int) -> list[Block]:
    """A class's methods as blocks of their own (its other statements, dunder methods and
    framework hooks stay in the class's block); none when the class would be left empty."""
    if not isinstance(statement, ast.ClassDef):
        return []
    found = []
    for member in statement.body:
        if not isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        name = member.name
        if (name.startswith("__") and name.endswith("__")) or _HOOK.match(name):
            continue
        start, end = _span(member)
        method = Block(start, end, text=name, parent=parent, nodes=[member])
        method.binds = {name}
        found.append(method)
    if len(found) == len(statement.body):
        return []  # nothing would be left of the class
    return found


_ASSIGNED = re.compile(r"^[^\n]*?[^=!<>]=(?!=)", re.M)
_SELF_ATTRIBUTE = re.compile(r"\bself\.(\w+)")


def _self_stores(text: str) -> set[str]:
    """The ``self.x`` a class's code may assign (over-approximated: before a line's ``=``)."""
    found: set[str] = set()
    for match in _ASSIGNED.finditer(text):
        found.update(_SELF_ATTRIBUTE.findall(match.group(0)))
    return found


def _describe(statement: ast.stmt, block: Block, split: set[str]) -> None:
    """What a top-level statement binds and defines (``split``: methods with their own block)."""
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        block.always = True
    elif isinstance(statement, (ast.If, ast.Try)) and any(
        isinstance(s, (ast.Import, ast.ImportFrom)) for s in direct_bodies(statement)
    ):
        block.always = True  # ``try: import apex`` / ``if TYPE_CHECKING: from ... import``
    elif not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not (
        isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
    ):
        block.script = True  # a docstring is not part of a script's sequence
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            block.binds.add(node.name)
            block.callables.add(node.name)
            for decorator in node.decorator_list:  # walked for names like any expression
                stack.append(decorator)
            if isinstance(node, ast.ClassDef):
                for member in direct_bodies(node):
                    for name in _member_names(member):
                        if name in split and node is statement:
                            continue
                        block.methods.add(name)
                        if not (name.startswith("__") and name.endswith("__")):
                            block.callables.add(name)
            continue  # a body's names are its own (``global`` is read from the text)
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            block.binds.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                block.binds.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.alias):
            continue
        stack.extend(ast.iter_child_nodes(node))


def direct_bodies(node: ast.stmt) -> list[ast.stmt]:
    """The statements of ``node``'s bodies, and those of the ``if``/``try`` among them."""
    found: list[ast.stmt] = []
    for name in ("body", "orelse", "finalbody", "handlers"):
        for child in getattr(node, name, ()):
            if isinstance(child, ast.ExceptHandler):
                found.extend(child.body)
                continue
            found.append(child)
            if isinstance(child, (ast.If, ast.Try)):
                found.extend(direct_bodies(child))
    return found


def _member_names(member: ast.stmt) -> list[str]:
    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [member.name]
    if isinstance(member, (ast.Assign, ast.AnnAssign)):
        targets = member.targets if isinstance(member, ast.Assign) else [member.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    return []
