"""Whole libcst trees of the run's modules, kept for the excerpts of the project index.

A module analyzed in this process leaves its tree here, and a module this process is going to
analyze that a summary needs first is parsed whole once for both (:meth:`trainlint.project.
ProjectIndex.tree_for`): excerpts are then cut from the tree instead of parsed from text.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import libcst as cst


class TreeStore:
    """Whole libcst trees by resolved path, with their text, dropped once their texts and the
    file being analyzed (:meth:`reserve`) pass ``budget`` characters (a run's trees would not
    fit in memory; a file's own tree is in memory while it is analyzed, so a large file leaves
    less room, and one larger than the budget none: the store adds nothing to its peak).

    Segmented, not plainly least recently used: a tree that served an excerpt (``use``) or was
    parsed for one ahead of its file's analysis is kept before a tree only its own analysis
    put. Most files of a run are imported by none (scripts, tests); their trees, put one after
    the other, pushed out the few modules every file imports, and trees parsed ahead for a
    later analysis, which then parsed its file a second time. Which trees are kept changes no
    summary: an excerpt cut from a tree is the excerpt parsed from text."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.chars = 0
        self._fresh: OrderedDict[Path, tuple[str, cst.Module]] = OrderedDict()  # put only
        self._used: OrderedDict[Path, tuple[str, cst.Module]] = OrderedDict()  # used, or ahead
        self._reserved: tuple[Path | None, int] = (None, 0)

    def get(self, path: Path, text: str, use: bool = False) -> cst.Module | None:
        """The tree of ``text`` at ``path``; ``use``: for an excerpt (kept longer from now)."""
        segment = self._used if path in self._used else self._fresh
        found = segment.get(path)
        if found is None or (found[0] is not text and found[0] != text):
            return None
        if use and segment is self._fresh:
            del self._fresh[path]
            self._used[path] = found
        else:
            segment.move_to_end(path)
        return found[1]

    def put(self, path: Path, text: str, tree: cst.Module, used: bool = False) -> None:
        """Keep ``tree``; ``used``: parsed for an excerpt (before its file's analysis)."""
        self._drop(path)
        if path == self._reserved[0]:
            self._reserved = (None, 0)  # its own tree: counted as kept from now
        (self._used if used else self._fresh)[path] = (text, tree)
        self.chars += len(text)
        self._shrink()

    def reserve(self, path: Path, chars: int) -> None:
        """Room for the tree of ``path`` (``chars`` long), the file analyzed now."""
        stored = self._fresh.get(path) or self._used.get(path)
        self._reserved = (path, 0) if stored is not None else (path, chars)
        self._shrink()

    def _drop(self, path: Path) -> None:
        old = self._fresh.pop(path, None) or self._used.pop(path, None)
        if old is not None:
            self.chars -= len(old[0])

    def _shrink(self) -> None:
        while self.chars + self._reserved[1] > self.budget and (self._fresh or self._used):
            _, (dropped, _) = (self._fresh or self._used).popitem(last=False)
            self.chars -= len(dropped)
