"""What the project index needs of a module's top-level statements, and excerpts made from it.

A summary is built from an *excerpt* of its module: the top-level statements the definition
needs (its own block, the module's imports, the module-level names it references, transitively;
another class by its header only), every other line left out but counted (blank lines, or one
string statement spanning a longer gap) so that line numbers stay those of the module. Which
statements those are is read off an :class:`Outline`, made once per module with ``ast`` (a C
parser) and kept instead of the ``ast`` tree (a tree costs about 23 bytes of
memory per character of source; an outline, the names of each statement). The excerpt is then
either text (:func:`excerpt_text`, parsed with libcst by the caller) or, when the module's whole
libcst tree is at hand (the module is analyzed in the same process), a tree made of that tree's
own statements (:func:`excerpt_tree`): no second parse. Both give the same tree: the same
statements (libcst parses a statement the same wherever it stands), at the same lines (a
statement's code starts on the line ``ast`` gives; only what fills the lines between them
differs, a gap's string or blank lines, and what precedes a statement, ``leading_lines``, is no
part of what the model reads).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import libcst as cst

_IMPORT_NODES = (ast.Import, ast.ImportFrom)
#: Line breaks of ``str.splitlines`` that are not line breaks to Python (``ast`` numbers lines
#: by ``\n``, ``\r\n`` and ``\r`` only): a text holding one cuts its excerpts elsewhere than
#: the tree's lines, so its excerpts stay text (the same as they always were).
_OTHER_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@dataclass(frozen=True)
class Statement:
    """One top-level statement, as the excerpt needs it."""

    index: int  # position in the module's body (``ast``)
    lineno: int
    first: int  # first line, decorators included
    last: int  # end_lineno
    defines: tuple[str, ...]  # a def/class: its name; an assignment: the names it binds
    is_class: bool
    holds_imports: bool  # an import, or a ``try``/``if`` holding imports
    bound: frozenset[str]  # the names its imports bind
    #: A class whose body starts on a later line than ``class``: the body's first line (its
    #: first statement's decorators included); None otherwise.
    body_start: int | None


@dataclass
class Outline:
    statements: tuple[Statement, ...]
    defines: dict[str, int]  # name -> index of the first statement that defines it
    imports: tuple[int, ...]  # indexes of the import statements
    kinds: dict[str, str]  # name -> ``class`` / ``function`` / ``import`` (the first wins)
    text: str
    #: The ``ast`` statements, while kept (:meth:`forget`); the names they mention are read
    #: when an excerpt first needs them, and kept.
    body: list[ast.stmt] | None = None
    _refs: dict[tuple[int, bool], tuple[str, ...]] = field(default_factory=dict)
    _line_starts: list[int] | None = None

    def defined_refs(self, statement: Statement, header: bool) -> tuple[str, ...]:
        """:meth:`refs` that the module defines (what an excerpt follows). A statement whose
        lines hold none of the names other statements define, even as part of a word, follows
        nothing but itself: its ``ast`` nodes are not walked (walking every node of every class
        summarized cost half as much as parsing its module with ``ast``)."""
        lines = self._lines(statement)
        index = statement.index
        if lines is not None and not any(
            name in lines for name, first in self.defines.items() if first != index
        ):
            return ()
        return tuple(name for name in self.refs(statement, header) if name in self.defines)

    def _lines(self, statement: Statement) -> str | None:
        """The text of ``statement``'s lines; None when it may not hold its names as written
        (non-ASCII identifiers are normalized by Python; ``ast`` counts other line breaks)."""
        if self._line_starts is None:
            if "\r" in self.text or not usable_for_trees(self.text):
                self._line_starts = []
            else:
                self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        starts = self._line_starts
        if not starts or statement.last > len(starts):
            return None
        end = starts[statement.last] if statement.last < len(starts) else len(self.text)
        found = self.text[starts[statement.first - 1] : end]
        return found if found.isascii() else None

    def refs(self, statement: Statement, header: bool) -> tuple[str, ...]:
        """The names ``statement`` mentions (``header``: a class's bases and keywords only), in
        the order ``ast.walk`` meets them, only the last of each kept (the excerpt's walk is a
        stack: that keeps the order it chooses statements in)."""
        key = (statement.index, header)
        if key not in self._refs:
            node = self._node(statement)
            if header and isinstance(node, ast.ClassDef):
                nodes = [n for b in (*node.bases, *node.keywords) for n in ast.walk(b)]
            else:
                nodes = list(ast.walk(node))
            self._refs[key] = _names(nodes)
        return self._refs[key]

    def forget(self) -> None:
        """Drop the ``ast`` statements (an excerpt that needs one later parses its lines)."""
        self.body = None

    def _node(self, statement: Statement) -> ast.stmt:
        """``statement``'s ``ast`` node: from the kept statements, else parsed from its own
        lines (a top-level statement starts at column 0 and, unless it shares a line with
        another, its lines parse alone to the same node, at other line numbers). Reparsing the
        whole module for each statement asked after :meth:`forget` cost more than the outline
        itself (modules are asked about in turns, more than the outlines kept)."""
        if self.body is None:
            alone = _parse_lines(self.text, statement)
            if alone is not None:
                return alone
            self.body = ast.parse(self.text).body
        return self.body[statement.index]


def outline(tree: ast.Module, text: str) -> Outline:
    statements = []
    defines: dict[str, int] = {}
    imports: list[int] = []
    kinds: dict[str, str] = {}
    for index, node in enumerate(tree.body):
        names: tuple[str, ...] = ()
        holds = isinstance(node, _IMPORT_NODES) or _holds_imports(node)
        bound = frozenset(_bound_names(node)) if holds else frozenset()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = (node.name,)
            kinds.setdefault(node.name, "class" if isinstance(node, ast.ClassDef) else "function")
            holds, bound = False, frozenset()  # a definition is never an import statement
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = tuple(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            holds, bound = False, frozenset()
        elif holds:
            imports.append(index)
            for name in sorted(bound):
                kinds.setdefault(name, "import")
        for name in names:
            defines.setdefault(name, index)
        body_start = None
        if isinstance(node, ast.ClassDef) and node.body[0].lineno > node.lineno:
            body = node.body[0]
            body_start = min([body.lineno, *(d.lineno for d in _decorators(body))])
        statements.append(
            Statement(
                index=index,
                lineno=node.lineno,
                first=min([node.lineno, *(d.lineno for d in _decorators(node))]),
                last=node.end_lineno or node.lineno,
                defines=names,
                is_class=isinstance(node, ast.ClassDef),
                holds_imports=holds,
                bound=bound,
                body_start=body_start,
            )
        )
    return Outline(tuple(statements), defines, tuple(imports), kinds, text, tree.body)


def excerpt(found: Outline, name: str) -> tuple[list[Statement], Statement | None] | None:
    """The statements ``name`` needs, in order, and its own (None for a re-export: then only
    the imports, which say where it comes from); None when the module neither defines nor
    imports it."""
    statements = found.statements
    imports = [statements[i] for i in found.imports]
    if name not in found.defines:
        if any(name in s.bound for s in imports):
            return imports, None
        return None
    target = statements[found.defines[name]]
    wanted: dict[int, Statement] = {}
    stack = [target]
    while stack:
        statement = stack.pop()
        if statement.index in wanted:
            continue
        wanted[statement.index] = statement
        header = statement.is_class and statement is not target
        for ref in found.defined_refs(statement, header):
            stack.append(statements[found.defines[ref]])
    chosen = sorted([*imports, *wanted.values()], key=lambda s: s.lineno)
    return chosen, target


def _header_only(lines: list[str], statement: Statement, target: Statement | None) -> str | None:
    """A class other than ``target`` by its header only (its bases tell what it is; its methods
    are summarized when asked for, as its own definition): the header's text, or None."""
    if target is None or statement is target or statement.body_start is None:
        return None
    header = "".join(lines[statement.first - 1 : statement.body_start - 1]).rstrip()
    return header if header.endswith(":") else None


def excerpt_text(text: str, chosen: list[Statement], target: Statement | None) -> str:
    """The statements' lines, every other line left out but counted (line numbers stay the
    module's): a gap of several lines between two statements is one string statement that
    spans them. Blank lines cost libcst a node each (an ``EmptyLine`` with its whitespace and
    newline): an excerpt of a function 8,600 lines down a module parsed 8,600 of them, so a
    file reading 205 definitions of that module spent 10 s there; a string is one token."""
    lines = text.splitlines(keepends=True)
    pieces = []
    written = 0
    for statement in chosen:
        first, last = statement.first, statement.last
        if first <= written:
            continue
        pieces.append(_gap(first - 1 - written))
        header = _header_only(lines, statement, target)
        if header is not None:
            pieces.append(header + "\n    pass\n")
            written = first + header.count("\n") + 1
            continue
        pieces.append("".join(lines[first - 1 : last]).rstrip() + "\n")
        written = last
    return "".join(pieces)


def _gap(lines: int) -> str:
    """``lines`` lines holding nothing a summary reads: blank, or from two on one string
    statement (at the top level, between two statements, as every gap of an excerpt)."""
    return '"""' + "\n" * (lines - 1) + '"""\n' if lines > 1 else "\n" * lines


def statement_lines(found: Outline, module: cst.Module) -> list[int] | None:
    """For each statement of the outline, the index of the libcst statement holding it
    (``a = 1; b = 2`` is one libcst statement); None when the two do not line up."""
    holders: list[int] = []
    for position, node in enumerate(module.body):
        count = len(node.body) if isinstance(node, cst.SimpleStatementLine) else 1
        holders.extend([position] * count)
    if len(holders) != len(found.statements):
        return None
    return holders


def usable_for_trees(text: str) -> bool:
    # One substring search per character (a fast scan each) costs a tenth of a character-class
    # pattern's, asked for every file analyzed and every excerpt.
    return not any(brk in text for brk in _OTHER_BREAKS)


def excerpt_tree(
    module: cst.Module,
    holders: list[int],
    found: Outline,
    text: str,
    chosen: list[Statement],
    target: Statement | None,
) -> cst.Module | None:
    """The module :func:`excerpt_text` would give, parsed, made of ``module``'s own statements
    (``holders``: :func:`statement_lines`): each is preceded by as many blank lines as put it
    on its line, a class other than the target keeps its header and gets ``pass`` for a body.
    None where the text's cut would differ from whole statements (``a = 1; b = (`` ... where
    only ``a`` is wanted; comments after a statement's last line, which libcst gives to its
    blocks; a header closed by a comment): the caller parses the text then. Else the tree
    prints as the text reads, but for the comments before each statement (blank there)."""
    lines = text.splitlines(keepends=True)
    body = module.body
    starts: dict[int, int] = {}  # libcst index -> its first line
    ends: dict[int, int] = {}  # libcst index -> the last line of its ``ast`` statements
    for statement in found.statements:
        holder = holders[statement.index]
        starts.setdefault(holder, statement.first)
        ends[holder] = max(ends.get(holder, 0), statement.last)
    pieces: list[cst.BaseStatement] = []
    written = 0  # the last line the text's pieces so far take (as in ``excerpt_text``)
    taken = 0  # the last line the tree's take (a block's trailing comments are its own)
    last_holder = -1
    for statement in chosen:
        holder = holders[statement.index]
        if statement.first <= written:
            if holder != last_holder:
                return None
            continue
        if holder == last_holder or statement.last != ends[holder]:
            return None
        last_holder = holder
        node = body[holder]
        blank = [cst.EmptyLine()] * (statement.first - 1 - taken)
        header = _header_only(lines, statement, target)
        if header is not None:
            if not isinstance(node, cst.ClassDef) or not isinstance(node.body, cst.IndentedBlock):
                return None
            if header.rsplit("\n", 1)[-1].lstrip().startswith("#"):
                return None  # the text keeps that comment line, the tree would not
            block = node.body.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])], footer=[])
            node = node.with_changes(body=block)
            written = taken = statement.first + header.count("\n") + 1
        else:
            written = statement.last
            following = body[holder + 1] if holder + 1 < len(body) else None
            if following is not None:
                taken = starts[holder + 1] - len(following.leading_lines) - 1
            else:
                taken = len(lines) if any(line.strip() for line in lines[written:]) else written
            if taken != written:
                return None  # comments after its last line are its blocks' (the text has none)
        pieces.append(node.with_changes(leading_lines=blank))
    return module.with_changes(body=pieces, header=[], footer=[])


