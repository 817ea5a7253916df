"""Callers of a function in the project's other modules (the reverse of :mod:`.project`).

Summaries let a file see its callees; the mode analysis sometimes needs its callers in other
files (``model.eval(); validate(model, loader)`` in ``train.py``, ``validate`` in
``engine.py``). Asked rarely (see :mod:`trainlint.model.summaries.callers`), so kept cheap:

1. once per run, an *import index* of the project: every ``.py`` file under the root (default
   excludes skipped) is read and only its import lines are matched by regular expressions,
   giving the imported names of each file (``validate``, ``engine``);
2. the candidates for ``engine.validate`` are the files importing ``validate`` or ``engine``;
   each is modelled (without a project index, so its record depends on its own text only) and
   the calls whose import path resolves to ``engine.py``'s ``validate`` are read
   (:func:`~trainlint.model.summaries.callers.records_in`);
3. the records are cached by the caller's content hash, and every candidate is recorded as a
   dependency of the analyzed file (``callers:validate(model,loader)``), so editing a caller
   invalidates the analyzed file's cached result (:func:`caller_digest`). A file that starts
   importing the function later is not seen by a warm run until the analyzed file changes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from trainlint import sources
from trainlint.cache import code_fingerprint, fingerprint
from trainlint.discovery import DEFAULT_EXCLUDES, is_virtualenv
from trainlint.model.summaries.callers import CallerRecord
from trainlint.project_outline import mentions

if TYPE_CHECKING:
    from trainlint.project import ProjectIndex, ProjectView

#: The dependency name prefix: ``callers:<function>(<params>)``.
CALLERS = "callers:"
#: A project larger than this is not scanned (the question is a refinement, not a must).
MAX_FILES = 4000
_FROM = re.compile(rb"^[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)
_IMPORT = re.compile(rb"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
_WORD = re.compile(rb"[A-Za-z_]\w*")


class _State:
    """What one run knows about a project root: its files' imported names."""

    def __init__(self) -> None:
        self.imports: dict[Path, dict[str, set[Path]]] = {}  # root -> name -> importing files
        self.records: dict[tuple[Path, Path, str, tuple[str, ...]], list[CallerRecord] | None]
        self.records = {}
        self.salt: str | None = None


_STATES: weakref.WeakKeyDictionary[ProjectIndex, _State] = weakref.WeakKeyDictionary()


def _state(index: ProjectIndex) -> _State:
    state = _STATES.get(index)
    if state is None:
        state = _STATES[index] = _State()
    return state


def callers_of(view: ProjectView, name: str, params: tuple[str, ...]) -> list[CallerRecord]:
    """The calls of ``name`` (a top-level function of the viewed file) in other modules of
    its project, each candidate recorded as a dependency of the viewed file."""
    index = view.index
    defining = view.importer
    found: list[CallerRecord] = []
    for path in sorted(_candidates(index, defining, name)):
        records = _records(index, path, defining, name, params)
        relative = os.path.relpath(path, defining.parent)
        view.used[(relative, _dependency(name, params))] = _digest(records)
        found.extend(records or ())
    return found


def caller_digest(index: ProjectIndex, path: Path, importer: Path, dependency: str) -> str:
    """The digest of the records ``path`` holds now for a ``callers:`` dependency of
    ``importer`` (what :meth:`ProjectIndex.deps_valid` compares)."""
    name, _, rest = dependency[len(CALLERS) :].partition("(")
    params = tuple(p for p in rest.rstrip(")").split(",") if p)
    return _digest(_records(index, path, importer.resolve(), name, params))


def _dependency(name: str, params: tuple[str, ...]) -> str:
    return f"{CALLERS}{name}({','.join(params)})"


