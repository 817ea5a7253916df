"""Find, load and validate ``[tool.trainlint]`` (pyproject.toml) or ``trainlint.toml``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlint.rule import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FORMATS = ("text", "json", "sarif", "github", "junit")
CONFIG_FILES = ("trainlint.toml", ".trainlint.toml", "pyproject.toml")


class ConfigError(Exception):
    """Bad configuration; the message names the file and the key."""


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
    severity: dict[str, Severity] = field(default_factory=dict)
    max_file_size: int = 1_000_000
    include_notebooks: bool = False
    respect_gitignore: bool = True

    @property
    def root(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def _has_trainlint_table(path: Path) -> bool:
    if path.name != "pyproject.toml":
        return True
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return "trainlint" in data.get("tool", {})


def find_config(start: Path) -> Path | None:
    start = start.absolute()
    directory = start if start.is_dir() else start.parent
    for candidate_dir in (directory, *directory.parents):
        for name in CONFIG_FILES:
            candidate = candidate_dir / name
            if candidate.is_file() and _has_trainlint_table(candidate):
                return candidate
    return None


def _string_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings")
    return list(value)


def check_codes(codes: Iterable[str], known: Iterable[str], where: str) -> list[str]:
    """Codes, prefixes (``TL1``) or ``ALL``; every one must match at least one known rule."""
    known = list(known)
    checked = []
    for code in codes:
        normalized = code.strip().upper()
        if normalized != "ALL" and not any(k.startswith(normalized) for k in known):
            raise ConfigError(f"{where}: unknown rule code or prefix {code!r}")
        checked.append(normalized)
    return checked


def load_config(path: Path, known_codes: Iterable[str]) -> Config:
    known_codes = list(known_codes)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("trainlint", {})
    else:
        table = data.get("tool", {}).get("trainlint", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.trainlint] must be a table")
    return parse_table(table, path, known_codes)


def parse_table(table: dict[str, Any], path: Path, known_codes: list[str]) -> Config:
    config = Config(path=path)
    where = str(path)
    for key, value in table.items():
        here = f"{where}: '{key}'"
        if key in ("select", "ignore", "extend-select"):
            codes = check_codes(_string_list(value, key, where), known_codes, where)
            setattr(config, key.replace("-", "_"), codes)
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise ConfigError(f"{here} must be a table of glob = [codes]")
            config.per_file_ignores = {
                glob: check_codes(_string_list(codes, f"{key}.{glob}", where), known_codes, where)
                for glob, codes in value.items()
            }
        elif key in ("exclude", "extend-exclude"):
            setattr(config, key.replace("-", "_"), _string_list(value, key, where))
        elif key == "fail-on":
            config.fail_on = _severity(value, here)
        elif key == "format":
            if value not in FORMATS:
                raise ConfigError(f"{here} must be one of {', '.join(FORMATS)}, not {value!r}")
            config.format = value
        elif key == "cache-dir":
            if not isinstance(value, str):
                raise ConfigError(f"{here} must be a path string")
            config.cache_dir = (path.parent / value).resolve()
        elif key == "severity":
            if not isinstance(value, dict):
                raise ConfigError(f'{here} must be a table of CODE = "error|warning|info"')
            for code, level in value.items():
                check_codes([code], known_codes, where)
                config.severity[code.upper()] = _severity(level, f"{where}: 'severity.{code}'")
        elif key == "max-file-size":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{here} must be a number of bytes (0: no limit)")
            config.max_file_size = value
        elif key in ("include-notebooks", "respect-gitignore"):
            if not isinstance(value, bool):
                raise ConfigError(f"{here} must be true or false")
            setattr(config, key.replace("-", "_"), value)
        else:
            raise ConfigError(f"{where}: unknown key {key!r} in [tool.trainlint]")
    return config


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be one of info, warning, error")
    try:
        return Severity.parse(value)
    except ValueError:
        raise ConfigError(f"{where} must be one of info, warning, error, not {value!r}") from None


def select_codes(
    known: Iterable[str],
    select: list[str] | None,
    ignore: Iterable[str],
    extend_select: Iterable[str] = (),
) -> list[str]:
    """The selected codes: ``select`` (default ALL) plus ``extend-select``, minus ``ignore``."""
    known = list(known)

    def matching(prefixes: Iterable[str]) -> set[str]:
        prefixes = list(prefixes)
        if "ALL" in prefixes:
            return set(known)
        return {k for k in known if any(k.startswith(p) for p in prefixes)}

    chosen = matching(select if select is not None else ["ALL"]) | matching(extend_select)
    return sorted(chosen - matching(ignore))
