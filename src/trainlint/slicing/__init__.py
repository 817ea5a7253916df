"""Block-level slicing: parse only the top-level blocks some selected rule can care about.

Most of a whole repository is library code no rule reports on, yet every file that passes the
word prefilter was parsed whole by libcst and modelled whole. Here a cheap scan (the stdlib
``ast``, C-fast: about a tenth of libcst's parse) cuts the module into its top-level blocks
(a function, a class, a module-level statement; statements joined by ``;`` are one block) and
keeps

* the *seeds*: blocks that hold one of the block triggers of a rule the prefilter let through
  (:attr:`trainlint.rule.Rule.block_triggers`: words, or ``re:`` patterns such as
  :data:`LOOP`);
* every import (the model reads them all: frameworks, qualified names);
* a closure, so that a kept block is modelled as it would be in the whole file:
  **forward**, every block that binds a name a kept block mentions (a helper it calls, the class
  it instantiates, a global it reads, the statement that rebinds it; a method name mentioned as
  an attribute keeps the classes defining that method); **backward**, every block that mentions
  a function, class or method a kept block defines (its same-file callers: ``model.eval()``
  before ``evaluate(model)`` under ``if __name__ == "__main__":``, the loop around a
  ``train_step``), and every block that mentions any name a seed binds (``crit =
  nn.BCELoss()`` at module level seeds the functions that call ``crit``);
* all of a script's module-level statements as soon as one of them loops or seeds: their order
  is what the model reads there.

The other blocks are blanked: their lines become empty, so every kept line keeps its number
and its columns. Identifiers are matched as words of the block's text (strings and comments
included), which only keeps more. A rule whose ``block_triggers`` is None needs the whole file
(third-party rules, unless they declare otherwise): nothing is sliced then.

The engine hands libcst the sliced text, and the model and the suppressions the real text.
A sliced tree is never stored for other files' summaries or excerpts (see
:meth:`trainlint.project.ProjectIndex.keep_tree`).
"""

from __future__ import annotations

import ast
import bisect
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

#: A block trigger: the block has a ``for`` or ``while`` statement.
LOOP = r"re:^[ \t]*(?:async[ \t]+)?(?:for|while)\b"
#: A block trigger: a function whose name an evaluation region may have (a superset of the
#: model's region names: eval*, *val*, test, predict*, infer*).
EVAL_FUNCTION = r"re:(?i)^[ \t]*(?:async[ \t]+)?def[ \t]+\w*(?:eval|val|test|predict|infer)"
#: A block trigger: a loop whose iteration may step an optimizer (a train step): ``step``,
#: TF's ``apply_gradients``/``minimize``, in the loop's block or what it reaches.
TRAIN_LOOP = r"loop:\bstep\b|apply_gradients|minimize"
#: A block trigger: a loop over what may be an evaluation loader (the model's loader names).
EVAL_LOOP = (
    r"loop:(?i:(?<![a-z0-9])(?:val|valid|validation|test|eval|dev|holdout)"
    r"(?:_|loader|set|(?![a-z0-9])))"
)
#: A block trigger: the word ``log`` (``torch.log(p)``, ``p.log()``, ``from numpy import log``).
LOG = r"re:\blog\b"
#: A block trigger: the block mentions a name imported from a module of the project (its
#: summary may say the call switches a mode, returns probabilities, ...).
IMPORTED = "<imported>"
#: Kept lines above this share of the file: parse it whole (the tree can then be shared).
WORTH_IT = 0.9

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOBAL = re.compile(r"^[ \t]*global[ \t]+([\w \t,]+)", re.M)
_CELLS = re.compile(r"^# %%", re.M)
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


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

    @property
    def size(self) -> int:
        return self.end - self.start + 1 - sum(e - s + 1 for s, e in self.holes)


@dataclass(frozen=True)
class Sliced:
    """The text libcst parses, and what was kept of the original."""

    text: str
    blocks: int
    kept_blocks: int
    lines: int
    kept_lines: int


Compiled = tuple[tuple[str, ...], tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]