def _digest(records: list[CallerRecord] | None) -> str:
    data = None if records is None else [r.to_json() for r in records]
    text = json.dumps(data, sort_keys=True)
    return "callers:" + hashlib.sha256(text.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------- candidates
def _candidates(index: ProjectIndex, defining: Path, name: str) -> set[Path]:
    root = index.root_of(defining)
    imports = _import_index(index, root)
    module = defining.parent.name if defining.name == "__init__.py" else defining.stem
    found = imports.get(name, set()) | imports.get(module, set())
    return {p for p in found if p != defining}


def _import_index(index: ProjectIndex, root: Path) -> dict[str, set[Path]]:
    state = _state(index)
    if root not in state.imports:
        names: dict[str, set[Path]] = {}
        for path in _python_files(root):
            for word in _imported_words(path, index.max_file_size):
                names.setdefault(word, set()).add(path)
        state.imports[root] = names
    return state.imports[root]


def _python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not any(fnmatch.fnmatch(d, pattern) for pattern in DEFAULT_EXCLUDES)
            and not is_virtualenv(Path(folder, d))
        )
        for file in sorted(files):
            if file.endswith(".py"):
                found.append(Path(folder, file).resolve())
                if len(found) > MAX_FILES:
                    return []
    return found


def _imported_words(path: Path, max_bytes: int) -> set[str]:
    """The names a file's import lines mention (``from a.engine import validate as v``:
    ``a``, ``engine``, ``validate``, ``v``): a superset, filtered by resolution later."""
    try:
        raw = sources.read_bytes(path, max_bytes)
    except (sources.SourceError, sources.SkippedFile, OSError):
        return set()
    words: set[str] = set()
    for match in _FROM.finditer(raw):
        words.update(w.decode() for w in _WORD.findall(match.group(1) + b" " + match.group(2)))
    for match in _IMPORT.finditer(raw):
        words.update(w.decode() for w in _WORD.findall(match.group(1)))
    return words


# ---------------------------------------------------------------------- records
def _records(
    index: ProjectIndex, path: Path, defining: Path, name: str, params: tuple[str, ...]
) -> list[CallerRecord] | None:
    """The calls of ``defining``'s ``name`` in ``path`` (None: ``path`` is unreadable)."""
    state = _state(index)
    key = (path, defining, name, params)
    if key not in state.records:
        state.records[key] = _cached_or_read(index, state, path, defining, name, params)
    return state.records[key]


def _cached_or_read(
    index: ProjectIndex,
    state: _State,
    path: Path,
    defining: Path,
    name: str,
    params: tuple[str, ...],
) -> list[CallerRecord] | None:
    module = index.module(path)
    if module is None:
        return None
    cache = index.cache
    key = ""
    if cache is not None:
        if state.salt is None:
            state.salt = fingerprint("callers", code_fingerprint(()))
        where = os.path.relpath(defining, path.parent)
        text = f"{state.salt}\0{module.digest}\0{where}\0{name}\0{','.join(params)}"
        key = hashlib.sha256(text.encode()).hexdigest()
        record = cache.get_record(key)
        if record is not None and isinstance(record.get("callers"), list):
            loaded = [CallerRecord.from_json(r) for r in record["callers"]]
            if all(r is not None for r in loaded):
                return [r for r in loaded if r is not None]
    records = _read(index, path, module.text or "", defining, name, params)
    if cache is not None:
        cache.put(key, {"callers": [r.to_json() for r in records]})
    return records


def _read(
    index: ProjectIndex,
    path: Path,
    text: str,
    defining: Path,
    name: str,
    params: tuple[str, ...],
) -> list[CallerRecord]:
    if not mentions(text, name):
        return []
    from trainlint.model import TrainingModel
    from trainlint.model.summaries.callers import records_in

    def calls_it(target: str) -> bool:
        return index.resolve(path, target) == (defining, [name])

    try:
        # The module's whole tree when the index has one (kept from its analysis here, or
        # parsed once for it and its analysis: ``ProjectIndex.tree_for``); the same tree.
        module = index.module(path)
        tree = index.tree_for(module) if module is not None and module.text == text else None
        if tree is not None:
            model = TrainingModel(tree, path, text)
        else:
            model = TrainingModel.from_source(text, path)
    except Exception:  # a module we cannot parse calls nothing we can read
        return []
    try:
        return records_in(model, calls_it, params)
    except Exception:  # nor one we cannot model
        return []
    finally:
        model.release()
