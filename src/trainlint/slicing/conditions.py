"""Structural block triggers: conditions a rule declares, decided on a block's ``ast``.

A word or a pattern of the text seeds a block whatever its code does; these look at what the
code *is*. Each is a string in a rule's ``block_triggers`` (the vocabulary below); the slicer
decides it once per block and never knows which rule asked:

* ``ast:accumulates``: an augmented assignment (``total += x``, ``totals[k] -= x``), or an
  assignment whose value adds (multiplies, ...) or passes the target itself
  (``total = total + x``, ``x = torch.cat([x, y])``);
* ``ast:call=NAME,...``: a call of a function or method so named (``xs.append(v)``);
* ``ast:discard=NAME,...``: an expression statement that is a call of a method so named
  (``x.to(device)`` alone on its line);
* ``ast:self-container``: ``self.x = [...]`` (a list, tuple, set or dict display or a
  comprehension, empty or holding more than constants), or ``self.x = name`` where the block
  also binds a name to such a container;
* ``ast:defines=NAME,...``: a class whose body defines a method so named (``__getitem__``).

``loop-ast:CONDITION`` (any of the above) seeds a block that has a loop when the condition
holds in the block or in a block it reaches through the names it mentions (see
:func:`trainlint.slicing.closure.loops_reaching`). ``import:MODULE`` is a gate, decided once
per file: unless the file imports ``MODULE`` (or something under it, absolute imports
anywhere in the file) the rule's other block triggers are void (rules that return nothing in
such a file, as the model's ``imports.imports`` says).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from trainlint.slicing.blocks import Block

#: Prefixes of the structural triggers (the slicer routes them here).
AST, LOOP_AST, IMPORT = "ast:", "loop-ast:", "import:"

_CONTAINERS = (
    ast.List, ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp,
)  # fmt: skip
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
#: Calls that add into one of their operands (``torch.cat([x, y])``, ``x.add(y)``).
_ADDING = frozenset({"add", "add_", "sum", "cat", "concat", "concatenate", "stack", "append"})


def holds(block: Block, condition: str) -> bool:
    """Whether ``condition`` (without its ``ast:``/``loop-ast:`` prefix) holds in ``block``."""
    found = block.decided.get(condition)
    if found is None:
        found = block.decided[condition] = _decide(block, condition)
    return found


def _decide(block: Block, condition: str) -> bool:
    kind, _, argument = condition.partition("=")
    names = frozenset(argument.split(",")) if argument else frozenset()
    if kind == "accumulates":
        return any(_accumulates(node) for node in _walk(block))
    if kind == "call":
        return any(isinstance(node, ast.Call) and _callee(node) in names for node in _walk(block))
    if kind == "discard":
        return any(
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in names
            for node in _walk(block)
        )
    if kind == "self-container":
        return _self_container(block)
    if kind == "defines":
        return any(
            isinstance(node, ast.ClassDef)
            and any(
                isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name in names
                for m in node.body
            )
            for node in _walk(block)
        )
    raise ValueError(f"unknown block condition {condition!r}")


def _walk(block: Block) -> Iterator[ast.AST]:
    """Every node of the block (a class's block: without its split-off methods)."""
    stack: list[ast.AST] = list(reversed(block.nodes))
    split = block.split
    while stack:
        node = stack.pop()
        if split and id(node) in split:
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _key(node: ast.AST) -> str | None:
    """``total``, ``self.total``, ``totals[]``: what an assignment target stands for."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _key(node.value)
        return f"{inner}.{node.attr}" if inner is not None else None
    if isinstance(node, ast.Subscript):
        inner = _key(node.value)
        return f"{inner}[]" if inner is not None else None
    if isinstance(node, ast.Starred):
        return _key(node.value)
    return None


def _target_keys(targets: list[ast.expr]) -> set[str]:
    found: set[str] = set()
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            found |= _target_keys(list(target.elts))
        else:
            key = _key(target)
            if key is not None:
                found.add(key)
                if key.endswith("[]"):
                    found.add(key[:-2])  # ``x[i] = x[i] + 1``
    return found


def _accumulates(node: ast.AST) -> bool:
    if isinstance(node, ast.AugAssign):
        return True
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    keys = _target_keys(targets)
    if not keys:
        return False
    for part in ast.walk(value):
        if isinstance(part, ast.BinOp):
            operands = [part.left, part.right]
        elif isinstance(part, ast.Call) and _callee(part) in _ADDING:
            operands = [part.func, *part.args, *(k.value for k in part.keywords)]
        else:
            continue
        for operand in operands:
            for inner in ast.walk(operand):
                if _key(inner) in keys:
                    return True
    return False


def _constant(node: ast.AST) -> bool:
    """A literal of constants only (``(3, 3)``, ``{"a": 1}``); an empty display is not one
    (it may be filled later)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return _constant(node.operand)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return bool(node.elts) and all(_constant(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return bool(node.values) and all(
            (k is None or _constant(k)) and _constant(v)
            for k, v in zip(node.keys, node.values, strict=True)
        )
    return False


def _holds_container(value: ast.AST) -> bool:
    return any(
        isinstance(part, _CONTAINERS) and (isinstance(part, _COMPREHENSIONS) or not _constant(part))
        for part in ast.walk(value)
    )


def _self_container(block: Block) -> bool:
    named = local = False
    for node in _walk(block):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        on_self = any(
            isinstance(part, ast.Attribute)
            and isinstance(part.value, ast.Name)
            and part.value.id == "self"
            for target in targets
            for part in ast.walk(target)
        )
        container = _holds_container(value)
        if on_self and container:
            return True
        if on_self and any(isinstance(part, ast.Name) for part in ast.walk(value)):
            named = True
        elif container:
            local = True
        if named and local:
            return True
    return False


def imported_modules(tree: ast.Module) -> set[str]:
    """Every absolute import target of the file (``torch.nn``, ``numpy.random.rand``; a
    ``from m import *`` gives ``m``), imports inside functions and classes included."""
    found: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.stmt):
            stack.extend(_statements_of(node))
    return found


def _statements_of(node: ast.stmt) -> Iterator[ast.AST]:
    for name in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(node, name, ()):
            if isinstance(child, (ast.ExceptHandler, ast.match_case)):
                yield from child.body
            else:
                yield child


def gate_open(modules: set[str], module: str) -> bool:
    prefix = module + "."
    return any(m == module or m.startswith(prefix) for m in modules)
