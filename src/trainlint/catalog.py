"""The rule catalog: what every installed rule is (code, name, severity, triggers, docs),
known without importing a single rule module.

Loading the registry means scanning entry points (``importlib.metadata``) and importing every
rule module, and with them libcst and the model: most of a cached run's start-up. So the
catalog is built once from the real registry and kept in a small JSON file in the user's cache
directory, valid while nothing it was built from has changed:

- the interpreter, trainlint's version and ``sys.path``;
- the distributions installed on ``sys.path`` (the names of their ``*.dist-info`` /
  ``*.egg-info`` entries: a pack installed, removed or upgraded changes them) and the
  ``entry_points.txt`` of those that register rule packs;
- every source file and directory of trainlint and of each installed pack (a rule module
  added to or edited in an editable install changes a directory's or a file's stamp).

Checking all that costs one directory listing per ``sys.path`` entry and a few hundred
``stat`` calls. The stamps of trainlint's and the packs' sources also key the results cache
(:attr:`Catalog.code_stamp`), so an edited rule or model module never serves a stale result.
Set ``TRAINLINT_RULE_CACHE`` to a file to keep the catalog there, or to ``off`` to rebuild it
on every run. Any problem reading or writing the file only means rebuilding it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trainlint
from trainlint.rule import ENTRY_POINT_GROUP, Applicability, Rule, Severity, load_registry

#: Bump when the file's layout changes.
CATALOG_FORMAT = 1
CACHE_VARIABLE = "TRAINLINT_RULE_CACHE"
_METADATA_SUFFIXES = (".dist-info", ".egg-info")

# (path, st_size, st_mtime_ns); a path that vanished stamps as (path, -1, -1).
Stamp = tuple[str, int, int]


@dataclass(frozen=True)
class RuleInfo:
    """A rule's metadata; reporters, ``rules`` and ``explain`` read it like the rule class."""

    code: str
    name: str
    severity: Severity
    frameworks: tuple[str, ...]
    triggers: tuple[str, ...]
    summary: str  # the rule's one_line()
    docs: str  # the rule's documentation()
    fix_availability: str
    fix_applicability: Applicability
    uses_suppressions: bool
    module: str
    qualname: str
    block_triggers: tuple[str, ...] | None = None

    @classmethod
    def of(cls, rule: type[Rule]) -> RuleInfo:
        return cls(
            code=rule.code,
            name=rule.name,
            severity=rule.severity,
            frameworks=tuple(rule.frameworks),
            triggers=tuple(rule.triggers),
            summary=rule.one_line(),
            docs=rule.documentation(),
            fix_availability=rule.fix_availability,
            fix_applicability=rule.fix_applicability,
            uses_suppressions=rule.uses_suppressions,
            module=rule.__module__,
            qualname=rule.__qualname__,
            block_triggers=None if rule.block_triggers is None else tuple(rule.block_triggers),
        )

    def documentation(self) -> str:
        return self.docs

    def one_line(self) -> str:
        return self.summary

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if k not in ("severity", "fix_applicability")},
            "severity": self.severity.label,
            "fix_applicability": self.fix_applicability.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleInfo:
        return cls(
            **{
                **data,
                "severity": Severity.parse(data["severity"]),
                "fix_applicability": Applicability(data["fix_applicability"]),
                "frameworks": tuple(data["frameworks"]),
                "triggers": tuple(data["triggers"]),
                "block_triggers": (
                    None if data.get("block_triggers") is None else tuple(data["block_triggers"])
                ),
            }
        )

    def load(self) -> type[Rule]:
        """The rule class itself (imports its module)."""
        import importlib

        target: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            target = getattr(target, part)
        return target  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Catalog:
    rules: dict[str, RuleInfo]  # by code, sorted
    #: A digest of trainlint's and every pack's source stamps (part of every results key).
    code_stamp: str
    #: The stamps ``code_stamp`` digests (the catalog is valid while they are unchanged).
    watched: list[Stamp]
    #: True when read from the file (no rule module was imported).
    cached: bool = False


_loaded: tuple[str, Catalog] | None = None  # (environment key, catalog) of this process


