"""Where a report goes: standard output, or a file that is replaced only once it is complete.

``-o FILE`` writes a temporary file beside FILE and renames it over FILE at the end, so an
interrupted or failed run never leaves half a report (or an empty one) where a CI step expects
a whole one, and ``-o train.py`` can never truncate a source before it is read (it is refused
outright: see :func:`check_not_an_input`). A device or pipe (``/dev/stdout``, ``/dev/full``, a
FIFO read by another process) is written directly. Every failure is :class:`OutputError`,
one line naming the destination and the cause.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO


class OutputError(Exception):
    """The report cannot be written; the message says where and why."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_not_an_input(output: Path, inputs: Iterable[Path]) -> None:
    """Refuse ``-o`` naming a file the run analyzes: writing it would destroy the source."""
    try:
        target = os.stat(output)
    except OSError:
        return  # does not exist (yet): it cannot be an input
    for path in inputs:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
            raise OutputError(
                f"{output}: refusing to write the report over {path}, a file being analyzed"
            )


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def report_stream(output: Path | None) -> Iterator[TextIO]:
    """The stream to write the report to; on a clean exit the report is in place."""
    if output is None:
        stream = _stdout()
        try:
            yield stream
            stream.flush()
        except BrokenPipeError:
            raise  # `| head`: the reader left; the CLI stops quietly
        except OSError as exc:  # `> /dev/full`, a closed descriptor
            raise OutputError(
                f"cannot write the report to standard output: {_reason(exc)}"
            ) from None
        return
    try:
        info: os.stat_result | None = os.stat(output)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report: {_reason(exc)}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{output}: cannot write the report: is a directory")
    if info is not None and not stat.S_ISREG(info.st_mode):
        yield from _direct(output)
    else:
        yield from _replacing(output, info)


def _stdout() -> TextIO:
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise OutputError("cannot write the report: standard output is closed (use -o FILE)")
    return sys.stdout


def _direct(output: Path) -> Iterator[TextIO]:
    try:
        handle = open(output, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report: {_reason(exc)}") from None
    try:
        yield handle
    finally:
        try:
            handle.close()
        except OSError as exc:
            raise OutputError(f"{output}: cannot write the report: {_reason(exc)}") from None


def _replacing(output: Path, info: os.stat_result | None) -> Iterator[TextIO]:
    # The rename must replace the link's target, not the link itself.
    target = Path(os.path.realpath(output))
    try:
        import tempfile  # only for -o: a report on stdout does not need it

        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report: {_reason(exc)}") from None
    done = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            yield handle
        os.chmod(temp, stat.S_IMODE(info.st_mode) if info is not None else _default_mode())
        os.replace(temp, target)
        done = True
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report: {_reason(exc)}") from None
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(temp)
