"""Start-up: what a short command imports, and the rule catalog that makes it short.

A run where every file is cached, ``--version``, ``--help``, ``rules --format json`` and
``explain`` must not import libcst, the model, any rule module or rich (they are most of a
cold start). Each is run in a fresh interpreter that prints ``sys.modules`` as it exits. No
test here is timed: bench/startup.py measures the time.

The catalog (trainlint.catalog) stands in for the imported rules, so it must notice every
change of the installed packs: a rule module added, edited or removed, a pack installed or
uninstalled.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import trainlint.rule
from trainlint import catalog
from trainlint.catalog import load_catalog

from venvtools import REPO, ThrowawayVenv

HEAVY = ("libcst", "trainlint.model", "trainlint_rules", "rich")

# Runs trainlint's command line, then writes the names of every imported module to argv[1].
PROBE = """\
import sys
out = sys.argv.pop(1)
try:
    from trainlint.cli import main
    main()
finally:
    with open(out, "w") as handle:
        handle.write("\\n".join(sorted(sys.modules)))
"""

TRAINING = """\
import torch

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for batch in loader:
    optimizer.zero_grad()
    loss = criterion(model(batch), batch.y)
    loss.backward()
    optimizer.step
"""


def imported(tmp_path: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    probe, out = tmp_path / "probe.py", tmp_path / "modules.txt"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(probe), str(out), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    return set(out.read_text().split()), done


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in HEAVY))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text(TRAINING)
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("check", "train.py"), id="check"),
        pytest.param(("check", "train.py", "-q", "-j", "1", "--force-exclude"), id="pre-commit"),
        pytest.param(("check", "train.py", "--format", "json"), id="json"),
    ],
)
def test_a_cached_check_imports_no_parser_model_rule_or_rich(
    project: Path, args: tuple[str, ...]
) -> None:
    cold, first = imported(project, *args)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "libcst" in cold and "trainlint_rules.TL405_missing_call_parens" in cold
    warm, second = imported(project, *args)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "TL405" in second.stdout
    if "json" in args:
        assert json.loads(second.stdout)["findings"] == json.loads(first.stdout)["findings"]
    else:
        assert findings_part(second.stdout) == findings_part(first.stdout)
    assert heavy(warm) == []


def test_the_cached_report_is_the_cold_one(project: Path) -> None:
    args = ("check", "train.py", "--format", "json")
    _, cold = imported(project, *args)
    _, warm = imported(project, *args)
    assert json.loads(cold.stdout)["findings"] == json.loads(warm.stdout)["findings"]
    text_cold = imported(project, "check", "train.py", "--no-cache")[1].stdout
    text_warm = imported(project, "check", "train.py")[1].stdout
    assert "optimizer.step" in text_warm
    assert findings_part(text_cold) == findings_part(text_warm)


def findings_part(report: str) -> str:
    """A text report without its summary (which counts files parsed vs cached, and times)."""
    return report.split("Found ")[0]


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("check", "--help"),
        ("rules", "--format", "json"),
        ("explain", "TL405"),
    ],
    ids=["version", "help", "check-help", "rules", "explain"],
)
def test_short_commands_import_no_parser_model_rule_or_rich(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    imported(tmp_path, "rules", "--format", "json")  # the catalog is built once
    modules, done = imported(tmp_path, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert heavy(modules) == []
    if args[0] in ("--version", "--help"):
        trainlint_modules = {m for m in modules if m.startswith("trainlint")}
        assert trainlint_modules <= {"trainlint", "trainlint.cli", "trainlint.cli.base"}


# ---------------------------------------------------------------------------- the catalog
RULE = '''\
from trainlint import Rule


class Example(Rule):
    """{doc}"""

    code = {code!r}
    name = {name!r}
    triggers = ("example",)

    def check(self, model):
        return []
'''


@pytest.fixture
def pack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A rule pack (package ``catalog_pack``) registered next to the real ones."""
    monkeypatch.syspath_prepend(str(tmp_path))
    package = tmp_path / "catalog_pack"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "XYZ101_first.py").write_text(
        RULE.format(doc="Finds the first thing.", code="XYZ101", name="first")
    )
    real = trainlint.rule.entry_points
    added = EntryPoint(name="cat", value="catalog_pack", group=trainlint.rule.ENTRY_POINT_GROUP)
    monkeypatch.setattr(
        trainlint.rule, "entry_points", lambda *, group: [*real(group=group), added]
    )
    yield package
    for name in [m for m in sys.modules if m.startswith("catalog_pack")]:
        del sys.modules[name]


