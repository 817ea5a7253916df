"""Find, load and validate ``[tool.trainlint]`` (pyproject.toml) or ``trainlint.toml``.

Every error is a :class:`ConfigError` whose one-line message names the file and the key, so
the CLI can print it as is and exit 2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlint import safeio
from trainlint.rule import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: A configuration file bigger than this is not one (and must not be read without bound).
MAX_CONFIG_BYTES = 10_000_000

FORMATS = ("text", "json", "sarif", "github", "junit")
#: Searched in this order in each directory, from the first path upwards.
CONFIG_FILES = ("trainlint.toml", ".trainlint.toml", "pyproject.toml")
KEYS = (
    "select",
    "ignore",
    "extend-select",
    "per-file-ignores",
    "exclude",
    "extend-exclude",
    "fail-on",
    "format",
    "cache-dir",
    "severity",
    "max-file-size",
    "include-notebooks",
    "respect-gitignore",
    "force-exclude",
    "baseline",
)


class ConfigError(Exception):
    """Bad configuration or selection; the message names the file (or option) and the key."""


@dataclass(frozen=True)
class RuleSelection:
    """One layer of rule selection (the config file, then the command line), as in ruff."""

    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)


@dataclass
class Config:
    path: Path | None = None
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    exclude: list[str] | None = None
    extend_exclude: list[str] = field(default_factory=list)
    fail_on: Severity = Severity.WARNING
    format: str = "text"
    cache_dir: Path | None = None
    baseline: Path | None = None
    #: Code or prefix -> severity; :meth:`severity_overrides` resolves prefixes.
    severity: dict[str, Severity] = field(default_factory=dict)
    max_file_size: int = 1_000_000
    include_notebooks: bool = False
    respect_gitignore: bool = True
    force_exclude: bool = False

    @property
    def root(self) -> Path:
        """Globs (excludes, per-file-ignores) are relative to the config file's directory."""
        return self.path.parent if self.path else Path.cwd()

    @property
    def selection(self) -> RuleSelection:
        return RuleSelection(self.select, self.ignore, self.extend_select)

    def severity_overrides(self, known: Iterable[str]) -> dict[str, Severity]:
        """Per code; of several matching prefixes the most specific one wins."""
        overrides: dict[str, Severity] = {}
        for code in known:
            matching = [p for p in self.severity if p == "ALL" or code.startswith(p)]
            if matching:
                best = max(matching, key=lambda p: 0 if p == "ALL" else len(p))
                overrides[code] = self.severity[best]
        return overrides


