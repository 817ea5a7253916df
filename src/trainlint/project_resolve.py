"""Import resolution inside a project root, for the project index (:mod:`trainlint.project`).

Relative imports from the importing file's package, absolute ones from the importing file's
folder, its parents up to the root, and ``<root>/src``; nothing outside the root (installed
libraries stay libraries). Every answer is memoized for the run: the files of one folder
resolve a name alike, and file-system checks are asked once per path.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def find_root(path: Path) -> Path:
    """The project root of ``path``: the nearest folder holding a project marker, else the
    file's own folder."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return start


class ImportResolver:
    """Resolves imported names to the project's module files (a base of the project index)."""

    def __init__(self) -> None:
        self._roots: dict[Path, Path] = {}
        self._files: dict[Path, bool] = {}
        self._resolved: dict[tuple[Path, str], tuple[Path, list[str]] | None] = {}
        self._own: dict[tuple[Path, str], tuple[Path, list[str]] | None] = {}
        self._base_folders: dict[tuple[Path, int], list[Path]] = {}
        self._top_names: dict[tuple[Path, str], bool] = {}
        self._real_paths: dict[Path, Path] = {}
        self._relatives: dict[tuple[Path, Path], str] = {}

    def root_of(self, importer: Path) -> Path:
        folder = importer.parent
        if folder not in self._roots:
            self._roots[folder] = find_root(importer)
        return self._roots[folder]

    def relative(self, path: Path, folder: Path) -> str:
        """``os.path.relpath(path, folder)``, as dependencies record a module (every file of a
        folder records the modules it imports alike)."""
        key = (path, folder)
        if key not in self._relatives:
            self._relatives[key] = os.path.relpath(path, folder)
        return self._relatives[key]

    def _is_file(self, path: Path) -> bool:
        if path not in self._files:
            self._files[path] = path.is_file()
        return self._files[path]

    def resolve(self, importer: Path, target: str) -> tuple[Path, list[str]] | None:
        """The module file ``target`` names and the rest of the name inside it:
        ``.utils.AverageMeter`` from ``pkg/train.py`` -> (``pkg/utils.py``, [``AverageMeter``])."""
        # Every file of a folder resolves a name alike (the folders searched are the folder's),
        # but for a module never resolving to itself: memoized per folder, unless the folder's
        # answer is the importer itself (then that importer's own answer is computed).
        key = (importer.parent, target)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(importer, target, None)
        found = self._resolved[key]
        if found is not None and found[0] == importer:
            mine = (importer, target)
            if mine not in self._own:
                self._own[mine] = self._resolve(importer, target, importer)
            found = self._own[mine]
        return (found[0], list(found[1])) if found is not None else None

    def _resolve(
        self, importer: Path, target: str, excluded: Path | None
    ) -> tuple[Path, list[str]] | None:
        dots = len(target) - len(target.lstrip("."))
        parts = [p for p in target[dots:].split(".") if p]
        if not parts:
            return None
        for base in self._bases(importer, dots):
            if not dots and not self._holds(base, parts[0]):
                continue  # cheap rejection: ``torch.nn.Linear`` never reaches the loop below
            for size in range(len(parts), 0, -1):
                stem = base.joinpath(*parts[:size])
                for candidate in (stem.with_name(stem.name + ".py"), stem / "__init__.py"):
                    if self._is_file(candidate) and self._real(candidate) != excluded:
                        return self._real(candidate), parts[size:]
        return None

    def _bases(self, importer: Path, dots: int) -> list[Path]:
        """The folders an import with ``dots`` leading dots is looked up in, from ``importer``'s
        folder (the same for every file of that folder: computed once)."""
        key = (importer.parent, dots)
        if key not in self._base_folders:
            root = self.root_of(importer)
            if dots:
                base = importer.parent
                for _ in range(dots - 1):
                    base = base.parent
                bases = [base]
            else:
                bases = [importer.parent]
                bases += [p for p in importer.parent.parents if p == root or root in p.parents]
                bases.append(root / "src")
            self._base_folders[key] = [b for b in bases if b == root or root in b.parents]
        return self._base_folders[key]

    def _holds(self, base: Path, name: str) -> bool:
        """Whether ``base`` has a package or module ``name``."""
        key = (base, name)
        if key not in self._top_names:
            self._top_names[key] = self._is_dir(base / name) or self._is_file(base / f"{name}.py")
        return self._top_names[key]

    def _real(self, path: Path) -> Path:
        if path not in self._real_paths:
            self._real_paths[path] = path.resolve()
        return self._real_paths[path]

    def _is_dir(self, path: Path) -> bool:
        key = path / ""
        if key not in self._files:
            self._files[key] = path.is_dir()
        return self._files[key]
