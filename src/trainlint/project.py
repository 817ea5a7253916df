"""The project index: summaries of the project's other modules, and import resolution.

Lazy by design (parsing every module up front doubled a cold run): nothing is read until the
model of an analyzed file asks about a name it imports (``meter = AverageMeter()`` with
``from utils import AverageMeter``, then ``meter.update(loss)``). Then:

1. the import is resolved inside the project root: relative imports from the importing file's
   package, absolute ones from the importing file's folder, its parents up to the root, and
   ``<root>/src``; nothing outside the root (installed libraries stay libraries);
2. the module is read and the word prefilter applied: a module that does not define or import
   the name is never parsed;
3. only what the definition needs is parsed: ``ast`` (a C parser, far cheaper than libcst) finds
   the top-level statements it reads (its own block, the module's imports, the module-level
   names it references, transitively), and only those are parsed with libcst and modelled;
4. the summary is kept in memory for the run and in the cache directory, keyed by the module's
   content hash and the name, so a warm run never parses another module again.

Each analyzed file reads the index through a :class:`ProjectView`, which records the digest of
every summary the file used: the file's cache entry is valid only while they are unchanged
(:meth:`ProjectIndex.deps_valid`).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainlint import sources
from trainlint.cache import Cache, code_fingerprint, fingerprint
from trainlint.callers import CALLERS, CallerRecord, caller_digest, callers_of
from trainlint.model.summaries.types import (
    ClassSummary,
    Definition,
    Reexport,
    digest,
    from_json,
    to_json,
)

_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
#: Re-exports followed (``utils/__init__.py`` -> ``utils/meters.py``) before giving up.
_MAX_HOPS = 4
_IMPORT_NODES = (ast.Import, ast.ImportFrom)


def project_index(options: Any) -> ProjectIndex | None:
    """The index for a run with ``options`` (engine RunOptions); None with ``--no-summaries``."""
    if not getattr(options, "summaries", True):
        return None
    cache = Cache(options.cache_dir) if options.cache_dir else None
    return ProjectIndex(cache, options.max_file_size)


def deps_valid(index: ProjectIndex | None, importer: Path, deps: Any) -> bool:
    """Whether a cached result's summaries are unchanged (always false without an index:
    the entry was made with summaries, this run has none)."""
    return index is not None and index.deps_valid(importer, deps)


def find_root(path: Path) -> Path:
    """The project root of ``path``: the nearest folder holding a project marker, else the
    file's own folder."""
    start = path.resolve().parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return start


@dataclass
class _Module:
    """One module file as read in this run."""

    path: Path
    digest: str  # content hash
    text: str | None
    definitions: dict[str, Definition | None] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # name -> digest of its summary
    kinds: dict[str, str | None] = field(default_factory=dict)  # name -> :meth:`kind`
    tree: ast.Module | None = None


