"""Reading files that may be anything: a FIFO, a device, a 6 GB file, a path too long.

Every read of a user-controlled path (sources, the config, cache entries) goes through
:func:`read_regular`: it opens without blocking, checks that it got a regular file, checks the
size with ``fstat`` before reading a byte, and never reads more than the limit. A FIFO named
``x.py`` then cannot hang the run, and ``x.py -> /dev/zero`` cannot exhaust memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: Read in pieces of this size, so that a file that grows while read stops at the limit.
_CHUNK = 1 << 20


class NotRegular(OSError):
    """The path is a FIFO, socket, device or directory: never read it."""

    def __init__(self, kind: str) -> None:
        super().__init__(errno.EINVAL, kind)
        self.kind = kind


class TooLarge(OSError):
    """The file is bigger than the limit; ``size`` is what ``fstat`` (or the read) saw."""

    def __init__(self, size: int) -> None:
        super().__init__(errno.EFBIG, "file too large")
        self.size = size


def file_kind(mode: int) -> str:
    """A human name for a non-regular file type."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def read_regular(path: Path | str, limit: int = 0) -> bytes:
    """The bytes of the regular file at ``path`` (following symlinks).

    Raises :class:`NotRegular` for anything but a regular file, :class:`TooLarge` when it holds
    more than ``limit`` bytes (0: no limit), and any other ``OSError`` from opening/reading.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO with no writer returns at once
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(file_kind(info.st_mode))
        if limit and info.st_size > limit:
            raise TooLarge(info.st_size)
        pieces: list[bytes] = []
        total = 0
        while True:
            # /proc files report size 0 and regular files may grow: the limit bounds the read.
            want = _CHUNK if not limit else min(_CHUNK, limit + 1 - total)
            piece = os.read(fd, want)
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
            if limit and total > limit:
                raise TooLarge(total)
        return b"".join(pieces)
    finally:
        os.close(fd)
