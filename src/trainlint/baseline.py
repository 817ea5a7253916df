"""Baselines: the findings a repository already had, so that CI gates only new ones.

A finding is matched by its *fingerprint*, not its line: the path, the rule code and the
normalized text of the lines it anchors on (whitespace collapsed, a trailing ``# noqa`` comment
dropped). Inserting lines above a finding, re-indenting it or reformatting around it keeps
the match; editing the flagged statement itself makes it a new finding. Several findings with
one fingerprint in one file are told apart by their order (an occurrence index), so a baseline
of two identical ``total += loss`` lines still reports a third one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from trainlint.rule import Finding

BASELINE_VERSION = 1
_SPACE = re.compile(r"\s+")
_TRAILING_NOQA = re.compile(r"#\s*noqa\b.*$", re.IGNORECASE)


class BaselineError(Exception):
    """The baseline file cannot be read or written; the message names it and says why."""


def anchor_text(lines: Sequence[str], line: int, end_line: int) -> str:
    """The flagged lines with whitespace normalized and a trailing noqa comment removed."""
    chosen = lines[max(0, line - 1) : max(line, min(end_line, line + 20))]
    text = " ".join(_TRAILING_NOQA.sub("", part) for part in chosen)
    return _SPACE.sub(" ", text).strip()


def finding_fingerprint(code: str, anchor: str) -> str:
    """The content part of a finding's identity (the path is added when matching)."""
    return hashlib.sha256(f"{code}\0{anchor}".encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _key_path(path: str, base: Path) -> str:
    """The finding's path relative to the baseline's directory, with forward slashes."""
    try:
        relative = os.path.relpath(os.path.abspath(path), base)
    except ValueError:  # another drive (Windows)
        relative = path
    return PurePath(relative).as_posix()


def _identities(findings: Iterable[Finding], base: Path) -> list[tuple[Finding, str]]:
    """(finding, identity) with the occurrence index that tells equal fingerprints apart."""
    seen: Counter[tuple[str, str, str]] = Counter()
    found = []
    for finding in sorted(findings):
        key = (_key_path(finding.path, base), finding.code, finding.fingerprint)
        found.append((finding, "|".join((*key, str(seen[key])))))
        seen[key] += 1
    return found


@dataclass
class Baseline:
    path: Path
    entries: Counter[str] = field(default_factory=Counter)
    matched: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise BaselineError(
                f"{path}: baseline not found (create it with --create-baseline)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{path}: cannot read the baseline: {exc}") from None
        except json.JSONDecodeError as exc:
            raise BaselineError(f"{path}: not a baseline: bad JSON ({exc.msg})") from None
        entries = data.get("findings") if isinstance(data, dict) else None
        if data.get("version") != BASELINE_VERSION or not isinstance(entries, list):  # type: ignore[union-attr]
            raise BaselineError(f"{path}: not a trainlint baseline (version {BASELINE_VERSION})")
        baseline = cls(path)
        for entry in entries:
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), str) for k in ("path", "code", "fingerprint")
            ):
                raise BaselineError(f"{path}: malformed entry {entry!r}")
            count = entry.get("count", 1)
            if type(count) is not int or count < 1:
                raise BaselineError(f"{path}: malformed count in entry {entry!r}")
            for index in range(count):
                identity = "|".join(
                    (entry["path"], entry["code"], entry["fingerprint"], str(index))
                )
                baseline.entries[identity] += 1
        return baseline

    @property
    def base(self) -> Path:
        return self.path.resolve().parent

    def new_findings(self, findings: Iterable[Finding]) -> list[Finding]:
        """The findings the baseline does not account for (and records those it does)."""
        fresh = []
        for finding, identity in _identities(findings, self.base):
            if self.matched[identity] < self.entries[identity]:
                self.matched[identity] += 1
            else:
                fresh.append(finding)
        return sorted(fresh)

    @property
    def unmatched(self) -> int:
        """Baseline entries no finding of this run matched: fixed, or the code changed."""
        return sum((self.entries - self.matched).values())


def write_baseline(path: Path, findings: Iterable[Finding]) -> int:
    """Record ``findings`` in ``path`` (atomically); returns how many were recorded."""
    base = path.resolve().parent
    counts: Counter[tuple[str, str, str]] = Counter()
    for finding, _ in _identities(findings, base):
        counts[(_key_path(finding.path, base), finding.code, finding.fingerprint)] += 1
    entries = [
        {"path": p, "code": c, "fingerprint": f, "count": n}
        for (p, c, f), n in sorted(counts.items())
    ]
    document = {"version": BASELINE_VERSION, "tool": "trainlint", "findings": entries}
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(json.dumps(document, indent=1) + "\n", "utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot write the baseline: {exc.strerror or exc}") from None
    return sum(counts.values())