def mentions(text: str, name: str) -> bool:
    """Whether ``text`` holds ``name`` as a whole word: ``re.search(rf"\\b{name}\\b", text)``,
    without compiling a pattern per name (the index asks for hundreds of names; ``re``'s cache
    of compiled patterns does not hold them) or scanning from every position."""
    if not name.isidentifier():
        return re.search(rf"\b{re.escape(name)}\b", text) is not None
    size = len(name)
    found = text.find(name)
    while found >= 0:
        before = text[found - 1] if found else " "
        end = found + size
        after = text[end] if end < len(text) else " "
        # ``\b`` between a word character (``str.isalnum`` or ``_``, as ``re``'s ``\w``) and not
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        found = text.find(name, found + 1)
    return False


def _parse_lines(text: str, statement: Statement) -> ast.stmt | None:
    """The one statement lines ``first`` to ``last`` of ``text`` hold, parsed alone; None
    when they hold another too (``a = 1; b = 2``), or the text has line breaks other than
    ``\n`` (``ast``'s line numbers would not be the text's ``\n`` lines)."""
    if "\r" in text or not usable_for_trees(text):
        return None
    start = 0
    for _ in range(statement.first - 1):
        start = text.index("\n", start) + 1
    end = start
    for _ in range(statement.last - statement.first + 1):
        end = text.find("\n", end)
        if end < 0:
            end = len(text)
            break
        end += 1
    try:
        body = ast.parse(text[start:end]).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if len(body) != 1 or body[0].lineno + statement.first - 1 != statement.lineno:
        return None
    if (body[0].end_lineno or 0) + statement.first - 1 != statement.last:
        return None
    return body[0]


def _names(nodes: list[ast.AST]) -> tuple[str, ...]:
    names = [n.id for n in nodes if isinstance(n, ast.Name)]
    last = {name: position for position, name in enumerate(names)}
    return tuple(name for position, name in enumerate(names) if last[name] == position)


def _holds_imports(statement: ast.stmt) -> bool:
    """``try: import apex`` / ``if TYPE_CHECKING: from x import y`` at module level."""
    if not isinstance(statement, (ast.Try, ast.If)):
        return False
    return any(isinstance(node, _IMPORT_NODES) for node in ast.walk(statement))


def _bound_names(statement: ast.stmt) -> set[str]:
    found = set()
    for node in ast.walk(statement):
        if isinstance(node, _IMPORT_NODES):
            for alias in node.names:
                found.add((alias.asname or alias.name).split(".", 1)[0])
    return found


def _decorators(statement: ast.stmt) -> list[ast.expr]:
    return list(getattr(statement, "decorator_list", []))
