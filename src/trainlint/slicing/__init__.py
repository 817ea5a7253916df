"""Block-level slicing: parse only the top-level blocks some selected rule can care about.

Most of a whole repository is library code no rule reports on, yet every file that passes the
word prefilter was parsed whole by libcst and modelled whole. Here a cheap scan (the stdlib
``ast``, C-fast: about a tenth of libcst's parse) cuts the module into its top-level blocks
(a function, a class, a module-level statement; statements joined by ``;`` are one block) and
keeps

* the *seeds*: blocks that hold one of the block triggers of a rule the prefilter let through
  (:attr:`trainlint.rule.Rule.block_triggers`: words, ``re:`` patterns such as :data:`LOOP`,
  ``loop:`` patterns a loop's reach must match, and structural conditions decided on the
  block's ``ast`` -- ``ast:``, ``loop-ast:``, and the per-file ``import:`` gates: see
  :mod:`trainlint.slicing.conditions`);
* every import (the model reads them all: frameworks, qualified names);
* a closure, so that a kept block is modelled as it would be in the whole file:
  **forward**, every block that binds a name a kept block mentions (a helper it calls, the class
  it instantiates, a global it reads, the statement that rebinds it; a method name mentioned as
  an attribute keeps the classes defining that method); **backward**, every block that mentions
  a function, class or method a kept block defines (its same-file callers: ``model.eval()``
  before ``evaluate(model)`` under ``if __name__ == "__main__":``, the loop around a
  ``train_step``), and every block that mentions any name a seed binds (``crit =
  nn.BCELoss()`` at module level seeds the functions that call ``crit``);
* all of a script's module-level statements as soon as one of them is kept: their order is
  what the model reads there, and any of them may change what a kept one binds (``for p in
  vgg.parameters(): p.requires_grad = False`` freezes the ``vgg`` a kept function runs).

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
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from trainlint.slicing import closure, conditions
from trainlint.slicing.blocks import outline

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
#: Block triggers: a loop whose iteration (or what it reaches) accumulates into a target
#: (``total += x``, ``total = total + x``: see :mod:`trainlint.slicing.conditions`).
ACCUMULATING_LOOP = "loop-ast:accumulates"
#: Block triggers: a loop that adds into a total, a list, a meter or a metric (or reaches a
#: helper that does): ``total += x``, ``xs.append(x)``, ``meter.update(x)``, ``acc(p, y)`` then
#: ``acc.compute()``, keras ``update_state``/``result``.
TOTALLING_LOOP = "loop-ast:call=add,add_,append,compute,extend,insert,result,update,update_state"
#: A block trigger: ``self.x = [...]`` (a container display or comprehension; see
#: :mod:`trainlint.slicing.conditions`).
SELF_CONTAINER = "ast:self-container"
#: A gate: the rule's other block triggers count only in a file that imports torch.
IMPORTS_TORCH = "import:torch"
#: Kept lines above this share of the file: parse it whole (the tree can then be shared).
WORTH_IT = 0.9

_CELLS = re.compile(r"^# %%", re.M)
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


def loop_calling(*names: str) -> str:
    """A block trigger: a loop whose iteration (or what it reaches) calls one of ``names``."""
    return f"loop-ast:call={','.join(sorted(names))}"


def calling(*names: str) -> str:
    """A block trigger: the block calls a function or method named one of ``names``."""
    return f"ast:call={','.join(sorted(names))}"


def discarding(*names: str) -> str:
    """A block trigger: an expression statement that is a call of a method named so."""
    return f"ast:discard={','.join(sorted(names))}"


def defining(*names: str) -> str:
    """A block trigger: a class whose body defines a method named one of ``names``."""
    return f"ast:defines={','.join(sorted(names))}"


@dataclass(frozen=True)
class Sliced:
    """The text libcst parses, and what was kept of the original."""

    text: str
    blocks: int
    kept_blocks: int
    lines: int
    kept_lines: int


@dataclass(frozen=True)
class Triggers:
    """One rule's block triggers, compiled (see :func:`compile_triggers`)."""

    words: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    loops: tuple[re.Pattern[str], ...] = ()
    structural: tuple[str, ...] = ()  # ``ast:`` conditions, without the prefix
    loop_structural: tuple[str, ...] = ()  # ``loop-ast:`` conditions, without the prefix
    imported: bool = False
    gates: tuple[str, ...] = ()  # ``import:`` modules, all required


