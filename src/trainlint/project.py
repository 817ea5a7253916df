"""The project index: summaries of the project's other modules, and import resolution.

Lazy by design (parsing every module up front doubled a cold run): nothing is read until the
model of an analyzed file asks about a name it imports (``meter = AverageMeter()`` with
``from utils import AverageMeter``, then ``meter.update(loss)``). Then:

1. the import is resolved inside the project root (:mod:`trainlint.project_resolve`): relative
   imports from the importing file's package, absolute ones from the importing file's folder,
   its parents up to the root, and ``<root>/src``; nothing outside the root;
2. the module is read and the word prefilter applied: a module that does not define or import
   the name is never parsed;
3. only what the definition needs is modelled: an outline made with ``ast`` (a C parser, far
   cheaper than libcst; :mod:`trainlint.project_outline`) finds the top-level statements it
   reads (its own block, the module's imports, the module-level names it references,
   transitively), and only those are parsed with libcst -- or, when the module is analyzed in
   this process too, cut from its whole tree, parsed once for both (:meth:`tree_for`,
   :mod:`trainlint.project_trees`);
4. the summary is kept in memory for the run and in the cache directory, keyed by the module's
   content hash and the name, so a warm run never parses another module again.

Each analyzed file reads the index through a :class:`~trainlint.project_view.ProjectView`
(lookups, re-exports, project bases), which records the digest of every summary the file used:
the file's cache entry is valid only while they are unchanged (:meth:`ProjectIndex.deps_valid`).
"""

from __future__ import annotations

import ast
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlint import limits, sources
from trainlint.cache import Cache, code_fingerprint, fingerprint
from trainlint.callers import CALLERS, caller_digest
from trainlint.model.summaries.types import ClassSummary, Definition, digest, from_json, to_json
from trainlint.project_methods import MODELS_KEPT, KeptModels, LazyMethods
from trainlint.project_outline import (
    Outline,
    Statement,
    excerpt,
    excerpt_text,
    excerpt_tree,
    mentions,
    outline,
    statement_lines,
    usable_for_trees,
)
from trainlint.project_resolve import ImportResolver
from trainlint.project_trees import TreeStore
from trainlint.project_view import ProjectView

if TYPE_CHECKING:
    import libcst as cst

    from trainlint.model import TrainingModel

#: Whole libcst trees kept for reuse, in characters of their source (the file being analyzed
#: included): a tree costs about 70 bytes of resident memory per character (measured on
#: diffusers' models), so about 56 MB. 400 000 dropped 17 of the 70 trees four real
#: repositories' excerpts needed (507 000 characters) before their last excerpt.
TREE_BUDGET = 800_000
#: Outlines that keep their module's ``ast`` statements, most recently used.
_AST_KEPT = 8


def project_index(options: Any, expected: set[Path] | None = None) -> ProjectIndex | None:
    """The index for a run with ``options`` (engine RunOptions); None with ``--no-summaries``.
    ``expected``: the files this process will analyze (see :meth:`ProjectIndex.tree_for`)."""
    if not getattr(options, "summaries", True):
        return None
    cache = Cache(options.cache_dir) if options.cache_dir else None
    # Without a cache nothing reads a result's dependencies: their digests are not computed.
    return ProjectIndex(cache, options.max_file_size, expected, digests=cache is not None)


def deps_valid(index: ProjectIndex | None, importer: Path, deps: Any) -> bool:
    """Whether a cached result's summaries are unchanged (always false without an index:
    the entry was made with summaries, this run has none)."""
    return index is not None and index.deps_valid(importer, deps)


@dataclass
class _Module:
    """One module file as read in this run."""

    path: Path
    digest: str  # content hash
    text: str | None
    definitions: dict[str, Definition | None] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)  # name -> digest of its summary
    kinds: dict[str, str | None] = field(default_factory=dict)  # name -> :meth:`kind`
    outline: Outline | None = None  # kept instead of the ``ast`` tree (a fraction of its size)
    mentions: dict[str, bool] = field(default_factory=dict)  # name -> in the text as a word


