"""The project index as one analyzed file sees it (:class:`ProjectView`): lookups of the names it
imports, following re-exports and project base classes, and a record of every summary used,
with its digest, for the file's cache entry (:meth:`trainlint.project.ProjectIndex.deps_valid`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from trainlint.callers import CallerRecord, callers_of
from trainlint.model.summaries.types import ClassSummary, Definition, Reexport

if TYPE_CHECKING:
    from trainlint.project import ProjectIndex

#: Re-exports followed (``utils/__init__.py`` -> ``utils/meters.py``) before giving up.
MAX_HOPS = 4


class ProjectView:
    """The index as one analyzed file sees it; records the summaries the file used."""

    def __init__(self, index: ProjectIndex, importer: Path) -> None:
        self.index = index
        self.importer = importer
        self.folder = importer.parent
        #: (path relative to the importer's folder, name) -> digest of the summary used.
        self.used: dict[tuple[str, str], str] = {}
        self._lookups: dict[tuple[str, bool], tuple[Definition, list[str]] | None] = {}

    def lookup(
        self, target: str, classes_only: bool = False
    ) -> tuple[Definition, list[str]] | None:
        """The summary ``target`` (``utils.AverageMeter``, ``.engine.train_one_epoch``) names,
        following re-exports, and the attribute path left inside it (``["update"]``).
        ``classes_only``: a function or other name is told apart by ``ast`` and not summarized
        (the dependency recorded is then what kind of definition it is)."""
        key = (target, classes_only)
        if key not in self._lookups:
            self._lookups[key] = self._lookup(target, classes_only)
        found = self._lookups[key]
        return (found[0], list(found[1])) if found is not None else None

    def _lookup(
        self, target: str, classes_only: bool, importer: Path | None = None, depth: int = 0
    ) -> tuple[Definition, list[str]] | None:
        importer = importer or self.importer
        for _ in range(MAX_HOPS):
            resolved = self.index.resolve(importer, target)
            if resolved is None:
                return None
            path, rest = resolved
            if not rest:
                resolved = self._bound_by_package(importer, target)
                if resolved is None:
                    return None  # a module itself: its attributes are asked for by name
                path, rest = resolved
            if classes_only and len(rest) == 1:
                kind = self.index.kind(path, rest[0])
                if kind not in ("class", "import"):
                    self._record_kind(path, rest[0], kind)
                    return None
            found = self.index.definition(path, rest[0])
            self._record(path, rest[0])
            if isinstance(found, ClassSummary):
                found = self._through_project_bases(found, path, depth)
            if not isinstance(found, Reexport):
                return (found, rest[1:]) if found is not None else None
            target = found.target + "".join(f".{p}" for p in rest[1:])
            importer = path
        return None

    def _bound_by_package(self, importer: Path, target: str) -> tuple[Path, list[str]] | None:
        """``from pkg import HookedTransformer`` where ``pkg/HookedTransformer.py`` is a module
        and ``pkg/__init__.py`` rebinds the name (``from .HookedTransformer import
        HookedTransformer``): Python binds the package's attribute, the class."""
        package, dot, name = target.rpartition(".")
        if not dot or not package.strip("."):
            return None
        found = self.index.resolve(importer, package)
        if found is None or found[1] or found[0].name != "__init__.py":
            return None
        if self.index.kind(found[0], name) is None:
            return None
        return found[0], [name]

    def _through_project_bases(self, cls: ClassSummary, path: Path, depth: int) -> ClassSummary:
        """``cls`` as its bases in other project modules make it: ``class Head(BaseNet)`` with
        ``BaseNet(nn.Module)`` in ``base.py`` is a module too (a summary reads only its own
        module, so its importer resolves the rest, recording what it read)."""
        if cls.is_module or depth >= MAX_HOPS:
            return cls
        for base in cls.bases:
            found = self._lookup(base, True, path, depth + 1) if "." in base else None
            base_summary = found[0] if found is not None and not found[1] else None
            if isinstance(base_summary, ClassSummary) and base_summary.is_module:
                return replace(cls, is_module=True)
        return cls

    def _record(self, path: Path, name: str) -> None:
        relative = self.index.relative(path, self.folder)
        self.used[(relative, name)] = self.index.digest(path, name) if self.index.digests else ""

    def _record_kind(self, path: Path, name: str, kind: str | None) -> None:
        self.used.setdefault((self.index.relative(path, self.folder), name), f"kind:{kind}")

    def callers(self, name: str, params: tuple[str, ...]) -> list[CallerRecord]:
        """The calls of the viewed file's function ``name`` in other modules (recorded as
        dependencies): see :mod:`trainlint.callers`."""
        return callers_of(self, name, params)

    def deps(self) -> list[list[str]]:
        """What a cache entry of the viewed file depends on (nothing without digests)."""
        if not self.index.digests:
            return []
        return [[path, name, value] for (path, name), value in sorted(self.used.items())]