def compile_triggers(triggers: Iterable[str]) -> Compiled:
    """Block triggers -> (words, ``re:`` patterns, ``loop:`` patterns)."""
    words, patterns, loops = set(), [], []
    for trigger in sorted(set(triggers)):
        if trigger.startswith("re:"):
            patterns.append(re.compile(trigger[3:], re.M))
        elif trigger.startswith("loop:"):
            loops.append(re.compile(trigger[5:], re.M))
        else:
            words.add(trigger)
    return tuple(sorted(words)), tuple(patterns), tuple(loops)


def slice_text(
    text: str,
    words: tuple[str, ...],
    patterns: tuple[re.Pattern[str], ...],
    loops: tuple[re.Pattern[str], ...] = (),
    in_project: Callable[[str], bool] | None = None,
) -> Sliced | None:
    """The text with irrelevant blocks blanked, or None when slicing would not pay (or the
    text is not something this scan is sure about: the caller then parses it whole).

    ``in_project`` (for the :data:`IMPORTED` trigger, among ``words``): whether an import
    target (``.utils.switch``, ``tools.modes.switch``) is a module of the project."""
    if "\r" in text or "\x0c" in text:  # other line ends, form feeds: ast and libcst may differ
        return None
    if _CELLS.search(text):  # ``# %%`` cells: where a cell ends depends on the blank lines
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None  # the whole parse reports it
    lines = _LINE.findall(text)
    blocks = _blocks(tree, lines)
    if len(blocks) < 2:
        return None
    imported: set[int] = set()
    wants_imports = IMPORTED in words
    words = tuple(w for w in words if w != IMPORTED)
    if (wants_imports or loops) and in_project is not None:
        imported = _importing(tree, blocks, in_project)
    seeds = {
        i
        for i, block in enumerate(blocks)
        if any(w in block.text for w in words) or any(p.search(block.text) for p in patterns)
    }
    if wants_imports:
        seeds |= imported
    if loops:
        seeds |= _loops_reaching(blocks, loops, imported, seeds)
    kept = _closure(blocks, seeds)
    kept_lines = sum(b.size for i, b in enumerate(blocks) if i in kept)
    if kept_lines > WORTH_IT * len(lines):
        return None
    out = list(lines)
    for index, block in enumerate(blocks):
        if index not in kept and (block.parent is None or block.parent in kept):
            for n in range(block.start - 1, block.end):
                out[n] = "\n" if out[n].endswith("\n") else ""
    return Sliced("".join(out), len(blocks), len(kept), len(lines), kept_lines)


