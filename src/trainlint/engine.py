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
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from trainlint import sources
from trainlint.baseline import anchor_text, finding_fingerprint
from trainlint.cache import Cache, code_fingerprint, entry_key, fingerprint
from trainlint.catalog import RuleInfo, load_catalog
from trainlint.pool import Scheduler
from trainlint.rule import (
    Edit,
    Finding,
    Rule,
    Severity,
    Span,
    TextEdit,
    Violation,
)

if TYPE_CHECKING:  # libcst, the model and tokenize are imported only when a file is parsed
    from trainlint.model import TrainingModel


@dataclass(frozen=True)
class RunOptions:
    codes: tuple[str, ...]
    severity_overrides: tuple[tuple[str, Severity], ...] = ()
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...] = ()
    max_file_size: int = sources.DEFAULT_MAX_BYTES
    cache_dir: Path | None = None
    jobs: int = 0  # 0: one per CPU
    root: Path = field(default_factory=Path.cwd)

    def fingerprint(self, rule_modules: Iterable[str] = (), code_stamp: str | None = None) -> str:
        """What a cached result depends on besides the file's bytes.

        ``code_stamp`` (the catalog's digest of trainlint's and the packs' sources) stands for
        the stamps of trainlint and ``rule_modules`` when given. Per-file ignores are not part
        of it: they are applied after the cache, so editing them never invalidates anything
        and a cached entry never depends on the file's path.
        """
        return fingerprint(
            self.codes,
            self.severity_overrides,
            self.max_file_size,
            code_stamp if code_stamp is not None else code_fingerprint(rule_modules),
        )


@dataclass
class FileResult:
    path: Path
    display: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # could not be analyzed: the one-line reason
    error_line: int | None = None
    skipped: str | None = None  # deliberately not analyzed (too large)
    parsed: bool = False  # False when the prefilter skipped it
    cached: bool = False
    notes: list[str] = field(default_factory=list)  # liberties taken reading it (sources)


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
        self.severities = dict(options.severity_overrides)
        selected = self._selected
        self._always = {i for i, rule in enumerate(selected) if not rule.triggers}
        self.triggers = tuple(sorted({t for rule in selected for t in rule.triggers}))
        # Each distinct trigger word is searched for once per file, however many rules share it.
        self._rules_of_trigger = {
            t: {i for i, r in enumerate(selected) if t in r.triggers} for t in self.triggers
        }
        # Shortest first, each with the shorter triggers it contains: when ``step`` is absent,
        # ``.step`` is too, without scanning the text again. Most files lack most triggers.
        ordered = sorted(self.triggers, key=lambda t: (len(t), t))
        self._trigger_plan = [
            (t, self._rules_of_trigger[t], tuple(s for s in ordered[:n] if s in t))
            for n, t in enumerate(ordered)
        ]

    @cached_property
    def rules(self) -> list[Rule]:
        """The selected rules, instantiated (this imports their modules)."""
        return [(r if isinstance(r, type) else r.load())() for r in self._selected]

    @property
    def rule_modules(self) -> list[str]:
        return sorted(
            {r.module if isinstance(r, RuleInfo) else r.__module__ for r in self._selected}
        )

    def _wanted(self, text: str) -> list[int]:
        """The prefilter: the indexes of the rules whose trigger words the text mentions
        (exact, never fuzzy)."""
        everything = range(len(self._selected))
        if len(self._always) == len(self._selected):
            return list(everything)
        chosen: set[int] = set()
        absent: set[str] = set()
        for trigger, indexes, parts in self._trigger_plan:
            if indexes <= chosen:
                continue
            if any(part in absent for part in parts) or trigger not in text:
                absent.add(trigger)
            else:
                chosen |= indexes
        return [i for i in everything if i in chosen or i in self._always]

    def wanted(self, text: str) -> list[Rule]:
        """The rules the prefilter lets through for ``text``."""
        indexes = self._wanted(text)
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
        if not self._wanted(source.text):
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
        try:
            return self._analyze(text, path, display, rules, result)
        finally:
            if gc_was_enabled:
                gc.enable()

    def _analyze(
        self, text: str, path: Path, display: str, rules: list[Rule], result: FileResult
    ) -> FileResult:
        import libcst as cst

        from trainlint.model import TrainingModel

        try:
            module = cst.parse_module(text)
        except cst.ParserSyntaxError as exc:
            line, message = sources.python_syntax_error(text) or (exc.raw_line, exc.message)
            result.error, result.error_line = f"syntax error: {message}", line
            return result
        except cst.CSTValidationError as exc:  # parsed, but e.g. a name Python rejects
            line, message = sources.python_syntax_error(text) or (None, str(exc))
            result.error, result.error_line = f"syntax error: {message}", line
            return result
        except (RecursionError, MemoryError) as exc:
            result.error = f"cannot parse: {type(exc).__name__} (nesting too deep?)"
            return result
        model = TrainingModel(module, path, text)
        violations = []
        for rule in rules:
            if rule.uses_suppressions:
                continue
            try:
                for violation in rule.check(model):
                    violations.append((rule, violation))
            except RecursionError:
                result.error = f"{rule.code} gave up: code nested too deeply"
            except Exception as exc:  # a rule bug must not lose the rest of the run
                result.error = f"internal error in rule {rule.code}: {type(exc).__name__}: {exc}"
        # Judging suppressions needs every finding of the file: not when a rule gave up.
        judges = [r for r in rules if r.uses_suppressions] if result.error is None else []
        if violations or judges:
            result.findings, error = self._locate(model, text, display, violations, judges)
            result.error = result.error or error
        return result

    def _locate(
        self,
        model: TrainingModel,
        text: str,
        display: str,
        violations: list[tuple[Rule, Violation]],
        judges: list[Rule],
    ) -> tuple[list[Finding], str | None]:
        """Findings with positions, fixes and fingerprints, after noqa; and a rule's error."""
        from trainlint.suppressions import SuppressionReport, Suppressions, comments

        error = None
        suppressions = Suppressions.of(text)
        lines = suppressions.lines
        findings: set[Finding] = set()

        def add(rule: Rule, violation: Violation) -> None:
            span = self._span(model, violation.node)
            if span is None or suppressions.suppresses(rule.code, span.line):
                return
            severity = self.severities.get(rule.code, violation.severity or rule.severity)
            fix = violation.fix
            edits = self._edits(model, fix.edits) if fix is not None else None
            findings.add(
                Finding(
                    path=display,
                    line=span.line,
                    column=span.column,
                    end_line=span.end_line,
                    end_column=span.end_column,
                    code=rule.code,
                    name=rule.name,
                    severity=severity,
                    message=violation.message,
                    fix=fix.render() if fix else None,
                    applicability=fix.applicability.value if fix and edits else None,
                    edits=edits or (),
                    fingerprint=finding_fingerprint(
                        rule.code, anchor_text(lines, span.line, span.end_line)
                    ),
                )
            )

        for rule, violation in violations:
            add(rule, violation)
        if judges:
            report = SuppressionReport(
                tuple(suppressions.directives(comments(text))),
                suppressions,
                self.known_codes,
                frozenset(r.code for r in self._selected),
            )
            for rule in judges:
                try:
                    found = list(rule.check_suppressions(report))
                except Exception as exc:  # a rule bug must not lose the file's other findings
                    error = f"internal error in rule {rule.code}: {type(exc).__name__}: {exc}"
                    continue
                for violation in found:
                    add(rule, violation)
        return sorted(findings), error

    @staticmethod
    def _span(model: TrainingModel, node: object) -> Span | None:
        if isinstance(node, Span):
            return node
        code_range = model.positions.get(node)  # type: ignore[call-overload]
        if code_range is None:
            return None
        start, end = code_range.start, code_range.end
        return Span(start.line, start.column + 1, end.line, end.column + 1)

    def _edits(
        self, model: TrainingModel, edits: tuple[Edit | TextEdit, ...]
    ) -> tuple[TextEdit, ...] | None:
        """Located edits; None when one cannot be located (the fix stays advice)."""
        located = []
        for edit in edits:
            if isinstance(edit, TextEdit):
                located.append(edit)
                continue
            span = self._span(model, edit.node)
            if span is None:
                return None
            content = edit.replacement
            if not isinstance(content, str):
                content = model.module.code_for_node(content)
            located.append(TextEdit(span, content))
        return tuple(located)

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


