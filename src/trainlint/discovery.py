"""Paths on the command line -> the files to analyze (gitignore, excludes, default skips)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

DEFAULT_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".env",
    "env",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".trainlint_cache",
    "__pycache__",
    "__pypackages__",
    "build",
    "dist",
    "site-packages",
    "node_modules",
    ".eggs",
    "*.egg-info",
    ".ipynb_checkpoints",
)


@dataclass
class Discovery:
    """Which files a run analyzes, plus the paths that could not be used (with the reason)."""

    files: list[Path] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)


#: Skipped even when a custom ``exclude`` replaces the defaults: never anyone's source.
ALWAYS_SKIPPED = frozenset({".git", ".hg", ".svn", ".trainlint_cache"})


def _is_virtualenv(directory: Path) -> bool:
    """Any virtualenv, whatever its name (``python -m venv`` and virtualenv write pyvenv.cfg)."""
    return (directory / "pyvenv.cfg").is_file()


class _Ignorer:
    def __init__(self, root: Path, excludes: Iterable[str], respect_gitignore: bool) -> None:
        self.root = root
        self.excludes = pathspec.GitIgnoreSpec.from_lines(excludes)
        self.respect_gitignore = respect_gitignore
        self._gitignores: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _gitignore(self, directory: Path) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._gitignores:
            spec = None
            candidate = directory / ".gitignore"
            if self.respect_gitignore and candidate.is_file():
                try:
                    lines = candidate.read_text("utf-8", errors="replace").splitlines()
                    spec = pathspec.GitIgnoreSpec.from_lines(lines)
                except OSError:
                    spec = None
            self._gitignores[directory] = spec
        return self._gitignores[directory]

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix().lstrip("/")

    def force_excluded(self, path: Path) -> bool:
        """``--force-exclude``: the path or one of its directories matches an exclude."""
        relative = Path(self._relative(path))
        for candidate in (relative, *(p for p in relative.parents if p != Path("."))):
            suffix = "" if candidate == relative else "/"
            for form in (candidate.as_posix(), candidate.name):
                if _verdict(self.excludes, form + suffix):
                    return True
        return False

    def excluded(self, path: Path, is_dir: bool, gitignore_dirs: list[Path]) -> bool:
        """Whether ``path`` itself is excluded (its parents were checked when walked into)."""
        suffix = "/" if is_dir else ""
        relative = self._relative(path)
        if _verdict(self.excludes, relative + suffix) or _verdict(
            self.excludes, path.name + suffix
        ):
            return True
        ignored = None
        for directory in gitignore_dirs:  # outermost first: a deeper .gitignore has the last word
            spec = self._gitignore(directory)
            if spec is not None:
                verdict = _verdict(spec, path.relative_to(directory).as_posix() + suffix)
                ignored = ignored if verdict is None else verdict
        return bool(ignored)


def _verdict(spec: pathspec.PathSpec, path: str) -> bool | None:
    """True/False when the last pattern matching ``path`` itself excludes/re-includes it.

    Only matches of the path itself count, not of a parent directory: the walk has already
    pruned excluded directories, so a parent can only match when the user named that directory
    on the command line, and then its contents are wanted (as in ruff).
    """
    verdict = None
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        if pattern.include is None or regex is None:
            continue
        match = regex.match(path)
        if match is None:
            continue
        through = match.groupdict().get("ps_d")  # the "/" after a matching parent directory
        if through is not None and match.end("ps_d") != len(path):
            continue
        verdict = bool(pattern.include)
    return verdict


def _git_root(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def discover(
    paths: Iterable[Path],
    *,
    root: Path,
    exclude: Iterable[str] = DEFAULT_EXCLUDES,
    extend_exclude: Iterable[str] = (),
    include_notebooks: bool = False,
    respect_gitignore: bool = True,
    force_exclude: bool = False,
) -> Discovery:
    """The files under ``paths``. Files named explicitly are analyzed even when excluded,
    unless ``force_exclude`` (what a pre-commit hook wants: it names every changed file)."""
    found = Discovery()
    seen: set[Path] = set()
    ignorer = _Ignorer(root.absolute(), [*exclude, *extend_exclude], respect_gitignore)
    suffixes = (".py", ".pyi", ".ipynb") if include_notebooks else (".py", ".pyi")

    def add(path: Path) -> None:
        # A file reached twice (overlapping paths, a symlink to a file already seen) runs once.
        key = Path(os.path.realpath(path) if path.is_symlink() else os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            found.files.append(path)

    for given in paths:
        if not given.exists() and not given.is_symlink():
            found.errors.append((given, "no such file or directory"))
            continue
        if given.is_dir():
            for file in _walk(given.absolute(), ignorer, suffixes, found):
                add(_relative_like(file, given))
        elif given.is_file() or given.is_symlink():
            if not (force_exclude and ignorer.force_excluded(given.absolute())):
                add(given)  # named explicitly: analyzed whatever its name (as ruff does)
        else:
            found.errors.append((given, "not a regular file or directory"))
    return found


def _relative_like(file: Path, given: Path) -> Path:
    """Keep the spelling the user gave (relative stays relative)."""
    if given.is_absolute():
        return file
    try:
        return given / file.relative_to(given.absolute())
    except ValueError:
        return file


def _walk(
    top: Path, ignorer: _Ignorer, suffixes: tuple[str, ...], found: Discovery
) -> Iterator[Path]:
    # The .gitignore files of the directories above ``top`` apply too, up to the repository
    # root (or, outside a repository, the config's directory).
    base = _git_root(top) or (ignorer.root if ignorer.root in top.parents else top)
    above = [p for p in top.parents if p == base or base in p.parents]
    outer_gitignore_dirs = list(reversed(above))
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path, gitignore_dirs: list[Path]) -> Iterator[Path]:
        try:
            stat = directory.stat()
        except OSError as exc:
            found.errors.append((directory, f"cannot read directory: {exc.strerror}"))
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity in visited:
            return  # a symlink loop, or a directory reached twice
        visited.add(identity)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            found.errors.append((directory, f"cannot read directory: {exc.strerror}"))
            return
        dirs = gitignore_dirs + [directory] if directory not in gitignore_dirs else gitignore_dirs
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if ignorer.excluded(path, is_dir, dirs):
                continue
            if is_dir:
                if entry.name in ALWAYS_SKIPPED or _is_virtualenv(path):
                    continue
                yield from walk(path, dirs)
            elif entry.name.endswith(suffixes):
                yield path

    yield from walk(top, outer_gitignore_dirs)