class ProjectIndex(ImportResolver):
    """Summaries of project modules, shared by the files of one run (in one process)."""

    def __init__(
        self,
        cache: Cache | None = None,
        max_file_size: int = 0,
        expected: set[Path] | None = None,
        digests: bool = True,
    ) -> None:
        super().__init__()
        self.cache = cache
        #: Whether views record the digests of what they use (:meth:`ProjectView.deps`, for
        #: cache entries); without, only which summaries (``used``, with empty digests).
        self.digests = digests
        self.max_tokens = limits.token_limit(max_file_size) if max_file_size else 0
        self.max_file_size = max_file_size or sources.DEFAULT_MAX_BYTES
        #: Resolved paths of the files this process is going to analyze (the engine's).
        self.expected = expected if expected is not None else set()
        self.trees = TreeStore(TREE_BUDGET)
        self._outlines: OrderedDict[Path, Outline] = OrderedDict()  # those with ``ast`` kept
        self._modules: dict[Path, _Module | None] = {}
        #: Models of class excerpts kept for their methods (the last few classes summarized).
        self.kept_models = KeptModels(MODELS_KEPT)
        self._salt: str | None = None
        #: Statistics for tests and the bench: modules read, definitions parsed.
        self.read = 0
        self.parsed = 0

    def view(self, importer: Path) -> ProjectView:
        return ProjectView(self, importer.resolve())

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

    def outline(self, module: _Module) -> Outline | None:
        if module.outline is None and module.text is not None:
            try:
                module.outline = outline(ast.parse(module.text), module.text)
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                module.text = None  # unparsable: no summaries
        if module.outline is not None:
            # Only the last few outlines keep their ``ast`` statements (a module's summaries
            # are asked for in bursts; a run's ``ast`` trees would not fit in memory).
            self._outlines[module.path] = module.outline
            self._outlines.move_to_end(module.path)
            while len(self._outlines) > _AST_KEPT:
                self._outlines.popitem(last=False)[1].forget()
        return module.outline

    def kind(self, path: Path, name: str) -> str | None:
        """``class``, ``function``, ``import`` (a re-export) or None, from ``ast`` alone."""
        module = self.module(path)
        if module is None:
            return None
        if name not in module.kinds:
            module.kinds[name] = self._kind(module, name)
        return module.kinds[name]

    def _kind(self, module: _Module, name: str) -> str | None:
        found = self.outline(module)
        if found is None or not self._mentions(module, name):
            return None
        return found.kinds.get(name)

    @staticmethod
    def _mentions(module: _Module, name: str) -> bool:
        if name not in module.mentions:
            module.mentions[name] = mentions(module.text or "", name)
        return module.mentions[name]

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
        if not self._mentions(module, name):
            return None  # the word prefilter: not defined or imported here, nothing to parse
        found = self.outline(module)
        picked = excerpt(found, name) if found is not None else None
        if found is None or picked is None:
            return None
        from trainlint.model.summaries.build import summarize

        try:
            model = self._excerpt_model(module, found, picked)
            self.parsed += 1
            methods = LazyMethods(self, module, name, model)
            summary = summarize(model, name, methods)
            if isinstance(summary, ClassSummary) and not methods.complete:
                methods.keep()  # its methods are summarized off this model when asked for
            else:
                methods.drop()  # frees the model by reference counting, no collection needed
            return summary
        except Exception:  # a module we cannot model is a module without a summary
            return None

    def _excerpt_model(
        self, module: _Module, found: Outline, picked: tuple[list[Statement], Statement | None]
    ) -> TrainingModel:
        """The model of the excerpt ``picked`` (:func:`excerpt`) of ``module``."""
        from trainlint.model import TrainingModel

        chosen, target = picked
        text = module.text or ""
        source = excerpt_text(text, chosen, target)
        whole = self.tree_for(module)
        holders = statement_lines(found, whole) if whole is not None else None
        tree = None
        if whole is not None and holders is not None:
            tree = excerpt_tree(whole, holders, found, text, chosen, target)
        if tree is not None:
            return TrainingModel(tree, module.path, source)
        return TrainingModel.from_source(source, module.path)

    def remodel(self, module: _Module, name: str) -> TrainingModel | None:
        """The model a summary of ``name`` was made from, made again (for its methods)."""
        found = self.outline(module)
        picked = excerpt(found, name) if found is not None else None
        if found is None or picked is None:
            return None
        try:
            return self._excerpt_model(module, found, picked)
        except Exception:
            return None

    # ------------------------------------------------------------------ whole trees
    def tree_for(self, module: _Module) -> cst.Module | None:
        """The whole libcst tree of ``module`` when one is at hand: kept from the analysis of
        that file in this process, or parsed now when this process is going to analyze the file
        (the engine then takes this tree instead of parsing the file again: :meth:`tree`).
        None otherwise: an excerpt of a module nobody else here reads is cheaper to parse."""
        text = module.text
        if text is None or not usable_for_trees(text):
            return None
        found = self.trees.get(module.path, text, use=True)
        if found is not None or module.path not in self.expected:
            return found
        # Parsed whole once at most: dropped from the store before the engine came to it, the
        # module's other excerpts are parsed as text (a whole parse each would cost more).
        self.expected.discard(module.path)
        from trainlint import parsing

        try:
            found = parsing.parse(text, self.max_tokens)
        except (parsing.Unparsable, limits.TooManyTokens, RecursionError, MemoryError):
            return None
        self.trees.put(module.path, text, found, used=True)
        return found

    def tree(self, path: Path, text: str) -> cst.Module | None:
        """A tree of ``text`` (the file at ``path``, resolved) that this index parsed or kept,
        parsed as :func:`trainlint.parsing.parse` would with the same limits."""
        self.expected.discard(path)  # analyzed now: summaries need not parse it whole for it
        found = self.trees.get(path, text)
        self.trees.reserve(path, len(text))
        return found

    def keep_tree(self, path: Path, text: str, tree: cst.Module) -> None:
        """The engine's parse of a file: summaries of its definitions reuse it."""
        if usable_for_trees(text):
            self.trees.put(path, text, tree)

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
