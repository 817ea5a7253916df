"""Paths on the command line -> the files to analyze (gitignore, excludes, default skips)."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from trainlint import safeio

if TYPE_CHECKING:  # pathspec is imported only when a pattern has to be matched
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
    #: Things the run chose to skip or tolerate, one line each (printed as warnings).
    warnings: list[str] = field(default_factory=list)


#: Skipped even when a custom ``exclude`` replaces the defaults: never anyone's source.
ALWAYS_SKIPPED = frozenset({".git", ".hg", ".svn", ".trainlint_cache"})


def is_virtualenv(directory: Path) -> bool:
    """Any virtualenv, whatever its name (``python -m venv`` and virtualenv write pyvenv.cfg)."""
    try:
        return (directory / "pyvenv.cfg").is_file()
    except OSError:  # unreadable directory: the walk reports it when it tries to list it
        return False


def _stat(path: Path, follow: bool = True) -> os.stat_result | OSError:
    try:
        return path.stat() if follow else path.lstat()
    except OSError as exc:
        return exc


#: A .gitignore bigger than this is not one (and must not be read without bound).
MAX_GITIGNORE_BYTES = 10_000_000


def gitignore_spec(lines: Iterable[str], where: str, warnings: list[str]) -> pathspec.GitIgnoreSpec:
    """The spec of ``lines``; a line pathspec rejects is skipped with a warning, as git
    ignores such lines (``build\\``, ``!``, ``[z-a]``)."""
    import pathspec

    good: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            pathspec.GitIgnoreSpec.from_lines([line])
        except (ValueError, TypeError, IndexError, re.error) as exc:
            warnings.append(f"{where}:{number}: ignoring invalid pattern {line!r} ({exc})")
            continue
        good.append(line)
    return pathspec.GitIgnoreSpec.from_lines(good)


class _Ignorer:
    def __init__(
        self,
        root: Path,
        excludes: Iterable[str],
        respect_gitignore: bool,
        warnings: list[str] | None = None,
    ) -> None:
        self.root = root
        self.warnings = warnings if warnings is not None else []
        self._exclude_lines = list(excludes)
        self.respect_gitignore = respect_gitignore
        self._gitignores: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    @cached_property
    def excludes(self) -> pathspec.GitIgnoreSpec:
        """Compiled when first matched: a file named on the command line never needs it."""
        return gitignore_spec(self._exclude_lines, "exclude", self.warnings)

    def _gitignore(self, directory: Path) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._gitignores:
            spec = None
            candidate = directory / ".gitignore"
            if self.respect_gitignore:
                try:
                    raw = safeio.read_regular(candidate, MAX_GITIGNORE_BYTES)
                    lines = raw.decode("utf-8", errors="replace").splitlines()
                    spec = gitignore_spec(lines, str(candidate), self.warnings)
                except OSError:  # none, unreadable, a FIFO...: no patterns from it
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
        if not isinstance(_stat(directory / ".git", follow=False), OSError):
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
    ignorer = _Ignorer(
        root.absolute(), [*exclude, *extend_exclude], respect_gitignore, found.warnings
    )
    suffixes = (".py", ".pyi", ".ipynb") if include_notebooks else (".py", ".pyi")

    def add(path: Path) -> None:
        # A file reached twice (overlapping paths, a symlink to a file already seen) runs once.
        key = Path(os.path.realpath(path) if path.is_symlink() else os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            found.files.append(path)

    for given in paths:
        info = _stat(given)
        if isinstance(info, OSError):
            link = _stat(given, follow=False)
            if isinstance(link, OSError):
                found.errors.append((given, _path_error(link)))
                continue
            info = link  # a broken link or a loop: reading it says which
        if stat.S_ISDIR(info.st_mode):
            before = len(found.errors)
            for file in _walk(given.absolute(), ignorer, suffixes, found):
                add(_relative_like(file, given))
            found.errors[before:] = [
                (_relative_like(path, given), reason) for path, reason in found.errors[before:]
            ]
        elif stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
            if not (force_exclude and ignorer.force_excluded(given.absolute())):
                add(given)  # named explicitly: analyzed whatever its name (as ruff does)
        else:
            kind = safeio.file_kind(info.st_mode)
            found.errors.append((given, f"{kind}, not a regular file or directory; not read"))
    return found


def _path_error(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "no such file or directory"
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long for this system (PATH_MAX/NAME_MAX)"
    if exc.errno == errno.EACCES:
        return "permission denied (a directory on the way is unreadable)"
    return f"cannot access: {exc.strerror or exc}"


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

    inside = [_real(top), _real(ignorer.root)]

    def walk(directory: Path, gitignore_dirs: list[Path]) -> Iterator[Path]:
        try:
            info = directory.stat()
        except OSError as exc:
            found.errors.append((directory, f"cannot read directory: {exc.strerror}"))
            return
        identity = (info.st_dev, info.st_ino)
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
                if entry.name in ALWAYS_SKIPPED or is_virtualenv(path):
                    continue
                if entry.is_symlink() and not _within(_real(path), inside):
                    # `data -> /datasets` may hold millions of files: not part of the project
                    found.warnings.append(
                        f"{_from_cwd(path)}: not following a directory link that leaves the "
                        f"project (-> {os.readlink(path)}); name it on the command line to "
                        "analyze it"
                    )
                    continue
                yield from walk(path, dirs)
            elif entry.name.endswith(suffixes):
                if _regular_or_link(entry):
                    yield path
                else:
                    kind = safeio.file_kind(entry.stat(follow_symlinks=False).st_mode)
                    found.errors.append((path, f"{kind}, not a regular file; not read"))

    yield from walk(top, outer_gitignore_dirs)


def _regular_or_link(entry: os.DirEntry[str]) -> bool:
    """Regular files and symlinks (reading a broken or looping link reports it); never a FIFO,
    socket or device, which must not even be opened by the walk."""
    try:
        return entry.is_symlink() or entry.is_file(follow_symlinks=False)
    except OSError:
        return True  # vanished meanwhile: reading it says so


def _real(path: Path) -> Path:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _from_cwd(path: Path) -> str:
    """How a warning names ``path``: relative to the cwd when it is below it."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except (ValueError, OSError):
        return str(path)
