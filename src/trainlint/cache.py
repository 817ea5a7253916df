"""Results cache: one small JSON file per (content, trainlint version, config, rules) key.

Writes are atomic (temp file + rename), so concurrent runs never see half an entry; a
damaged or foreign entry is ignored and recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from trainlint import __version__

CACHE_FORMAT = 1


def fingerprint(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in (__version__, CACHE_FORMAT, *parts):
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def entry_key(content: bytes, run_fingerprint: str) -> str:
    return hashlib.sha256(run_fingerprint.encode() + b"\0" + content).hexdigest()


class Cache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key[2:]}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(key).read_text("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        if not isinstance(data.get("findings"), list):
            return None
        return data

    def put(self, key: str, data: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not (self.directory / "CACHEDIR.TAG").exists():
                (self.directory / ".gitignore").write_text("*\n")
                (self.directory / "CACHEDIR.TAG").write_text(
                    "Signature: 8a477f597d28d172789f06886806bc55\n# trainlint cache\n"
                )
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({**data, "key": key}, handle)
            os.replace(temp, path)
        except OSError:
            pass  # a read-only or full disk must not fail the lint run
