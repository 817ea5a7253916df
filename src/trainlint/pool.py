"""Parallel analysis with deterministic, streamed output.

The scheduler consumes the engine's scan (ready results and jobs, in path order) and yields
results in that same order as soon as every earlier one is known. Jobs are packed into chunks
(a few files, or one large file) and at most a bounded number of chunks are in flight, so
memory does not grow with the number of files. A process pool is started only when enough
jobs have accumulated to pay for it: a warm run where everything is cached, or a run where one
file changed, never starts one.

A worker that dies (killed, out of memory, a crash in the native parser) takes every chunk in
flight on its pool with it. Chunks that had finished keep their results; the files of the
others are re-run one by one on a fresh one-worker pool, so only a file that kills a worker a
second time, alone, gets the error. Workers die with the main process (``PR_SET_PDEATHSIG`` on
Linux, a watchdog thread elsewhere) and ignore Ctrl-C: the main process ends them, so a killed
or interrupted run leaves no worker holding the terminal or a ``| tee`` pipe open.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainlint.engine import FileAnalyzer, FileResult, Job, RunOptions

#: A chunk closes at this many files or this much text, whichever comes first.
CHUNK_FILES = 8
CHUNK_CHARS = 150_000
#: Chunks in flight per worker: enough to keep workers busy behind a slow head chunk.
IN_FLIGHT_PER_WORKER = 6
#: Jobs to accumulate before a pool is worth starting (fewer are analyzed in-process).
POOL_THRESHOLD_PER_WORKER = 2

_worker: FileAnalyzer | None = None

DIED_TWICE = (
    "the analysis process died on this file, twice, the second time analyzing it alone "
    "(out of memory, or a crash in the parser)"
)


def _init_worker(options: RunOptions, parent: int) -> None:
    global _worker
    from trainlint.engine import FileAnalyzer

    # Ctrl-C reaches the whole process group: the main process ends the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    _worker = FileAnalyzer(options)
    gc.freeze()  # the registry and imports are permanent: keep them out of every collection


def _die_with(parent: int) -> None:
    """End this worker as soon as the main process ``parent`` is gone, however it died."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGKILL) == 0:  # PR_SET_PDEATHSIG
                if os.getppid() != parent:  # it died before the call
                    os._exit(1)
                return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="trainlint-watchdog", daemon=True).start()


def _analyze_chunk(chunk: list[tuple[object, str]]) -> list[FileResult]:
    assert _worker is not None
    _worker.expect(source.path for source, _ in chunk)  # type: ignore[attr-defined]
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
        self.in_flight: deque[tuple[Future[list[FileResult]], list[Job], ProcessPoolExecutor]]
        self.in_flight = deque()
        self.rescue: ProcessPoolExecutor | None = None  # one worker, for files run alone
        self.pooled = False  # once enough jobs came, every later one goes to a pool

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for pool in (self.pool, self.rescue):
            if pool is None:
                continue
            if exc_type is None:
                pool.shutdown(wait=True, cancel_futures=True)
            else:  # interrupted or failed: do not wait for chunks nobody will read
                _end(pool)
        self.pool = self.rescue = None

    # ------------------------------------------------------------------ running jobs
    def _run_here(self, job: Job) -> None:
        job.result = _analyze_safely(self.analyzer, job.source, job.display)

    def _submit(self, chunk: list[Job]) -> None:
        if self.pool is None:  # the first chunk, or the last pool broke
            self.pool = self._start()
        payload = [(job.source, job.display) for job in chunk]
        try:
            future = self.pool.submit(_analyze_chunk, payload)
        except BrokenProcessPool:  # a worker died since the last collection: a fresh pool
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            future = self.pool.submit(_analyze_chunk, payload)
        self.in_flight.append((future, chunk, self.pool))

    def _start(self, workers: int = 0) -> ProcessPoolExecutor:
        if multiprocessing.get_start_method() == "fork":
            # Forked workers inherit what this process imported: libcst, the model and the
            # rules are imported once, here, instead of once in every worker (measured: a
            # third of a second of CPU per worker on 64 training files).
            _ = self.analyzer.rules
        return ProcessPoolExecutor(
            workers or self.jobs, initializer=_init_worker, initargs=(self.options, os.getpid())
        )

    def _collect_head(self) -> None:
        """Wait for the oldest chunk in flight and store its results in its jobs."""
        future, chunk, pool = self.in_flight[0]
        try:
            results = future.result()
        except BrokenProcessPool:
            self._recover(pool)
            return
        self.in_flight.popleft()
        _store(chunk, results)

    def _recover(self, broken: ProcessPoolExecutor) -> None:
        """A worker of ``broken`` died: keep the chunks that finished, re-run the others'
        files alone, and let the next submission start a fresh pool."""
        lost: list[Job] = []
        kept: deque[tuple[Future[list[FileResult]], list[Job], ProcessPoolExecutor]] = deque()
        for future, chunk, pool in self.in_flight:
            if pool is not broken:
                kept.append((future, chunk, pool))
                continue
            try:
                _store(chunk, future.result())  # resolved at once: the pool is broken
            except BrokenProcessPool:
                lost.extend(chunk)
        self.in_flight = kept
        broken.shutdown(wait=False, cancel_futures=True)
        if self.pool is broken:
            self.pool = None
        for job in lost:
            self._run_alone(job)

    def _run_alone(self, job: Job) -> None:
        from trainlint.engine import FileResult

        if self.rescue is None:
            self.rescue = self._start(1)
        try:
            (result,) = self.rescue.submit(_analyze_chunk, [(job.source, job.display)]).result()
        except BrokenProcessPool:
            self.rescue.shutdown(wait=False, cancel_futures=True)
            self.rescue = None
            result = FileResult(job.source.path, job.display, error=DIED_TWICE)
        _store([job], [result])

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
                    if len(waiting) >= POOL_THRESHOLD_PER_WORKER * self.jobs:
                        self.pooled = True
                    if self.pooled and (
                        len(waiting) >= CHUNK_FILES or waiting_chars >= CHUNK_CHARS
                    ):
                        self._submit(waiting)
                        waiting, waiting_chars = [], 0
            if self.in_flight:
                self._collect_done()
                while len(self.in_flight) >= IN_FLIGHT_PER_WORKER * self.jobs:
                    self._collect_head()
            yield from drain()
        if waiting:
            if not self.pooled:
                for job in waiting:  # too few to be worth a pool
                    self._run_here(job)
            else:
                self._submit(waiting)
        while self.in_flight:
            self._collect_head()
            yield from drain()
        yield from drain()


def _store(chunk: list[Job], results: list[FileResult]) -> None:
    for job, result in zip(chunk, results, strict=True):
        job.source = None  # type: ignore[assignment]  # free the text
        job.result = result


def _end(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: its workers are terminated, not waited for."""
    processes = getattr(pool, "_processes", None) or {}  # private, but the only handle
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
