"""The per-file pipeline (read, prefilter, parse, model, rules, positions, suppressions),
the process pool that runs it, and the cache in front of it."""

from __future__ import annotations

import fnmatch
import gc
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import libcst as cst

from trainlint import sources
from trainlint.cache import Cache, entry_key, fingerprint
from trainlint.model import TrainingModel
from trainlint.rule import Finding, Rule, Severity, load_registry
from trainlint.suppressions import Suppressions


@dataclass(frozen=True)
class RunOptions:
    codes: tuple[str, ...]
    severity_overrides: tuple[tuple[str, Severity], ...] = ()
    per_file_ignores: tuple[tuple[str, frozenset[str]], ...] = ()
    max_file_size: int = sources.DEFAULT_MAX_BYTES
    cache_dir: Path | None = None
    jobs: int = 0  # 0: one per CPU
    root: Path = field(default_factory=Path.cwd)

    def fingerprint(self) -> str:
        return fingerprint(self.codes, self.severity_overrides, self.max_file_size)


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


def display_path(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------- one file
class FileAnalyzer:
    """Runs the selected rules on one file's text."""

    def __init__(self, options: RunOptions, registry: dict[str, type[Rule]] | None = None) -> None:
        registry = registry if registry is not None else load_registry()
        self.options = options
        self.rules = [registry[code]() for code in options.codes if code in registry]
        self.severities = dict(options.severity_overrides)
        self.always = any(not rule.triggers for rule in self.rules)
        self.triggers = tuple(sorted({t for rule in self.rules for t in rule.triggers}))

    def wanted(self, text: str) -> list[Rule]:
        """The prefilter: the rules whose trigger words the text mentions."""
        return [r for r in self.rules if not r.triggers or any(t in text for t in r.triggers)]

    def analyze_text(self, text: str, path: Path, display: str) -> FileResult:
        result = FileResult(path, display)
        rules = self.wanted(text)
        if not rules:
            return result
        result.parsed = True
        gc_was_enabled = gc.isenabled()
        gc.disable()  # the parse allocates a lot of objects and frees none: skip the GC scans
        try:
            module = cst.parse_module(text)
        except cst.ParserSyntaxError as exc:
            result.error = f"syntax error: {exc.message}"
            result.error_line = exc.raw_line
            return result
        except (RecursionError, MemoryError) as exc:
            result.error = f"cannot parse: {type(exc).__name__} (nesting too deep?)"
            return result
        finally:
            if gc_was_enabled:
                gc.enable()
        model = TrainingModel(module, path, text)
        violations = []
        for rule in rules:
            try:
                for violation in rule.check(model):
                    violations.append((rule, violation))
            except RecursionError:
                result.error = f"{rule.code} gave up: code nested too deeply"
            except Exception as exc:  # a rule bug must not lose the rest of the run
                result.error = f"internal error in rule {rule.code}: {type(exc).__name__}: {exc}"
        if violations:
            result.findings = self._locate(model, text, display, violations)
        return result

    def _locate(self, model, text, display, violations) -> list[Finding]:
        positions = model.positions
        suppressions = Suppressions.of(text)
        ignored = self._ignored_codes(display)
        findings = set()
        for rule, violation in violations:
            code_range = positions.get(violation.node)
            if code_range is None:
                continue
            if suppressions.suppresses(rule.code, code_range.start.line):
                continue
            if any(rule.code.startswith(prefix) for prefix in ignored):
                continue
            severity = self.severities.get(rule.code, violation.severity or rule.severity)
            findings.add(
                Finding(
                    path=display,
                    line=code_range.start.line,
                    column=code_range.start.column + 1,
                    end_line=code_range.end.line,
                    end_column=code_range.end.column + 1,
                    code=rule.code,
                    name=rule.name,
                    severity=severity,
                    message=violation.message,
                    fix=violation.fix.render() if violation.fix else None,
                )
            )
        return sorted(findings)

    def _ignored_codes(self, display: str) -> set[str]:
        posix = PurePosixPath(Path(display).as_posix())
        ignored: set[str] = set()
        for pattern, codes in self.options.per_file_ignores:
            if posix.match(pattern) or fnmatch.fnmatch(str(posix), pattern):
                ignored |= codes
        return ignored

    def analyze_file(self, path: Path, display: str, raw: bytes | None = None) -> FileResult:
        try:
            if raw is None:
                source = sources.load(path, self.options.max_file_size)
            else:
                source = sources.from_bytes(path, raw, self.options.max_file_size)
        except sources.SkippedFile as skipped:
            return FileResult(path, display, skipped=str(skipped))
        except sources.SourceError as exc:
            return FileResult(path, display, error=exc.message, error_line=exc.line)
        return self.analyze_text(source.text, path, display)


# ---------------------------------------------------------------------- the pool
_worker: FileAnalyzer | None = None


def _init_worker(options: RunOptions) -> None:
    global _worker
    _worker = FileAnalyzer(options)


def _analyze_in_worker(job: tuple[Path, str, bytes | None]) -> FileResult:
    assert _worker is not None
    return _worker.analyze_file(*job)


def _to_cache(result: FileResult) -> dict:
    return {
        "findings": [f.to_dict() for f in result.findings],
        "error": result.error,
        "error_line": result.error_line,
        "parsed": result.parsed,
    }


def _from_cache(path: Path, display: str, data: dict) -> FileResult | None:
    try:
        findings = [Finding.from_dict({**f, "path": display}) for f in data["findings"]]
    except (KeyError, TypeError, ValueError):
        return None
    return FileResult(
        path,
        display,
        findings=findings,
        error=data.get("error"),
        error_line=data.get("error_line"),
        parsed=bool(data.get("parsed")),
        cached=True,
    )


def run(
    paths: Iterable[Path],
    options: RunOptions,
    on_result: Callable[[FileResult], None] | None = None,
) -> Iterator[FileResult]:
    """Analyze ``paths``; results come back in the order of ``paths``."""
    paths = list(paths)
    cache = Cache(options.cache_dir) if options.cache_dir else None
    run_key = options.fingerprint()
    results: list[FileResult | None] = [None] * len(paths)
    keys: dict[int, str] = {}
    contents: dict[int, bytes] = {}
    pending: list[int] = []
    for index, path in enumerate(paths):
        display = display_path(path, options.root)
        if cache is not None:
            try:
                raw = path.read_bytes()
            except OSError:
                pending.append(index)
                continue
            keys[index] = entry_key(raw, run_key)
            contents[index] = raw
            hit = cache.get(keys[index])
            if hit is not None:
                results[index] = _from_cache(path, display, hit)
                if results[index] is not None:
                    continue
        pending.append(index)

    jobs = options.jobs or os.cpu_count() or 1
    # The bytes that were hashed are the bytes analyzed, so an entry always matches its key.
    work = [
        (paths[i], display_path(paths[i], options.root), contents.pop(i, None)) for i in pending
    ]
    if jobs <= 1 or len(work) < 2 * jobs:
        analyzer = FileAnalyzer(options)
        computed: Iterator[FileResult] = (analyzer.analyze_file(*job) for job in work)
        yield from _merge(results, pending, computed, cache, keys, on_result)
        return
    chunksize = max(1, min(32, len(work) // (jobs * 8)))
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(options,)) as pool:
        computed = pool.map(_analyze_in_worker, work, chunksize=chunksize)
        yield from _merge(results, pending, computed, cache, keys, on_result)


def _merge(results, pending, computed, cache, keys, on_result) -> Iterator[FileResult]:
    """Yield results in path order as soon as every earlier one is known."""
    next_to_yield = 0
    pending_iter = iter(pending)

    def flush() -> Iterator[FileResult]:
        nonlocal next_to_yield
        while next_to_yield < len(results) and results[next_to_yield] is not None:
            result = results[next_to_yield]
            results[next_to_yield] = None  # stream: do not keep what was reported
            next_to_yield += 1
            if on_result is not None:
                on_result(result)
            yield result

    yield from flush()
    for result in computed:
        index = next(pending_iter)
        results[index] = result
        cacheable = result.error is None or result.error.startswith("syntax error")
        if cache is not None and index in keys and result.skipped is None and cacheable:
            cache.put(keys[index], _to_cache(result))
        yield from flush()
    yield from flush()
