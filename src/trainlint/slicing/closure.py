"""Which blocks the slicer keeps: the seeds' reach and the closure around them.

See :mod:`trainlint.slicing` for what is kept and why; this module only follows names between
the blocks of :mod:`trainlint.slicing.blocks`.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable, Iterator

from trainlint.slicing import conditions
from trainlint.slicing.blocks import Block

#: A block has a ``for`` or ``while`` statement (what ``loop:`` triggers start from).
HAS_LOOP = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:for|while)\b", re.M)

_LOCAL_IMPORT = re.compile(r"^[ \t]+(?:from[ \t]+\S+[ \t]+)?import[ \t]", re.M)


def importing(tree: ast.Module, blocks: list[Block], in_project: Callable[[str], bool]) -> set[int]:
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
    """Name -> the blocks binding it. A dunder method binds nothing here: its name is written
    only where it is defined or called on a base (``super().__init__()``, whose class is
    mentioned by name anyway); the syntax that runs it (``C(x)``, ``obj[i]``) names the class
    or the object. Else every class with an ``__init__`` would keep every other one."""
    found: dict[str, list[int]] = {}
    for i, block in enumerate(blocks):
        for name in block.binds:
            found.setdefault(name, []).append(i)
        for name in block.methods - block.binds:
            if not (name.startswith("__") and name.endswith("__")):
                found.setdefault(name, []).append(i)
    return found


def loops_reaching(
    blocks: list[Block],
    loops: tuple[re.Pattern[str], ...],
    structural: tuple[str, ...],
    imported: set[int],
    seeds: set[int],
) -> set[int]:
    """The ``loop:``/``loop-ast:`` seeds: blocks with a loop whose own text, or that of a block
    they reach through the names they mention (helpers, methods, globals: what an iteration can
    run), matches a pattern, holds a structural condition, or mentions a name imported from
    the project."""
    binders = _binders(blocks)
    found: set[int] = set()
    for index, block in enumerate(blocks):
        if index in seeds or not HAS_LOOP.search(block.text):
            continue
        seen = {index}
        todo = [index]
        while todo:
            current = todo.pop()
            other_block = blocks[current]
            if (
                current in imported
                or any(p.search(other_block.text) for p in loops)
                or any(conditions.holds(other_block, c) for c in structural)
            ):
                found.add(index)
                break
            parent = other_block.parent
            for name in other_block.words & binders.keys():
                for other in binders[name]:
                    if other not in seen:
                        seen.add(other)
                        todo.append(other)
            if parent is not None and parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return found


def closure(blocks: list[Block], seeds: set[int]) -> set[int]:
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
        if block.script and not whole_script:
            # The order of a script's statements is what the model reads, and any of them may
            # change what a kept one binds (``for p in vgg.parameters(): p.requires_grad =
            # False`` after ``vgg = ...``, a ``freeze(vgg)`` call): one kept keeps them all.
            whole_script = True
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
            # a module-level statement using the global may change the object it names
            # (``for p in vgg.parameters(): p.requires_grad = False``, ``net.eval()``)
            for other in users.get(name, ()):
                if blocks[other].script:
                    keep(other, False)
        down = index in downstream
        for name in block.binds | block.methods if down else block.callables:
            for other in users.get(name, ()):
                keep(other, down)
    return kept
