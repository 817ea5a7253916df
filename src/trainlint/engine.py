"""The per-file pipeline and the run that drives it over many files.

Per file: read -> size cap -> decode -> prefilter (the selected rules' trigger words) -> cache
lookup -> parse (libcst, no metadata) -> model -> rules -> positions (only when something was
found) -> suppressions. Everything up to the cache lookup is cheap and happens in the main
process, so files no rule needs and files already in the cache never reach a worker; when
nothing needs parsing, no process pool is started at all. See :mod:`trainlint.pool` for the
parallel part and :mod:`trainlint.cache` for the cache.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from trainlint import budget, limits, sources
from trainlint.cache import Cache, entry_key
from trainlint.cache_entries import cache_entry, line_bound, result_from_entry
from trainlint.catalog import RuleInfo, load_catalog
from trainlint.pool import Scheduler
from trainlint.prefilter import Prefilter
from trainlint.results import FileResult
from trainlint.rule import Rule
from trainlint.run_options import RunOptions, available_cpus, display_path

if TYPE_CHECKING:  # libcst, the model and the project index load only when a file is parsed
    from trainlint.project import ProjectIndex
    from trainlint.slicing import Slicer


# ---------------------------------------------------------------------- one file
class FileAnalyzer:
    """Runs the selected rules on one file."""

    def __init__(self, options: RunOptions, registry: dict[str, type[Rule]] | None = None) -> None:
        """``registry``: the rule classes to use; by default the catalog's, whose modules are
        imported only once a file passes the prefilter (a run of cached or skipped files
        never imports a rule, libcst or the model)."""
        self.options = options
        catalog: dict[str, type[Rule]] | dict[str, RuleInfo]
        catalog = registry if registry is not None else load_catalog().rules
        self._selected: list[type[Rule] | RuleInfo] = [
            catalog[code] for code in options.codes if code in catalog
        ]
        self.known_codes = frozenset(catalog)
        self.expected: set[Path] = set()
        self._slicer: Slicer | None = None
        self.severities = dict(options.severity_overrides)
        selected = self._selected
        self.prefilter = Prefilter(selected)
        self.triggers = self.prefilter.triggers

    @cached_property
    def rules(self) -> list[Rule]:
        """The selected rules, instantiated (this imports their modules)."""
        return [(r if isinstance(r, type) else r.load())() for r in self._selected]

    @cached_property
    def project(self) -> ProjectIndex | None:
        """The project index (other modules' summaries), made when first needed."""
        from trainlint.project import project_index

        return project_index(self.options, self.expected)

    def expect(self, paths: Iterable[Path]) -> None:
        """Files this process is going to analyze: a module of them that another file's summary
        needs first is parsed whole, once, for both (see ``ProjectIndex.tree_for``)."""
        if self.options.summaries:
            found = (_resolved(p) for p in paths if p.suffix == ".py")
            self.expected.update(p for p in found if p is not None)

    @property
    def rule_modules(self) -> list[str]:
        return sorted(
            {r.module if isinstance(r, RuleInfo) else r.__module__ for r in self._selected}
        )

    def wanted(self, text: str) -> list[Rule]:
        """The rules the prefilter lets through for ``text``."""
        indexes = self.prefilter.wanted(text)
        if not indexes:
            return []
        rules = self.rules
        return [rules[i] for i in indexes]

    def prepare(
        self, path: Path, display: str, raw: bytes | None = None
    ) -> FileResult | sources.SourceFile:
        """The cheap steps: read (unless ``raw`` is given), size cap, decode, prefilter.

        Returns the final result when nothing needs parsing, else the source to analyze.
        """
        try:
            if raw is None:
                raw = sources.read_bytes(path, self.options.max_file_size)
            source = sources.from_bytes(path, raw, self.options.max_file_size)
        except sources.SkippedFile as skipped:
            return FileResult(path, display, skipped=str(skipped))
        except sources.SourceError as exc:
            return FileResult(path, display, error=exc.message, error_line=exc.line)
        if not self.prefilter.wanted(source.text):
            result = FileResult(path, display)
            source.name_cells(result)  # broken notebook cells and notes still count
            return result
        return source

    def analyze_source(self, source: sources.SourceFile, display: str) -> FileResult:
        """Parse, model, rules, positions, noqa -- everything but the per-file ignores."""
        result = self.analyze_text(source.text, source.path, display)
        name_cells = getattr(source, "name_cells", None)
        if name_cells is not None:
            name_cells(result)
        return result

    def analyze_text(self, text: str, path: Path, display: str) -> FileResult:
        result = FileResult(path, display)
        rules = self.wanted(text)
        if not rules:
            return result
        result.parsed = True
        # Parse, model and rules allocate hundreds of thousands of objects and free almost none
        # until the file is done (the tree has no cycles): collections would only rescan the
        # growing tree. Measured: 20-25 % less CPU per file with the collector off meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        stage = ["parsing"]  # what the analysis is doing, for the time budget's message
        seconds = self.options.time_budget
        try:
            # A deep stack (every file that passes the parse limits is walked to the end) and
            # a time budget (one pathological file cannot hold up the run).
            return budget.deep_call(
                lambda: self._analyze(text, path, display, rules, result, stage), seconds or None
            )
        except budget.OutOfTime:
            return FileResult(
                path,
                display,
                error=f"gave up after {seconds:g} s, the time budget for one file ({stage[0]})",
                parsed=True,
            )
        finally:
            if gc_was_enabled:
                # The youngest generation now holds everything this file allocated and kept
                # (summaries): collected here, once, instead of at the next allocation with the
                # collector on, which scanned the older generations too (measured: gc time
                # 0.67 s -> 0.18 s on 64 training files).
                gc.collect(0)
            # The tree, frozen after the parse (see ``_analyze``), joins the oldest generation.
            gc.unfreeze()
            if gc_was_enabled:
                gc.enable()

    def _analyze(
        self,
        text: str,
        path: Path,
        display: str,
        rules: list[Rule],
        result: FileResult,
        stage: list[str],
    ) -> FileResult:
        from trainlint import parsing
        from trainlint.locate import locate
        from trainlint.model import TrainingModel

        resolved = _resolved(path) if path.suffix == ".py" else None
        project = self.project if resolved is not None else None
        module = None
        if project is not None and resolved is not None:
            module = project.tree(resolved, text)
        sliced = None
        try:
            if module is None:  # else parsed by the project index, with the same limits
                sliced = self._sliced(text, path, rules)
                module = parsing.parse(text, limits.token_limit(self.options.max_file_size), sliced)
                # A sliced tree lacks blocks another file's summary or excerpt may need.
                if project is not None and resolved is not None and sliced is None:
                    project.keep_tree(resolved, text, module)
        except parsing.Unparsable as exc:
            result.error, result.error_line = exc.message, exc.line
            return result
        except limits.TooManyTokens as exc:
            result.parsed = False
            result.skipped = (
                f"skipped: too many tokens ({exc.limit:,} allowed by max-file-size; a large data "
                "literal?); raise max-file-size to analyze it"
            )
            return result
        # The tree outlives the file (the project index keeps it for other files' summaries)
        # and holds no cycle: frozen, it is left out of the collection that ends the file,
        # which scanned every node of it (measured: most of the gc time).
        gc.freeze()
        stage[0] = "building the model"
        try:
            view = self.project.view(path) if self.project is not None and path.is_file() else None
            # A sliced tree prints as the sliced text, not as ``text`` (same lines, blanked blocks).
            model = TrainingModel(module, path, text, view, parsed_from_text=sliced is None)
        except RecursionError as exc:
            result.error = f"cannot analyze: {parsing.recursion_reason(exc)}"
            return result
        violations = []
        # (template, reason) -> the rules that gave up for it: every one is named.
        gave_up: dict[tuple[str, str], list[str]] = {}
        for rule in rules:
            if rule.uses_suppressions:
                continue
            stage[0] = f"in rule {rule.code}"
            try:
                for violation in rule.check(model):
                    violations.append((rule, violation))
            except RecursionError as exc:
                key = ("{codes} gave up: {reason}", parsing.recursion_reason(exc))
                gave_up.setdefault(key, []).append(rule.code)
            except Exception as exc:  # a rule bug must not lose the rest of the run
                key = ("internal error in rule {codes}: {reason}", f"{type(exc).__name__}: {exc}")
                gave_up.setdefault(key, []).append(rule.code)
        if gave_up:
            result.error = "; ".join(
                template.format(codes=", ".join(codes), reason=reason)
                for (template, reason), codes in gave_up.items()
            )
        # Judging suppressions needs every finding of the file: not when a rule gave up.
        judges = [r for r in rules if r.uses_suppressions] if result.error is None else []
        if violations or judges:
            stage[0] = "locating the findings"
            try:
                result.findings, error = locate(
                    model,
                    text,
                    display,
                    violations,
                    judges,
                    self.severities,
                    self.known_codes,
                    frozenset(r.code for r in self._selected),
                )
            except RecursionError as exc:  # positions walk the whole tree
                error = f"cannot locate the findings: {parsing.recursion_reason(exc)}"
            result.error = result.error or error
        if view is not None:
            result.deps = view.deps()
        model.release()
        return result

    def _sliced(self, text: str, path: Path, rules: list[Rule]) -> str | None:
        """``text`` with the blocks no rule of ``rules`` cares about blanked, or None to parse
        it whole (see :mod:`trainlint.slicing`)."""
        if not self.options.slicing or path.suffix != ".py":
            return None
        from trainlint.slicing import Slicer

        if self._slicer is None:
            self._slicer = Slicer()
        resolved = _resolved(path)

        def in_project() -> Callable[[str], bool] | None:
            project = self.project
            if project is None or resolved is None:
                return None
            return lambda target: project.resolve(resolved, target) is not None

        return self._slicer.text_for(text, rules, in_project)

    def drop_ignored(self, result: FileResult) -> FileResult:
        """Apply ``per-file-ignores`` (after the cache: they depend on the path, not content)."""
        if not result.findings or not self.options.per_file_ignores:
            return result
        posix = PurePosixPath(Path(result.display).as_posix())
        ignored: set[str] = set()
        for pattern, codes in self.options.per_file_ignores:
            if posix.match(pattern) or fnmatch.fnmatch(str(posix), pattern):
                ignored |= codes
        if ignored:
            result.findings = [
                f for f in result.findings if not any(f.code.startswith(p) for p in ignored)
            ]
        return result

    def analyze_file(self, path: Path, display: str, raw: bytes | None = None) -> FileResult:
        """The whole pipeline for one file (from ``raw`` when given), in this process, without
        the cache."""
        prepared = self.prepare(path, display, raw)
        if isinstance(prepared, FileResult):
            return prepared
        return self.drop_ignored(self.analyze_source(prepared, display))


def _resolved(path: Path) -> Path | None:
    """``path`` resolved, or None (a symbolic link loop: the file is reported elsewhere)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return None


def _deps_valid(analyzer: FileAnalyzer, path: Path, deps: list[list[str]]) -> bool:
    from trainlint.project import deps_valid

    return deps_valid(analyzer.project, path, deps)


# ---------------------------------------------------------------------- the run
@dataclass
class Job:
    """A file that needs parsing, in the run's order."""

    index: int
    source: sources.SourceFile
    display: str
    key: str | None  # cache key, None without a cache
    result: FileResult | None = None


def run(
    paths: Iterable[Path],
    options: RunOptions,
    on_result: Callable[[FileResult], None] | None = None,
) -> Iterator[FileResult]:
    """Analyze ``paths``; results are yielded in the order of ``paths``, as soon as known."""
    analyzer = FileAnalyzer(options)
    cache = Cache(options.cache_dir) if options.cache_dir else None
    run_key = options.fingerprint(code_stamp=load_catalog().code_stamp) if cache is not None else ""
    jobs = options.jobs or available_cpus()
    if jobs == 1 and isinstance(paths, (list, tuple)):
        analyzer.expect(paths)

    def scan() -> Iterator[FileResult | Job]:
        for index, path in enumerate(paths):
            display = display_path(path, options.root)
            key = raw = None
            if cache is not None:
                # Warm path: read, hash, one small JSON read. Cheaper than decoding and the
                # prefilter's substring scans, so prefilter skips are cached too.
                try:
                    raw = sources.read_bytes(path, options.max_file_size)
                except sources.SourceError as exc:
                    yield FileResult(path, display, error=exc.message, error_line=exc.line)
                    continue
                except sources.SkippedFile as skipped:
                    yield FileResult(path, display, skipped=str(skipped))
                    continue
                key = entry_key(raw, run_key, "ipynb" if path.suffix == ".ipynb" else "py")
                entry = cache.get(key)
                hit = entry and result_from_entry(
                    path, display, entry, options.codes, line_bound(path, raw)
                )
                if hit and hit.deps and not _deps_valid(analyzer, path, hit.deps):
                    hit = None  # a summary it used has changed: analyze it again
                if hit:
                    yield analyzer.drop_ignored(hit)
                    continue
            prepared = analyzer.prepare(path, display, raw)
            if isinstance(prepared, FileResult):
                if key is not None:
                    entry = cache_entry(prepared)
                    if entry is not None:
                        cache.put(key, entry)  # type: ignore[union-attr]
                yield prepared
                continue
            # The worker needs the text, not the bytes: do not ship them twice.
            yield Job(index, dataclasses.replace(prepared, raw=b""), display, key)

    def finished(job: Job) -> FileResult:
        assert job.result is not None
        entry = cache_entry(job.result) if cache is not None and job.key else None
        if entry is not None:
            cache.put(job.key, entry)  # type: ignore[union-attr,arg-type]
        return analyzer.drop_ignored(job.result)

    with Scheduler(options, analyzer, jobs) as scheduler:
        for result in scheduler.results(scan(), finished):
            if on_result is not None:
                on_result(result)
            yield result