def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what this process loaded, as a new run would."""
    monkeypatch.setattr(catalog, "_loaded", None)
    for name in [m for m in sys.modules if m.startswith("catalog_pack")]:
        del sys.modules[name]


def test_catalog_is_read_back_without_importing_rules(
    pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = load_catalog()
    assert not built.cached and built.rules["XYZ101"].summary == "Finds the first thing."
    _fresh_process(monkeypatch)
    again = load_catalog()
    assert again.cached and "catalog_pack.XYZ101_first" not in sys.modules
    assert again.rules == built.rules and again.code_stamp == built.code_stamp
    info = again.rules["XYZ101"]
    assert (info.triggers, info.name) == (("example",), "first")
    assert info.load().__name__ == "Example"  # and the class is one import away


def test_catalog_sees_a_rule_module_added_edited_or_removed(
    pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_catalog()
    (pack / "XYZ102_second.py").write_text(
        RULE.format(doc="Finds a second thing.", code="XYZ102", name="second")
    )
    _fresh_process(monkeypatch)
    added = load_catalog()
    assert not added.cached and "XYZ102" in added.rules
    assert added.code_stamp != first.code_stamp  # cached results are invalidated too

    edited = pack / "XYZ101_first.py"
    edited.write_text(RULE.format(doc="Now finds more.", code="XYZ101", name="first"))
    _fresh_process(monkeypatch)
    assert load_catalog().rules["XYZ101"].summary == "Now finds more."

    (pack / "XYZ102_second.py").unlink()
    _fresh_process(monkeypatch)
    assert "XYZ102" not in load_catalog().rules


def test_catalog_is_rebuilt_from_a_damaged_file(
    pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_catalog()
    path = catalog.cache_file()
    assert path is not None and path.is_file()
    for damage in ("{not json", "[]", '{"environment": 1}', json.dumps({"rules": "x"})):
        path.write_text(damage)
        _fresh_process(monkeypatch)
        rebuilt = load_catalog()
        assert not rebuilt.cached and "XYZ101" in rebuilt.rules


def test_catalog_can_be_turned_off(pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CACHE_VARIABLE, "off")
    assert catalog.cache_file() is None
    _fresh_process(monkeypatch)
    assert not load_catalog().cached


@pytest.mark.slow
def test_catalog_follows_a_pack_installed_and_uninstalled(tmp_path: Path) -> None:
    source = shutil.copytree(
        REPO / "tests" / "plugin_pack",
        tmp_path / "pack",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = ThrowawayVenv(tmp_path / "venv", activate_parent_pth=True)

    def listed() -> set[str]:
        done = env.run_python("-m", "trainlint", "rules", "--format", "json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return {row["code"] for row in json.loads(done.stdout)}

    assert "XYZ001" not in listed()
    assert "XYZ001" not in listed()  # from the catalog file this time
    env.pip_install("--no-build-isolation", source)
    assert "XYZ001" in listed()
    uninstalled = env.run_python("-m", "pip", "uninstall", "-y", "trainlint-xyz")
    assert uninstalled.returncode == 0, uninstalled.stderr
    codes = listed()
    assert "XYZ001" not in codes and "TL405" in codes


def test_catalog_file_stays_out_of_the_home_directory_under_test() -> None:
    path = catalog.cache_file()
    assert path is not None and not str(path).startswith(str(Path.home() / ".cache"))
