"""What a run is asked to do (:class:`RunOptions`), and the few facts about the machine and
paths the run needs before any file is read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from trainlint import budget, sources
from trainlint.cache import code_fingerprint, fingerprint
from trainlint.rule import Severity


@dataclass(frozen=True)
class RunOptions:
    codes: tuple[str, ...]
    severity_overrides: tuple[tuple[str, Severity], ...] = ()
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...] = ()
    max_file_size: int = sources.DEFAULT_MAX_BYTES
    cache_dir: Path | None = None
    jobs: int = 0  # 0: one per CPU
    root: Path = field(default_factory=Path.cwd)
    #: Read other project modules' summaries (``--no-summaries`` turns it off).
    summaries: bool = True
    time_budget: float = budget.DEFAULT_BUDGET  # seconds per file; 0: none
    #: Blank the top-level blocks no selected rule can care about before parsing
    #: (``--slicing``; the findings are the same either way). Off by default: on whole
    #: repositories with every rule it kept 95 % of the lines and cost more CPU than it saved
    #: (bench/README.md, fourth round).
    slicing: bool = False

    def fingerprint(self, rule_modules: Iterable[str] = (), code_stamp: str | None = None) -> str:
        """What a cached result depends on besides the file's bytes.

        Per-file ignores are not part of it: they are applied after the cache, so editing them
        never invalidates anything and a cached entry never depends on the file's path.
        """
        return fingerprint(
            self.codes,
            self.severity_overrides,
            self.max_file_size,
            code_stamp if code_stamp is not None else code_fingerprint(rule_modules),
            self.summaries,
        )


def available_cpus() -> int:
    """CPUs this process may use (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def display_path(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)