# ---------------------------------------------------------------------- cache entries
def cache_entry(result: FileResult) -> dict[str, Any] | None:
    """What the cache keeps of a fresh result; None for results that must not be cached."""
    if result.skipped is not None:
        return None
    if result.error is not None and not result.error.startswith("syntax error"):
        return None  # internal errors and resource limits deserve a retry next time
    return {
        "findings": [f.to_dict() for f in result.findings],
        "error": result.error,
        "error_line": result.error_line,
        "parsed": result.parsed,
        "notes": result.notes,
    }


_FINDING_FIELDS: dict[str, tuple[type, ...]] = {
    "code": (str,),
    "name": (str,),
    "severity": (str,),
    "line": (int,),
    "column": (int,),
    "end_line": (int,),
    "end_column": (int,),
    "message": (str,),
    "fix": (str, type(None)),
}


def result_from_entry(
    path: Path, display: str, data: dict[str, Any], codes: Iterable[str]
) -> FileResult | None:
    """Rebuild a result from a cache entry; None when anything about it looks wrong."""
    known = set(codes)
    findings = []
    try:
        for item in data["findings"]:
            if not all(isinstance(item.get(k), t) for k, t in _FINDING_FIELDS.items()):
                return None
            if item["code"] not in known or isinstance(item["line"], bool):
                return None
            findings.append(Finding.from_dict({**item, "path": display}))
        error, error_line = data.get("error"), data.get("error_line")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not isinstance(error, (str, type(None))) or not isinstance(error_line, (int, type(None))):
        return None
    return FileResult(
        path,
        display,
        findings=findings,
        error=error,
        error_line=error_line,
        parsed=bool(data.get("parsed")),
        cached=True,
        notes=[n for n in _list(data.get("notes")) if isinstance(n, str)],
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


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
                key = entry_key(raw, run_key)
                entry = cache.get(key)
                hit = entry and result_from_entry(path, display, entry, options.codes)
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