# ---------------------------------------------------------------------- blocks
def _blocks(tree: ast.Module, lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    statements: list[list[ast.stmt]] = []
    for statement in tree.body:
        start, end = _span(statement)
        if blocks and start <= blocks[-1].end:  # ``a = 1; b = 2``: one line, one block
            block = blocks[-1]
            block.end = max(block.end, end)
            statements[-1].append(statement)
        else:
            block = Block(start, end)
            blocks.append(block)
            statements.append([statement])
    methods: list[Block] = []
    for index, (block, members) in enumerate(zip(blocks, statements, strict=False)):
        own = _split_methods(members[0], index) if len(members) == 1 else []
        block.holes = [(m.start, m.end) for m in own]
        split = {m.binds.pop() for m in own}
        for statement in members:
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
        method = Block(start, end, text=name, parent=parent)
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
        isinstance(s, (ast.Import, ast.ImportFrom)) for s in _direct_bodies(statement)
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
                for member in _direct_bodies(node):
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


def _direct_bodies(node: ast.stmt) -> list[ast.stmt]:
    """The statements of ``node``'s bodies, and those of the ``if``/``try`` among them."""
    found: list[ast.stmt] = []
    for name in ("body", "orelse", "finalbody", "handlers"):
        for child in getattr(node, name, ()):
            if isinstance(child, ast.ExceptHandler):
                found.extend(child.body)
                continue
            found.append(child)
            if isinstance(child, (ast.If, ast.Try)):
                found.extend(_direct_bodies(child))
    return found


def _member_names(member: ast.stmt) -> list[str]:
    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [member.name]
    if isinstance(member, (ast.Assign, ast.AnnAssign)):
        targets = member.targets if isinstance(member, ast.Assign) else [member.target]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    return []


_LOCAL_IMPORT = re.compile(r"^[ \t]+(?:from[ \t]+\S+[ \t]+)?import[ \t]", re.M)


def _importing(
    tree: ast.Module, blocks: list[Block], in_project: Callable[[str], bool]
) -> set[int]:
    """The blocks that mention a name imported from the project (or import one themselves)."""
    names: set[str] = set()
    found: set[int] = set()
    starts = [b.start for b in blocks]
    for statement in tree.body:
        local = not isinstance(statement, (ast.Import, ast.ImportFrom))
        block = bisect.bisect_right(starts, statement.lineno) - 1
        if local and not _LOCAL_IMPORT.search(blocks[block].text):
            continue
        for node in ast.walk(statement) if local else (statement,):
            for name, target in _import_targets(node):
                if in_project(target):
                    names.add(name)
                    found.add(block)
    for index, block in enumerate(blocks):
        if not names.isdisjoint(block.words):
            found.add(index)
    return found


def _import_targets(node: ast.AST) -> Iterator[tuple[str, str]]:
    """(bound name, dotted target) for each name an import binds."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield (alias.asname or alias.name).split(".")[0], alias.name
    elif isinstance(node, ast.ImportFrom):
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            target = f"{module}.{alias.name}" if node.module else f"{module}{alias.name}"
            yield alias.asname or alias.name, target


# ---------------------------------------------------------------------- closure
def _binders(blocks: list[Block]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, block in enumerate(blocks):
        for name in block.binds | block.methods:
            found.setdefault(name, []).append(i)
    return found


def _loops_reaching(
    blocks: list[Block],
    loops: tuple[re.Pattern[str], ...],
    imported: set[int],
    seeds: set[int],
) -> set[int]:
    """The ``loop:`` seeds: blocks with a loop whose own text, or that of a block they reach
    through the names they mention (helpers, methods, globals: what an iteration can run),
    matches a pattern or mentions a name imported from the project."""
    loop = re.compile(LOOP[3:], re.M)
    binders = _binders(blocks)
    found: set[int] = set()
    for index, block in enumerate(blocks):
        if index in seeds or not loop.search(block.text):
            continue
        seen = {index}
        todo = [index]
        while todo:
            current = todo.pop()
            if current in imported or any(p.search(blocks[current].text) for p in loops):
                found.add(index)
                break
            parent = blocks[current].parent
            for name in blocks[current].words & binders.keys():
                for other in binders[name]:
                    if other not in seen:
                        seen.add(other)
                        todo.append(other)
            if parent is not None and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return found


def _closure(blocks: list[Block], seeds: set[int]) -> set[int]:
    """The indexes of the blocks to keep.

    *Downstream* blocks (the seeds, and every block that mentions a name a downstream block
    binds: ``net = Discriminator()`` after a seeded class, then the loop that calls ``net``)
    may hold findings; every kept block also keeps its definitions (forward) and the callers
    of the functions, classes and methods it defines (backward), so it is modelled in the
    same context as in the whole file."""
    binders = _binders(blocks)
    users: dict[str, list[int]] = {}
    for i, block in enumerate(blocks):
        for name in block.words & binders.keys():
            users.setdefault(name, []).append(i)
    script = [i for i, b in enumerate(blocks) if b.script]
    loop = re.compile(LOOP[3:], re.M)
    kept: set[int] = set()
    downstream: set[int] = set()
    queue: list[int] = []
    whole_script = False

    def keep(index: int, down: bool) -> None:
        nonlocal whole_script
        if index in downstream or (index in kept and not down):
            return
        kept.add(index)
        if down:
            downstream.add(index)
        queue.append(index)
        block = blocks[index]
        if block.parent is not None:
            keep(block.parent, down)  # a method needs its class (bases, __init__)
        if block.script and not whole_script and (down or loop.search(block.text)):
            whole_script = True  # the order of a script's statements is what the model reads
            for other in script:
                keep(other, False)

    for index in sorted(seeds):
        keep(index, True)
    for index, block in enumerate(blocks):
        if block.always:
            keep(index, False)
    while queue:
        index = queue.pop()
        block = blocks[index]
        for name in block.words & binders.keys():
            for other in binders[name]:
                keep(other, False)
        down = index in downstream
        for name in block.binds | block.methods if down else block.callables:
            for other in users.get(name, ()):
                keep(other, down)
    return kept