def load_catalog() -> Catalog:
    """The installed rules' metadata: from the cache file when still valid, else from the
    registry (importing every pack; a broken pack raises :class:`RegistryError`)."""
    global _loaded
    environment = _environment_key()
    if _loaded is not None and _loaded[0] == environment and _unchanged(_loaded[1].watched):
        return _loaded[1]
    path = cache_file()
    data = _read(path) if path is not None else None
    catalog = _from_data(data, environment) if data is not None else None
    if catalog is None:
        catalog, data = _build(environment)
        if path is not None:
            _write(path, data)
    _loaded = (environment, catalog)
    return catalog


# ---------------------------------------------------------------------- where it lives
def cache_file() -> Path | None:
    """The catalog's file for this interpreter; None when caching is off."""
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "0", "off", "no") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no home directory
            return None
    # One file per interpreter and search path: ``trainlint`` and ``python -m trainlint`` see
    # different sys.path[0] and must not overwrite each other's catalog.
    where = hashlib.sha256(repr((sys.executable, sys.prefix, sys.path)).encode()).hexdigest()
    where = where[:16]
    return Path(base) / "trainlint" / f"rules-{where}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    import tempfile

    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(temp, path)
        temp = None
    except (OSError, TypeError, ValueError):
        pass  # a read-only home only costs the next run its start-up
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


# ---------------------------------------------------------------------- validity
def _environment_key() -> list[Any]:
    """What the set of installed packs depends on, short of importing them."""
    installed = []
    for entry in sys.path:
        try:
            names = sorted(n for n in os.listdir(entry or ".") if n.endswith(_METADATA_SUFFIXES))
        except OSError:  # a zip file, or an entry that does not exist
            names = [list(_stamp(entry))]  # type: ignore[list-item]
        installed.append([entry, names])
    return [CATALOG_FORMAT, trainlint.__version__, sys.executable, sys.version, installed]


def _stamp(path: str) -> Stamp:
    try:
        stat = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, stat.st_size, stat.st_mtime_ns)


def _digest(watched: list[Stamp]) -> str:
    return hashlib.sha256(repr(watched).encode()).hexdigest()


def _unchanged(watched: list[Stamp]) -> bool:
    return all(_stamp(path) == (path, size, mtime) for path, size, mtime in watched)


def _from_data(data: dict[str, Any], environment: list[Any]) -> Catalog | None:
    try:
        if data.get("environment") != environment:
            return None
        watched: list[Stamp] = [(str(p), int(s), int(m)) for p, s, m in data["watched"]]
        if not _unchanged(watched):
            return None
        rules = {item["code"]: RuleInfo.from_dict(item) for item in data["rules"]}
        code_stamp = data["code_stamp"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not isinstance(code_stamp, str):
        return None
    return Catalog(dict(sorted(rules.items())), code_stamp, watched, cached=True)


def _build(environment: list[Any]) -> tuple[Catalog, dict[str, Any]]:
    registry = load_registry()
    watched = _watched(registry)
    code_stamp = _digest(watched)
    rules = {code: RuleInfo.of(rule) for code, rule in registry.items()}
    data = {
        "environment": environment,
        "watched": watched,
        "code_stamp": code_stamp,
        "rules": [info.to_dict() for info in rules.values()],
    }
    return Catalog(rules, code_stamp, watched), data


def _watched(registry: dict[str, type[Rule]]) -> list[Stamp]:
    """Stamps of every source file and directory of trainlint and of the installed packs,
    and of the ``entry_points.txt`` files that register the packs."""
    roots: set[str] = {os.path.dirname(os.path.abspath(trainlint.__file__))}
    files: set[str] = set()
    for rule in registry.values():
        top = sys.modules.get(rule.__module__.partition(".")[0])
        for directory in getattr(top, "__path__", ()):
            roots.add(os.path.abspath(directory))
        file = getattr(sys.modules.get(rule.__module__), "__file__", None)
        if file:
            files.add(os.path.abspath(file))
    files.update(_entry_point_files())
    for root in roots:
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
            files.add(directory)
            files.update(os.path.join(directory, n) for n in names if n.endswith(".py"))
    return [_stamp(path) for path in sorted(files)]


def _entry_point_files() -> list[str]:
    from trainlint.rule import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # A PathDistribution's own folder (private, but stable since Python 3.8); other
        # kinds of distribution are covered by the listing of sys.path alone.
        folder = getattr(getattr(ep, "dist", None), "_path", None)
        if folder is not None:
            found.append(os.path.abspath(os.path.join(str(folder), "entry_points.txt")))
    return found
