"""Parallel analysis with deterministic, streamed output.

The scheduler consumes the engine's scan (ready results and jobs, in path order) and yields
results in that same order as soon as every earlier one is known. Jobs are packed into chunks
(a few files, or one large file) and at most a bounded number of chunks are in flight, so
memory does not grow with the number of files. A process pool is started only when enough
jobs have accumulated to pay for it: a warm run where everything is cached, or a run where one
file changed, never starts one.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from trainlint.engine import FileAnalyzer, FileResult, Job, RunOptions

#: A chunk closes at this many files or this much text, whichever comes first.
CHUNK_FILES = 8
CHUNK_CHARS = 150_000
#: Chunks in flight per worker: enough to keep workers busy behind a slow head chunk.
IN_FLIGHT_PER_WORKER = 6
#: Jobs to accumulate before a pool is worth starting (fewer are analyzed in-process).
POOL_THRESHOLD_PER_WORKER = 2

_worker: FileAnalyzer | None = None


def ProcessPoolExecutor(*args: Any, **kwargs: Any) -> ProcessPoolExecutor:  # noqa: N802, F811
    """concurrent.futures' pool, imported only when one starts (a warm run never does)."""
    from concurrent.futures import ProcessPoolExecutor as Pool

    return Pool(*args, **kwargs)


def _init_worker(options: RunOptions) -> None:
    global _worker
    from trainlint.engine import FileAnalyzer

    _worker = FileAnalyzer(options)
    gc.freeze()  # the registry and imports are permanent: keep them out of every collection


def _analyze_chunk(chunk: list[tuple[object, str]]) -> list[FileResult]:
    assert _worker is not None
    return [_analyze_safely(_worker, source, display) for source, display in chunk]


def _analyze_safely(analyzer: FileAnalyzer, source: object, display: str) -> FileResult:
    from trainlint.engine import FileResult

    try:
        return analyzer.analyze_source(source, display)  # type: ignore[arg-type]
    except Exception as exc:  # never lose the run to one file
        path = source.path  # type: ignore[attr-defined]
        return FileResult(path, display, error=f"internal error: {type(exc).__name__}: {exc}")


class Scheduler:
    def __init__(self, options: RunOptions, analyzer: FileAnalyzer, jobs: int) -> None:
        self.options = options
        self.analyzer = analyzer
        self.jobs = max(1, jobs)
        self.pool: ProcessPoolExecutor | None = None
        self.in_flight: deque[tuple[Future[list[FileResult]], list[Job]]] = deque()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    # ------------------------------------------------------------------ running jobs
    def _run_here(self, job: Job) -> None:
        job.result = _analyze_safely(self.analyzer, job.source, job.display)

    def _submit(self, chunk: list[Job]) -> None:
        assert self.pool is not None
        from concurrent.futures.process import BrokenProcessPool

        payload = [(job.source, job.display) for job in chunk]
        try:
            future = self.pool.submit(_analyze_chunk, payload)
        except BrokenProcessPool:  # a worker died earlier: carry on with a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            future = self.pool.submit(_analyze_chunk, payload)
        self.in_flight.append((future, chunk))

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.jobs, initializer=_init_worker, initargs=(self.options,))

    def _collect_head(self) -> None:
        """Wait for the oldest chunk in flight and store its results in its jobs."""
        from concurrent.futures.process import BrokenProcessPool

        future, chunk = self.in_flight.popleft()
        try:
            results = future.result()
        except BrokenProcessPool:
            from trainlint.engine import FileResult

            reason = "the analysis process died on this file or a neighbour (out of memory?)"
            results = [FileResult(j.source.path, j.display, error=reason) for j in chunk]
        for job, result in zip(chunk, results, strict=True):
            job.source = None  # type: ignore[assignment]  # free the text
            job.result = result

    def _collect_done(self) -> None:
        while self.in_flight and self.in_flight[0][0].done():
            self._collect_head()

    # ------------------------------------------------------------------ the stream
    def results(
        self,
        scanned: Iterable[FileResult | Job],
        finished: Callable[[Job], FileResult],
    ) -> Iterator[FileResult]:
        from trainlint.engine import Job

        order: deque[FileResult | Job] = deque()  # everything not yet yielded, in path order
        waiting: list[Job] = []  # jobs not yet handed to a worker
        waiting_chars = 0

        def drain() -> Iterator[FileResult]:
            while order:
                head = order[0]
                if isinstance(head, Job):
                    if head.result is None:
                        return
                    order.popleft()
                    yield finished(head)
                else:
                    yield order.popleft()

        for item in scanned:
            order.append(item)
            if isinstance(item, Job):
                if self.jobs == 1:
                    self._run_here(item)
                else:
                    waiting.append(item)
                    waiting_chars += len(item.source.text)
                    if self.pool is None and len(waiting) >= POOL_THRESHOLD_PER_WORKER * self.jobs:
                        self.pool = self._start()
                    if self.pool is not None and (
                        len(waiting) >= CHUNK_FILES or waiting_chars >= CHUNK_CHARS
                    ):
                        self._submit(waiting)
                        waiting, waiting_chars = [], 0
            if self.pool is not None:
                self._collect_done()
                while len(self.in_flight) >= IN_FLIGHT_PER_WORKER * self.jobs:
                    self._collect_head()
            yield from drain()
        if waiting:
            if self.pool is None:
                for job in waiting:  # too few to be worth a pool
                    self._run_here(job)
            else:
                self._submit(waiting)
        while self.in_flight:
            self._collect_head()
            yield from drain()
        yield from drain()
