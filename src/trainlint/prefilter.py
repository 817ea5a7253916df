"""The prefilter: which selected rules a file's text can concern, from their trigger words.

A rule's ``triggers`` are exact substrings (never fuzzy); a rule without any is always run.
Most files lack most triggers, so each distinct word is searched for once per text, however
many rules share it, and not at all when a shorter word it contains is already absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class _Triggered(Protocol):
    triggers: tuple[str, ...]


class Prefilter:
    """The indexes of the rules (of ``selected``) whose trigger words a text mentions."""

    def __init__(self, selected: Sequence[_Triggered]) -> None:
        self._count = len(selected)
        self._always = {i for i, rule in enumerate(selected) if not rule.triggers}
        self.triggers = tuple(sorted({t for rule in selected for t in rule.triggers}))
        rules_of_trigger = {
            t: {i for i, r in enumerate(selected) if t in r.triggers} for t in self.triggers
        }
        # Shortest first, each with the shorter triggers it contains: when ``step`` is absent,
        # ``.step`` is too, without scanning the text again.
        ordered = sorted(self.triggers, key=lambda t: (len(t), t))
        self._plan = [
            (t, rules_of_trigger[t], tuple(s for s in ordered[:n] if s in t))
            for n, t in enumerate(ordered)
        ]
        self._last: tuple[str, tuple[int, ...]] | None = None

    def wanted(self, text: str) -> list[int]:
        """The last answer is kept: in one process, ``prepare`` and then ``analyze_text`` ask
        for the same text (a scan of it per trigger word)."""
        last = self._last
        if last is not None and last[0] is text:
            return list(last[1])
        indexes = self._scan(text)
        self._last = (text, tuple(indexes))
        return indexes

    def _scan(self, text: str) -> list[int]:
        everything = range(self._count)
        if len(self._always) == self._count:
            return list(everything)
        chosen: set[int] = set()
        absent: set[str] = set()
        for trigger, indexes, parts in self._plan:
            if indexes <= chosen:
                continue
            if any(part in absent for part in parts) or trigger not in text:
                absent.add(trigger)
            else:
                chosen |= indexes
        return [i for i in everything if i in chosen or i in self._always]
