"""Results cache: one small JSON file per key (content, file kind, trainlint version, code,
config, rules, Python and libcst versions).

Writes are atomic (temp file + rename), so concurrent runs never see half an entry and the last
writer of a key simply wins with an equally valid entry. A damaged, truncated or foreign entry
is ignored and recomputed, never trusted: each entry carries a checksum of its contents, and
the engine checks its positions against the file (:mod:`trainlint.cache_entries`). Any I/O
problem (read-only or full disk, a file where the directory should be) only means "no cache":
it never fails the run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trainlint
from trainlint import safeio

#: Bump when the entry layout changes, so old entries stop matching.
CACHE_FORMAT = 3

#: A cache entry is a few kB; anything far bigger is not one of ours.
MAX_ENTRY_BYTES = 50_000_000

_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# trainlint results cache\n"


@functools.cache
def environment() -> tuple[str, ...]:
    """What results depend on outside trainlint: the interpreter and the parser.

    A syntax error cached under libcst 1.1 must not be served after an upgrade to a libcst
    that parses the file.
    """
    try:
        libcst = importlib.metadata.version("libcst")
    except importlib.metadata.PackageNotFoundError:
        libcst = "unknown"
    return (sys.version, sys.implementation.cache_tag or "", libcst)


def fingerprint(*parts: object) -> str:
    """A digest of trainlint's version, the cache format, the interpreter and parser versions
    and ``parts`` (config, rule codes)."""
    digest = hashlib.sha256()
    for part in (trainlint.__version__, CACHE_FORMAT, environment(), *parts):
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def code_fingerprint(module_names: Iterable[str]) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of trainlint's own sources and of the given modules' files.

    An edited rule or model module (an editable install, a rule pack under development) then
    changes every key, so a stale result can never be served. Costs a few dozen ``stat`` calls.
    """
    files: set[str] = set()
    package = Path(trainlint.__file__).resolve().parent
    files.update(str(p) for p in package.rglob("*.py"))
    for name in module_names:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:
            files.add(str(Path(file).resolve()))
    stamps = []
    for file in sorted(files):
        try:
            stat = os.stat(file)
        except OSError:
            continue
        stamps.append((file, stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def entry_key(content: bytes, run_fingerprint: str, kind: str = "py") -> str:
    """``kind`` (``py``, ``ipynb``): a .py file byte-identical to a notebook is another file."""
    head = f"{run_fingerprint}\0{kind}\0".encode()
    return hashlib.sha256(head + content).hexdigest()


def _checksum(entry: object) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def unusable_reason(directory: Path) -> str | None:
    """Why ``directory`` must not hold the cache (None: it may).

    An existing directory is used only when it is empty or already a trainlint cache (it has
    our ``CACHEDIR.TAG``): entries are never scattered into a project or home directory.
    """
    text = str(directory)
    if not text.strip():
        return "is empty"
    if "\0" in text:
        return "contains a NUL byte"
    try:
        if not directory.exists():
            return None
        if not directory.is_dir():
            return "exists and is not a directory"
        tag = directory / "CACHEDIR.TAG"
        if tag.is_file() and safeio.read_regular(tag, 4096).decode("utf-8", "replace") == _TAG:
            return None
        if next(directory.iterdir(), None) is None:
            return None
    except OSError as exc:
        return f"cannot be used: {exc.strerror or exc}"
    return "is an existing directory that is not a trainlint cache (no CACHEDIR.TAG)"


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._prepared = False

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key[2:]}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The results entry stored under ``key``; None when missing, unreadable or not ours."""
        data = self.get_record(key)
        if data is None or not isinstance(data.get("findings"), list):
            return None
        return data

    def get_record(self, key: str) -> dict[str, Any] | None:
        """Any record stored under ``key`` (a results entry, a module summary)."""
        try:
            # Only a regular file of sane size: a FIFO or a link to /dev/zero planted as an
            # entry must neither hang nor exhaust memory.
            stored = json.loads(safeio.read_regular(self._path(key), MAX_ENTRY_BYTES))
            data = stored["entry"]
            if stored["sum"] != _checksum(data):  # damaged, or edited by hand
                return None
        except (OSError, ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return data

    def _prepare(self) -> None:
        """Create the directory, marked so that backup tools and git leave it alone.

        The marks go only into a directory trainlint creates here: ``cache-dir = "."`` must
        never overwrite the project's own ``.gitignore``.
        """
        try:
            self.directory.mkdir(parents=True)
        except FileExistsError:
            self._prepared = True
            if next(self.directory.iterdir(), None) is not None:
                return  # ours already (tagged), or not ours: write no marks either way
        # The tag first: a concurrent run that sees the directory non-empty also sees the tag.
        (self.directory / "CACHEDIR.TAG").write_text(_TAG)
        (self.directory / ".gitignore").write_text("*\n")
        self._prepared = True

    def put(self, key: str, data: dict[str, Any]) -> None:
        path = self._path(key)
        temp = None
        try:
            if not self._prepared:
                self._prepare()
            path.parent.mkdir(exist_ok=True)
            import tempfile  # only when writing: a warm run never does

            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            entry = {**data, "key": key}
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"sum": _checksum(entry), "entry": entry}, handle, separators=(",", ":"))
            os.replace(temp, path)
            temp = None
        except (OSError, TypeError, ValueError):
            pass  # a read-only or full disk must not fail the lint run
        finally:
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