class ProjectIndex:
    """Summaries of project modules, shared by the files of one run (in one process)."""

    def __init__(self, cache: Cache | None = None, max_file_size: int = 0) -> None:
        self.cache = cache
        self.max_file_size = max_file_size or sources.DEFAULT_MAX_BYTES
        self._modules: dict[Path, _Module | None] = {}
        self._roots: dict[Path, Path] = {}
        self._files: dict[Path, bool] = {}
        self._resolved: dict[tuple[Path, str], tuple[Path, list[str]] | None] = {}
        self._salt: str | None = None
        #: Statistics for tests and the bench: modules read, definitions parsed.
        self.read = 0
        self.parsed = 0

    def view(self, importer: Path) -> ProjectView:
        return ProjectView(self, importer.resolve())

    # ------------------------------------------------------------------ resolution
    def root_of(self, importer: Path) -> Path:
        folder = importer.parent
        if folder not in self._roots:
            self._roots[folder] = find_root(importer)
        return self._roots[folder]

    def _is_file(self, path: Path) -> bool:
        if path not in self._files:
            self._files[path] = path.is_file()
        return self._files[path]

    def resolve(self, importer: Path, target: str) -> tuple[Path, list[str]] | None:
        """The module file ``target`` names and the rest of the name inside it:
        ``.utils.AverageMeter`` from ``pkg/train.py`` -> (``pkg/utils.py``, [``AverageMeter``])."""
        key = (importer, target)
        if key not in self._resolved:
            self._resolved[key] = self._resolve(importer, target)
        found = self._resolved[key]
        return (found[0], list(found[1])) if found is not None else None

    def _resolve(self, importer: Path, target: str) -> tuple[Path, list[str]] | None:
        dots = len(target) - len(target.lstrip("."))
        parts = [p for p in target[dots:].split(".") if p]
        if not parts:
            return None
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
        for base in bases:
            if base != root and root not in base.parents:
                continue
            if not dots and not (
                self._is_dir(base / parts[0]) or self._is_file(base / f"{parts[0]}.py")
            ):
                continue  # cheap rejection: ``torch.nn.Linear`` never reaches the loop below
            for size in range(len(parts), 0, -1):
                stem = base.joinpath(*parts[:size])
                for candidate in (stem.with_name(stem.name + ".py"), stem / "__init__.py"):
                    if self._is_file(candidate) and candidate.resolve() != importer:
                        return candidate.resolve(), parts[size:]
        return None

    def _is_dir(self, path: Path) -> bool:
        key = path / ""
        if key not in self._files:
            self._files[key] = path.is_dir()
        return self._files[key]

    # ------------------------------------------------------------------ modules
    def module(self, path: Path) -> _Module | None:
        if path not in self._modules:
            self._modules[path] = self._read(path)
        return self._modules[path]

    def _read(self, path: Path) -> _Module | None:
        try:
            raw = sources.read_bytes(path, self.max_file_size)
            text = sources.from_bytes(path, raw, self.max_file_size).text
        except (sources.SourceError, sources.SkippedFile):
            return None
        self.read += 1
        return _Module(path, hashlib.sha256(raw).hexdigest(), text)

    def definition(self, path: Path, name: str) -> Definition | None:
        """The summary of top-level ``name`` in module ``path`` (None when it has none)."""
        module = self.module(path)
        if module is None:
            return None
        if name not in module.definitions:
            module.definitions[name] = self._cached_or_built(module, name)
        return module.definitions[name]

    def digest_of(self, path: Path, name: str, kind_only: bool = False) -> str | None:
        """The digest of ``name``'s summary in ``path`` as it is on disk now (None: unreadable);
        with ``kind_only``, only what kind of definition it is (``kind:function``)."""
        if self.module(path) is None:
            return None
        if kind_only:
            return f"kind:{self.kind(path, name)}"
        return self.digest(path, name)

    def digest(self, path: Path, name: str) -> str:
        """The digest of :meth:`definition` (hashed once per run: every importer records it)."""
        module = self.module(path)
        if module is None:
            return digest(None)
        if name not in module.digests:
            module.digests[name] = digest(self.definition(path, name))
        return module.digests[name]

    def tree(self, module: _Module) -> ast.Module | None:
        if module.tree is None and module.text is not None:
            try:
                module.tree = ast.parse(module.text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                module.text = None  # unparsable: no summaries
        return module.tree

    def kind(self, path: Path, name: str) -> str | None:
        """``class``, ``function``, ``import`` (a re-export) or None, from ``ast`` alone."""
        module = self.module(path)
        if module is None:
            return None
        if name not in module.kinds:
            module.kinds[name] = self._kind(module, name)
        return module.kinds[name]

    def _kind(self, module: _Module, name: str) -> str | None:
        tree = self.tree(module)
        if tree is None or not re.search(rf"\b{re.escape(name)}\b", module.text or ""):
            return None
        found = None
        for statement in tree.body:
            if isinstance(statement, ast.ClassDef) and statement.name == name:
                found = found or "class"
            elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found = found or ("function" if statement.name == name else None)
            elif isinstance(statement, _IMPORT_NODES) or _holds_imports(statement):
                found = found or ("import" if name in _bound_names(statement) else None)
        return found

    def _cache_key(self, module: _Module, name: str) -> str:
        if self._salt is None:
            self._salt = fingerprint("summaries", code_fingerprint(()))
        return hashlib.sha256(f"{self._salt}\0{module.digest}\0{name}".encode()).hexdigest()

    def _cached_or_built(self, module: _Module, name: str) -> Definition | None:
        key = self._cache_key(module, name) if self.cache is not None else ""
        if self.cache is not None:
            record = self.cache.get_record(key)
            if record is not None and "summary" in record:
                summary = record["summary"]
                return from_json(summary) if summary is not None else None
        built = self._build(module, name)
        if self.cache is not None:
            self.cache.put(key, {"summary": to_json(built)})
        return built

    def _build(self, module: _Module, name: str) -> Definition | None:
        text = module.text or ""
        if not re.search(rf"\b{re.escape(name)}\b", text):
            return None  # the word prefilter: not defined or imported here, nothing to parse
        tree = self.tree(module)
        if tree is None:
            return None
        excerpt = _excerpt(tree, text, name)
        if excerpt is None:
            return None
        from trainlint.model import TrainingModel
        from trainlint.model.summaries.build import summarize

        try:
            model = TrainingModel.from_source(excerpt, module.path)
            self.parsed += 1
            return summarize(model, name)
        except Exception:  # a module we cannot model is a module without a summary
            return None

    # ------------------------------------------------------------------ cache validity
    def deps_valid(self, importer: Path, deps: Any) -> bool:
        """Whether every summary a cached result of ``importer`` used is still the same."""
        if not isinstance(deps, list):
            return False
        folder = importer.resolve().parent
        for item in deps:
            if not isinstance(item, list) or len(item) != 3:
                return False
            if not all(isinstance(x, str) for x in item):
                return False
            relative, name, expected = item
            path = (folder / relative).resolve()
            if name.startswith(CALLERS):  # a caller in another module (trainlint.callers)
                if caller_digest(self, path, importer, name) != expected:
                    return False
                continue
            if self.digest_of(path, name, expected.startswith("kind:")) != expected:
                return False
        return True


def _excerpt(tree: ast.Module, text: str, name: str) -> str | None:
    """The source of the top-level statements ``name`` needs: its definition, the module's
    imports, and the module-level definitions it references (transitively)."""
    defines: dict[str, ast.stmt] = {}
    imports: list[ast.stmt] = []
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defines.setdefault(statement.name, statement)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        defines.setdefault(node.id, statement)
        elif isinstance(statement, _IMPORT_NODES) or _holds_imports(statement):
            imports.append(statement)
    if name not in defines:
        if any(name in _bound_names(s) for s in imports):
            return _source(text, imports)  # a re-export: the imports say where it comes from
        return None
    target = defines[name]
    wanted: dict[int, ast.stmt] = {}
    stack = [target]
    while stack:
        statement = stack.pop()
        if id(statement) in wanted:
            continue
        wanted[id(statement)] = statement
        if isinstance(statement, ast.ClassDef) and statement is not target:
            nodes: list[ast.AST] = [*statement.bases, *statement.keywords]  # its header only
            nodes = [n for base in nodes for n in ast.walk(base)]
        else:
            nodes = list(ast.walk(statement))
        stack.extend(defines[n.id] for n in nodes if isinstance(n, ast.Name) and n.id in defines)
    chosen = sorted([*imports, *wanted.values()], key=lambda s: s.lineno)
    return _source(text, chosen, target)


def _holds_imports(statement: ast.stmt) -> bool:
    """``try: import apex`` / ``if TYPE_CHECKING: from x import y`` at module level."""
    if not isinstance(statement, (ast.Try, ast.If)):
        return False
    return any(isinstance(node, _IMPORT_NODES) for node in ast.walk(statement))


def _bound_names(statement: ast.stmt) -> set[str]:
    found = set()
    for node in ast.walk(statement):
        if isinstance(node, _IMPORT_NODES):
            for alias in node.names:
                found.add((alias.asname or alias.name).split(".", 1)[0])
    return found


def _source(text: str, statements: list[ast.stmt], target: ast.stmt | None = None) -> str:
    """The statements' lines, with every other line blanked, so line numbers stay those of
    the module (summaries report where a return's value was made); a class other than
    ``target`` by its header only (its bases tell what it is; its methods are summarized when
    asked for, as its own definition)."""
    lines = text.splitlines(keepends=True)
    pieces = []
    written = 0
    for statement in statements:
        first = min([statement.lineno, *(d.lineno for d in _decorators(statement))])
        last = statement.end_lineno or statement.lineno
        if first <= written:
            continue
        pieces.append("\n" * (first - 1 - written))
        header_only = (
            target is not None
            and statement is not target
            and isinstance(statement, ast.ClassDef)
            and statement.body[0].lineno > statement.lineno
        )
        if header_only:
            body = statement.body[0]
            start = min([body.lineno, *(d.lineno for d in _decorators(body))])
            header = "".join(lines[first - 1 : start - 1]).rstrip()
            if header.endswith(":"):
                pieces.append(header + "\n    pass\n")
                written = first + header.count("\n") + 1
                continue
        pieces.append("".join(lines[first - 1 : last]).rstrip() + "\n")
        written = last
    return "".join(pieces)


def _decorators(statement: ast.stmt) -> list[ast.expr]:
    return list(getattr(statement, "decorator_list", []))


class ProjectView:
    """The index as one analyzed file sees it; records the summaries the file used."""

    def __init__(self, index: ProjectIndex, importer: Path) -> None:
        self.index = index
        self.importer = importer
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
        for _ in range(_MAX_HOPS):
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
        if cls.is_module or depth >= _MAX_HOPS:
            return cls
        for base in cls.bases:
            found = self._lookup(base, True, path, depth + 1) if "." in base else None
            base_summary = found[0] if found is not None and not found[1] else None
            if isinstance(base_summary, ClassSummary) and base_summary.is_module:
                return replace(cls, is_module=True)
        return cls

    def _record(self, path: Path, name: str) -> None:
        relative = os.path.relpath(path, self.importer.parent)
        self.used[(relative, name)] = self.index.digest(path, name)

    def _record_kind(self, path: Path, name: str, kind: str | None) -> None:
        self.used.setdefault((os.path.relpath(path, self.importer.parent), name), f"kind:{kind}")

    def callers(self, name: str, params: tuple[str, ...]) -> list[CallerRecord]:
        """The calls of the viewed file's function ``name`` in other modules (recorded as
        dependencies): see :mod:`trainlint.callers`."""
        return callers_of(self, name, params)

    def deps(self) -> list[list[str]]:
        return [[path, name, value] for (path, name), value in sorted(self.used.items())]
