"""Checks on ``trainlint check``'s options and environment that are not click's business:
an unset CI variable (``--select ""``, ``--cache-dir ""``), absurd ``--jobs``, a deleted cwd."""

from __future__ import annotations

import os
from pathlib import Path

import click

from trainlint.engine import available_cpus
from trainlint.report import shown


class OptionError(Exception):
    """trainlint cannot run as asked; the message says why in one line."""


def warn(message: str, quiet: bool, kind: str = "warning") -> None:
    if not quiet:
        click.echo(f"trainlint: {kind}: {shown(message)}", err=True)


#: More workers than this per CPU only add memory and start-up time.
MAX_JOBS_PER_CPU = 4


def bounded_jobs(jobs: int, quiet: bool) -> int:
    limit = min(MAX_JOBS_PER_CPU * available_cpus(), 61)  # 61: the Windows pool's ceiling
    if jobs > limit:
        warn(f"--jobs {jobs} is more than this machine can use: using {limit}", quiet)
        return limit
    return jobs


def enter_a_directory(paths: tuple[Path, ...]) -> None:
    """Survive a deleted current directory when every path is absolute (display paths and
    SARIF's base are relative to the cwd, so move to the paths' common directory)."""
    try:
        Path.cwd()
        return
    except OSError:
        pass
    if not all(p.is_absolute() for p in paths):
        raise OptionError(
            "the current directory no longer exists (deleted?): run from an existing "
            "directory or give absolute paths"
        )
    common = os.path.commonpath([os.path.dirname(p) or p for p in paths])
    try:
        os.chdir(common)
    except OSError as exc:
        raise OptionError(f"{common}: cannot enter: {exc.strerror or exc}") from None