def compile_triggers(triggers: Iterable[str]) -> Triggers:
    """One rule's block triggers -> :class:`Triggers`."""
    words, patterns, loops, structural, loop_structural, gates = [], [], [], [], [], []
    imported = False
    for trigger in sorted(set(triggers)):
        if trigger == IMPORTED:
            imported = True
        elif trigger.startswith("re:"):
            patterns.append(re.compile(trigger[3:], re.M))
        elif trigger.startswith("loop:"):
            loops.append(re.compile(trigger[5:], re.M))
        elif trigger.startswith(conditions.LOOP_AST):
            loop_structural.append(trigger[len(conditions.LOOP_AST) :])
        elif trigger.startswith(conditions.AST):
            structural.append(trigger[len(conditions.AST) :])
        elif trigger.startswith(conditions.IMPORT):
            gates.append(trigger[len(conditions.IMPORT) :])
        else:
            words.append(trigger)
    return Triggers(
        tuple(words),
        tuple(patterns),
        tuple(loops),
        tuple(structural),
        tuple(loop_structural),
        imported,
        tuple(gates),
    )


class _Sliceable(Protocol):
    block_triggers: tuple[str, ...] | None
    uses_suppressions: bool


class Slicer:
    """Slices texts for the rules a file's prefilter let through (each rule's triggers are
    compiled once)."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, ...], Triggers] = {}

    def text_for(
        self,
        text: str,
        rules: Iterable[_Sliceable],
        in_project: Callable[[], Callable[[str], bool] | None],
    ) -> str | None:
        """``text`` sliced for ``rules``, or None to parse it whole. ``in_project`` makes the
        test :func:`slice_text` needs for :data:`IMPORTED` and loop triggers (only asked for
        when some rule has them: it may build the project index)."""
        compiled = []
        for rule in rules:
            if rule.uses_suppressions:
                continue  # judged on the real text and the other rules' findings
            if rule.block_triggers is None:
                return None  # the rule needs the whole file
            known = self._compiled.get(rule.block_triggers)
            if known is None:
                known = self._compiled[rule.block_triggers] = compile_triggers(rule.block_triggers)
            compiled.append(known)
        wants = any(t.imported or t.loops or t.loop_structural for t in compiled)
        found = slice_text(text, compiled, in_project() if wants else None)
        return found.text if found is not None else None


def _union(rules: Iterable[Triggers]) -> Triggers:
    def merged(name: str) -> tuple:
        return tuple(dict.fromkeys(item for rule in rules for item in getattr(rule, name)))

    rules = list(rules)
    return Triggers(
        merged("words"),
        merged("patterns"),
        merged("loops"),
        merged("structural"),
        merged("loop_structural"),
        any(rule.imported for rule in rules),
    )


def slice_text(
    text: str,
    rules: Sequence[Triggers],
    in_project: Callable[[str], bool] | None = None,
) -> Sliced | None:
    """The text with the blocks no rule of ``rules`` cares about blanked, or None when
    slicing would not pay (or the text is not something this scan is sure about: the caller
    then parses it whole).

    ``in_project`` (for the :data:`IMPORTED` trigger): whether an import target
    (``.utils.switch``, ``tools.modes.switch``) is a module of the project."""
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
    blocks = outline(tree, lines)
    if len(blocks) < 2:
        return None
    if any(rule.gates for rule in rules):
        modules = conditions.imported_modules(tree)
        rules = [r for r in rules if all(conditions.gate_open(modules, g) for g in r.gates)]
    wanted = _union(rules)
    imported: set[int] = set()
    loops = bool(wanted.loops or wanted.loop_structural)
    if (wanted.imported or loops) and in_project is not None:
        imported = closure.importing(tree, blocks, in_project)
    seeds = {
        i
        for i, block in enumerate(blocks)
        if any(w in block.text for w in wanted.words)
        or any(p.search(block.text) for p in wanted.patterns)
        or any(conditions.holds(block, c) for c in wanted.structural)
    }
    if wanted.imported:
        seeds |= imported
    if loops:
        seeds |= closure.loops_reaching(
            blocks, wanted.loops, wanted.loop_structural, imported, seeds
        )
    kept = closure.closure(blocks, seeds)
    kept_lines = sum(b.size for i, b in enumerate(blocks) if i in kept)
    if kept_lines > WORTH_IT * len(lines):
        return None
    out = list(lines)
    for index, block in enumerate(blocks):
        if index not in kept and (block.parent is None or block.parent in kept):
            for n in range(block.start - 1, block.end):
                out[n] = "\n" if out[n].endswith("\n") else ""
    return Sliced("".join(out), len(blocks), len(kept), len(lines), kept_lines)
