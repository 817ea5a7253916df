"""Where one file's analysis runs: a thread with a deep stack, under a time budget.

The parse limits (:mod:`trainlint.limits`) keep the tree under about 1,000 levels, but the
tree walks after the parse (model, rules, positions) recurse a few Python frames per level:
the analysis runs in a thread with a large stack and a raised recursion limit, so a file at
the limit is walked to the end instead of failing half-way.

The same thread gives each file a time budget: past it the caller raises :class:`OutOfTime`
inside the analysis (between two Python bytecodes; the native parser, under the parse limits,
returns within seconds), so one pathological file (a rule quadratic in its loops) cannot hold
up the run: it gets an error, and every other file its result.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

#: The analysis thread's stack and recursion limit: room for the parse limits' depth with a
#: wide margin (measured: depth 1,000 needs about 6,000 Python frames).
STACK_BYTES = 512 << 20
RECURSION_LIMIT = 40_000
#: Seconds one file may take (parse, model, rules, positions) before it is given up on.
DEFAULT_BUDGET = 60.0
#: How long a thread told to stop may take to unwind before it is abandoned.
_UNWIND_SECONDS = 10.0
#: The waiting thread wakes up this often (signal handlers run only when it does).
_POLL_SECONDS = 0.25
_SIGNALS = {
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
}


class OutOfTime(BaseException):
    """Raised inside an analysis past its budget. A BaseException: the engine's
    ``except Exception`` around each rule must not swallow it."""


_T = TypeVar("_T")
_lock = threading.Lock()


def deep_call(function: Callable[[], _T], budget: float | None = None) -> _T:
    """``function()`` in a thread with a large stack and a raised recursion limit; raises
    :class:`OutOfTime` when it runs longer than ``budget`` seconds (None: no budget).

    The recursion limit is global to the interpreter, so it is raised only while the thread
    runs and the caller waits for it (analyses never overlap in one process: the lock).
    """
    outcome: list[tuple[bool, object]] = []

    def target() -> None:
        # Signals go to the waiting main thread, so Ctrl-C interrupts the wait at once.
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            outcome.append((True, function()))
        except BaseException as exc:  # noqa: BLE001 (handed to the caller unchanged)
            outcome.append((False, exc))

    with _lock:
        old_stack = threading.stack_size()
        old_limit = sys.getrecursionlimit()
        try:
            threading.stack_size(STACK_BYTES)
            thread = threading.Thread(target=target, name="trainlint-analysis", daemon=True)
            sys.setrecursionlimit(RECURSION_LIMIT)
            thread.start()
        except (RuntimeError, ValueError, MemoryError):  # no room for such a stack: run here
            sys.setrecursionlimit(old_limit)
            threading.stack_size(old_stack)
            return function()
        threading.stack_size(old_stack)
        try:
            try:
                _wait(thread, budget)
            except BaseException:
                # Ctrl-C: stop the analysis too; a daemon thread still running Python code
                # while the interpreter shuts down can abort the process (exit 134).
                _interrupt(thread)
                thread.join(_UNWIND_SECONDS)
                raise
            if thread.is_alive():
                _interrupt(thread)
                thread.join(_UNWIND_SECONDS)
                if not outcome:  # stuck in native code: abandon it (a daemon thread)
                    raise OutOfTime
        finally:
            sys.setrecursionlimit(old_limit)
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[return-value]
    raise value  # type: ignore[misc]


def _wait(thread: threading.Thread, budget: float | None) -> None:
    """Join ``thread`` for at most ``budget`` seconds, waking up now and then so that the
    main thread runs its signal handlers (Ctrl-C) even where signals cannot be masked."""
    deadline = None if budget is None else time.monotonic() + budget
    while thread.is_alive():
        left = (
            _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
        )
        if left <= 0:
            return
        thread.join(left)


#: Held while the analysis is inside libcst's native parser: it calls back into Python to
#: build nodes, and an exception raised in such a callback makes it abort the process.
_native = threading.Lock()


@contextlib.contextmanager
def native() -> Iterator[None]:
    """Mark a call into native code that must not be interrupted (the parse: seconds at most,
    under the parse limits). The interruption waits for it and lands right after."""
    with _native:
        yield


def _interrupt(thread: threading.Thread) -> None:
    """Raise :class:`OutOfTime` in ``thread`` at its next bytecode outside :func:`native`."""
    if thread.ident is None:
        return
    with _native:  # never inside the parser's callbacks
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(OutOfTime)
        )