# ---------------------------------------------------------------------- finding the file
def _declares_trainlint(path: Path) -> bool:
    """A pyproject.toml counts only if it has ``[tool.trainlint]`` (as ruff does for its table).

    A pyproject.toml that is not valid TOML counts when it visibly mentions the table, so that
    a typo in the user's configuration is reported instead of silently ignored.
    """
    if path.name != "pyproject.toml":
        return True
    try:
        text = safeio.read_regular(path, MAX_CONFIG_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return "tool.trainlint" in text
    tool = data.get("tool")
    return isinstance(tool, dict) and "trainlint" in tool


def find_config(start: Path) -> Path | None:
    """The nearest config file in ``start``'s directory or above it."""
    found = find_configs(start)
    return found[0] if found else None


def find_configs(start: Path) -> list[Path]:
    """The nearest directory's config files, in precedence order: the first one is used,
    the others (``pyproject.toml`` beside a ``trainlint.toml``) are ignored."""
    start = start.absolute()
    directory = start if _is_dir(start) else start.parent
    for candidate_dir in (directory, *directory.parents):
        here = [
            candidate_dir / name
            for name in CONFIG_FILES
            if _is_file(candidate_dir / name) and _declares_trainlint(candidate_dir / name)
        ]
        if here:
            return here
    return []


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # unreadable parent, name too long: not a directory we can use
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


# ---------------------------------------------------------------------- validation helpers
def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, not {_describe(value)}")
    return list(value)


_KINDS = {bool: "a boolean", int: "a number", float: "a number", dict: "a table", str: "a string"}


def _describe(value: Any) -> str:
    """``a number``, ``a table``...: how a wrong TOML value is named in an error message."""
    if isinstance(value, list):
        return "a list containing " + ", ".join(sorted({_describe(v) for v in value}))
    return _KINDS.get(type(value), type(value).__name__)


def check_codes(codes: Iterable[str], known: Iterable[str], where: str) -> list[str]:
    """Codes, prefixes (``TL1``) or ``ALL``; every one must match at least one known rule."""
    known = list(known)
    checked = []
    for code in codes:
        normalized = code.strip().upper()
        if not normalized:
            continue
        if normalized != "ALL" and not any(k.startswith(normalized) for k in known):
            hint = _close_matches(normalized, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"{where}: unknown rule code or prefix {code!r}{suggestion}")
        checked.append(normalized)
    return checked


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be one of info, warning, error, not {_describe(value)}")
    try:
        return Severity.parse(value)
    except ValueError:
        raise ConfigError(f"{where} must be one of info, warning, error, not {value!r}") from None


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {_describe(value)}")
    return value


# ---------------------------------------------------------------------- loading
def load_config(path: Path, known_codes: Iterable[str]) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the file and the key."""
    try:
        # utf-8-sig: editors on Windows write a BOM, which TOML itself does not allow.
        data = tomllib.loads(safeio.read_regular(path, MAX_CONFIG_BYTES).decode("utf-8-sig"))
    except safeio.NotRegular as exc:
        if exc.kind == "a directory":
            raise ConfigError(f"{path}: is a directory, not a config file") from None
        raise ConfigError(f"{path}: {exc.kind}, not a config file; not read") from None
    except safeio.TooLarge as exc:
        raise ConfigError(
            f"{path}: too large for a config file ({exc.size} bytes > {MAX_CONFIG_BYTES})"
        ) from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
    tool = data.get("tool", {})
    if path.name == "pyproject.toml" or "trainlint" in (tool if isinstance(tool, dict) else {}):
        table = tool.get("trainlint", {}) if isinstance(tool, dict) else {}
        section = "[tool.trainlint]"
    else:  # a standalone trainlint.toml may put the keys at the top level, like ruff.toml
        table, section = data, "trainlint.toml"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {section} must be a table")
    return parse_table(table, path, list(known_codes), section)


def parse_table(
    table: dict[str, Any], path: Path, known_codes: list[str], section: str = "[tool.trainlint]"
) -> Config:
    config = Config(path=path)
    for key, value in table.items():
        where = _where(path, key)
        if key in ("select", "ignore", "extend-select"):
            codes = check_codes(_string_list(value, where), known_codes, where)
            if key == "select" and not codes:
                raise ConfigError(f"{where} selects no rule; remove it to run every rule")
            setattr(config, key.replace("-", "_"), codes)
        elif key == "per-file-ignores":
            config.per_file_ignores = _per_file_ignores(value, path, known_codes)
        elif key in ("exclude", "extend-exclude"):
            setattr(config, key.replace("-", "_"), _patterns(value, where))
        elif key == "fail-on":
            config.fail_on = _severity(value, where)
        elif key == "format":
            if value not in FORMATS:
                raise ConfigError(f"{where} must be one of {', '.join(FORMATS)}, not {value!r}")
            config.format = value
        elif key == "cache-dir":
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a path string, not {_describe(value)}")
            problem = path_problem(value)
            if problem:
                raise ConfigError(f"{where} {problem}")
            try:
                config.cache_dir = (path.parent / Path(value).expanduser()).resolve()
            except (OSError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"{where} is not a usable path: {exc}") from None
        elif key == "baseline":
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"{where} must be the path of a baseline file, not {_describe(value)}"
                )
            config.baseline = (path.parent / Path(value).expanduser()).resolve()
        elif key == "severity":
            config.severity = _severity_table(value, path, known_codes)
        elif key == "max-file-size":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where} must be a number of bytes (0: no limit), not {value!r}")
            config.max_file_size = value
        elif key in ("include-notebooks", "respect-gitignore", "force-exclude"):
            setattr(config, key.replace("-", "_"), _boolean(value, where))
        else:
            hint = _close_matches(key, KEYS, n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{path}: unknown key {key!r} in {section}{suggestion}")
    return config


def _where(path: Path, key: str) -> str:
    return f"{path}: '{key}'"


def path_problem(value: str) -> str | None:
    """Why a configured or given directory path is unusable; None when it is fine."""
    if not value.strip():
        return "must not be empty (an unset variable?)"
    if "\0" in value:
        return "contains a NUL byte"
    return None


def _patterns(value: Any, where: str) -> list[str]:
    """Gitignore-style patterns, each one checked: a bad one is an error naming it."""
    import pathspec

    patterns = _string_list(value, where)
    for pattern in patterns:
        try:
            pathspec.GitIgnoreSpec.from_lines([pattern])
        except (ValueError, TypeError, IndexError, re.error) as exc:
            raise ConfigError(f"{where}: invalid pattern {pattern!r} ({exc})") from None
    return patterns


def _per_file_ignores(value: Any, path: Path, known_codes: list[str]) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ConfigError(
            f'{_where(path, "per-file-ignores")} must be a table of "glob" = [codes], '
            f"not {_describe(value)}"
        )
    ignores = {}
    for glob, codes in value.items():
        where = _where(path, f"per-file-ignores.{glob}")
        if not glob.strip() or "\0" in glob:
            raise ConfigError(f"{where}: the glob must not be empty")
        ignores[glob] = check_codes(_string_list(codes, where), known_codes, where)
    return ignores


def _severity_table(value: Any, path: Path, known_codes: list[str]) -> dict[str, Severity]:
    if not isinstance(value, dict):
        raise ConfigError(
            f'{_where(path, "severity")} must be a table of CODE = "error|warning|info", '
            f"not {_describe(value)}"
        )
    overrides = {}
    for code, level in value.items():
        where = _where(path, f"severity.{code}")
        if not code.strip():
            raise ConfigError(f"{where}: empty rule code")
        overrides[check_codes([code], known_codes, where)[0]] = _severity(level, where)
    return overrides


# ---------------------------------------------------------------------- selection
def _specificity(selector: str) -> int:
    return 0 if selector == "ALL" else len(selector)


def _best_match(code: str, selectors: Iterable[str]) -> int:
    """Length of the most specific selector matching ``code``; -1 when none does."""
    return max((_specificity(s) for s in selectors if s == "ALL" or code.startswith(s)), default=-1)


def resolve_selection(known: Iterable[str], *layers: RuleSelection) -> list[str]:
    """The selected codes, applying the layers in order (config file, then command line).

    As in ruff: a layer's ``select`` replaces everything before it, ``extend-select`` adds,
    ``ignore`` removes, and within a layer the most specific selector wins (``select = ["TL1"]``
    with ``ignore = ["TL101"]`` drops TL101; ``select = ["TL101"]`` with ``ignore = ["TL1"]``
    keeps it). With no ``select`` anywhere, every rule is selected.
    """
    known = list(known)
    enabled = set(known)
    for layer in layers:
        enabling = [*(layer.select or []), *layer.extend_select]
        base = set() if layer.select is not None else enabled
        chosen = set()
        for code in known:
            on, off = _best_match(code, enabling), _best_match(code, layer.ignore)
            if off >= 0 and off >= on:
                continue
            if on >= 0 or code in base:
                chosen.add(code)
        enabled = chosen
    return sorted(enabled)


def select_codes(
    known: Iterable[str],
    select: list[str] | None,
    ignore: Iterable[str],
    extend_select: Iterable[str] = (),
) -> list[str]:
    """One-layer form of :func:`resolve_selection` (kept for callers such as the benchmark)."""
    return resolve_selection(known, RuleSelection(select, list(ignore), list(extend_select)))


def _close_matches(word: str, candidates: Iterable[str], n: int = 1) -> list[str]:
    import difflib  # only to word an error message

    return difflib.get_close_matches(word, candidates, n=n)
