"""Packaging: the wheel and the editable install both ship trainlint and every built-in rule.

The slow tests build from a copy of the working tree (so no build/ or *.egg-info lands in the
checkout) and install into throwaway venvs offline, borrowing the test interpreter's packages
for the dependencies (see venvtools.py).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

import trainlint_rules
from trainlint import __version__
from trainlint.rule import load_registry, rules_from_object

from venvtools import REPO, ThrowawayVenv, build_wheel

BUILTIN_CODES = sorted(rule.code for rule in rules_from_object(trainlint_rules))
BAD_SOURCE = "def train(model, optimizer, loss):\n    loss.backward()\n    optimizer.step\n"
GOOD_SOURCE = "def train(model, optimizer, loss):\n    loss.backward()\n    optimizer.step()\n"
PROBE_MODULE = "_packaging_probe"
InstalledWheel = tuple[ThrowawayVenv, Path]


def copy_project(destination: Path) -> Path:
    """The files a build reads, plus a new rules module and a new subpackage of trainlint.

    The two probes stand for modules other contributors add later: the build must pick them
    up without anyone editing a package list.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, destination / name)
    for name in ("src", "rules"):
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    (destination / "rules" / f"{PROBE_MODULE}.py").write_text('"""Not a rule."""\n')
    probe_package = destination / "src" / "trainlint" / PROBE_MODULE
    probe_package.mkdir()
    (probe_package / "__init__.py").write_text('"""A new subpackage."""\n')
    return destination


def expected_wheel_members() -> set[str]:
    members = {
        f"trainlint/{p.relative_to(REPO / 'src' / 'trainlint').as_posix()}"
        for p in (REPO / "src" / "trainlint").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    members |= {
        f"trainlint_rules/{p.relative_to(REPO / 'rules').as_posix()}"
        for p in (REPO / "rules").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    members |= {
        "trainlint/py.typed",
        f"trainlint/{PROBE_MODULE}/__init__.py",
        f"trainlint_rules/{PROBE_MODULE}.py",
    }
    return members


def test_every_rule_module_registers_through_the_entry_point() -> None:
    """The development install (usually ``pip install -e .``) finds every module in rules/."""
    registry = load_registry()
    modules = {
        p.stem for p in (REPO / "rules").glob("*.py") if p.stem != "__init__" and p.stem[0] != "_"
    }
    registered = {rule.__module__.rsplit(".", 1)[-1] for rule in registry.values()}
    assert modules <= registered, f"rule modules without a registered rule: {modules - registered}"
    assert set(BUILTIN_CODES) <= set(registry)
    for module in modules:
        assert module.split("_", 1)[0] in registry, f"rules/{module}.py: code must lead its name"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    work = tmp_path_factory.mktemp("wheel")
    source = copy_project(work / "source")
    wheel = build_wheel(source, work / "dist")
    env = ThrowawayVenv(work / "venv", activate_parent_pth=False)
    env.pip_install(wheel)
    return env, wheel


@pytest.mark.slow
def test_wheel_contains_every_module_and_new_ones(installed_wheel: InstalledWheel) -> None:
    _, wheel = installed_wheel
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_text = archive.read(entry_points).decode()
    missing = expected_wheel_members() - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert "[trainlint.rules]\nbuiltin = trainlint_rules" in entry_text
    assert "trainlint = trainlint.cli:main" in entry_text


@pytest.mark.slow
def test_installed_wheel_is_what_runs(installed_wheel: InstalledWheel) -> None:
    env, _ = installed_wheel
    where = env.run_python(
        "-c",
        "import trainlint, trainlint_rules; print(trainlint.__file__, trainlint_rules.__file__)",
    )
    assert where.returncode == 0, where.stderr
    for location in where.stdout.split():
        assert Path(location).is_relative_to(env.site_packages), location
    version = env.run(env.bin / "trainlint", "--version")
    assert version.returncode == 0 and __version__ in version.stdout
    module_version = env.run_python("-m", "trainlint", "--version")
    assert module_version.returncode == 0 and __version__ in module_version.stdout


@pytest.mark.slow
def test_installed_command_lists_builtin_rules(installed_wheel: InstalledWheel) -> None:
    env, _ = installed_wheel
    result = env.run(env.bin / "trainlint", "rules", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = {row["code"] for row in json.loads(result.stdout)}
    assert set(BUILTIN_CODES) <= listed
    assert "TL405" in listed


@pytest.mark.slow
def test_installed_command_checks_and_exits(
    installed_wheel: InstalledWheel, tmp_path: Path
) -> None:
    env, _ = installed_wheel
    (tmp_path / "bad.py").write_text(BAD_SOURCE)
    (tmp_path / "good.py").write_text(GOOD_SOURCE)
    command = (env.bin / "trainlint", "check", "--no-cache")

    bad = env.run(*command, "bad.py", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "bad.py:3:5: TL405" in bad.stdout

    good = env.run(*command, "good.py", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr

    unknown = env.run(*command, "--select", "XX999", "good.py", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "XX999" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_editable_install_picks_up_new_rule_modules(tmp_path: Path) -> None:
    """``pip install -e .`` maps whole directories: a rule module added later is found."""
    source = copy_project(tmp_path / "source")
    env = ThrowawayVenv(tmp_path / "venv", activate_parent_pth=False)
    env.pip_install("--no-build-isolation", "--editable", source)
    (source / "rules" / "TL998_added_later.py").write_text(
        "from trainlint import Rule, Severity\n\n\n"
        "class AddedLater(Rule):\n"
        '    """Stands for a rule written after the install."""\n\n'
        '    code = "TL998"\n'
        '    name = "added-later"\n'
        "    severity = Severity.INFO\n\n"
        "    def check(self, model):\n"
        "        return []\n"
    )
    result = env.run(env.bin / "trainlint", "rules", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = {row["code"] for row in json.loads(result.stdout)}
    assert {*BUILTIN_CODES, "TL998"} <= listed
    where = env.run_python("-c", "import trainlint_rules; print(trainlint_rules.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(source), where.stdout + where.stderr
