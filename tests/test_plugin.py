"""The plugin API, proven the way a user would use it.

A real third-party pack (tests/plugin_pack: entry point ``trainlint.rules``, rule XYZ001 that
queries the model) is installed into a throwaway venv next to the current trainlint, and the
installed command reports its findings. Registry errors (duplicate code, bad code, a pack
that fails to import) must end in a one-line message and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

import trainlint
import trainlint.rule
from trainlint.cli import main
from trainlint.model import TrainingModel

from venvtools import REPO, ThrowawayVenv

PACK = REPO / "tests" / "plugin_pack"
TRAINING_SCRIPT = """\
import torch
from torch.optim import SGD

optimizer = SGD(model.parameters(), lr=0.1)
tuned = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for batch in loader:
    optimizer.zero_grad()
    loss = criterion(model(batch), batch.y)
    loss.backward()
    optimizer.step
"""


def test_public_api_is_importable() -> None:
    from trainlint import Finding, Fix, Rule, Severity  # noqa: F401
    from trainlint.rule import Violation  # noqa: F401

    for name in ("Rule", "Finding", "Fix", "Severity"):
        assert name in trainlint.__all__
    assert TrainingModel.from_source("x = 1\n").calls == []


@pytest.fixture(scope="module")
def pack_env(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayVenv:
    work = tmp_path_factory.mktemp("plugin")
    # Build from a copy: pip builds in place, and build/ or *.egg-info must not land in the repo.
    source = shutil.copytree(PACK, work / "pack", ignore=shutil.ignore_patterns("__pycache__"))
    env = ThrowawayVenv(work / "venv", activate_parent_pth=True)
    env.pip_install("--no-build-isolation", source)
    return env


@pytest.mark.slow
def test_installed_pack_is_listed(pack_env: ThrowawayVenv) -> None:
    result = pack_env.run_python("-m", "trainlint", "rules", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["code"]: row for row in json.loads(result.stdout)}
    assert rows["XYZ001"]["name"] == "sgd-without-momentum"
    assert rows["XYZ001"]["severity"] == "warning"
    assert "TL405" in rows, "the built-in rules stay registered next to the pack"

    explained = pack_env.run_python("-m", "trainlint", "explain", "XYZ001")
    assert explained.returncode == 0 and "## Why is this bad?" in explained.stdout


@pytest.mark.slow
def test_installed_pack_reports_findings(pack_env: ThrowawayVenv, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAINING_SCRIPT)
    command = ("-m", "trainlint", "check", "--no-cache", "--format", "json", "train.py")
    result = pack_env.run_python(*command, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    found = {(f["code"], f["line"]) for f in json.loads(result.stdout)["findings"]}
    assert found == {("XYZ001", 4), ("TL405", 10)}

    only_pack = pack_env.run_python(*command, "--select", "XYZ", cwd=tmp_path)
    assert {f["code"] for f in json.loads(only_pack.stdout)["findings"]} == {"XYZ001"}

    (tmp_path / "train.py").write_text(TRAINING_SCRIPT.replace("lr=0.1)", "lr=0.1)  # noqa"))
    suppressed = pack_env.run_python(*command, "--select", "XYZ", cwd=tmp_path)
    assert suppressed.returncode == 0, suppressed.stdout


# ---------------------------------------------------------------------------- registry errors
def _write_pack(root: Path, name: str, source: str) -> EntryPoint:
    (root / f"{name}.py").write_text(textwrap.dedent(source))
    return EntryPoint(name=name, value=name, group=trainlint.rule.ENTRY_POINT_GROUP)


RULE_TEMPLATE = """\
from trainlint import Rule


class Example(Rule):
    \"\"\"An example.\"\"\"

    code = {code!r}
    name = "example"

    def check(self, model):
        return []
"""


@pytest.fixture
def extra_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    """Entry points added to the real ones, as if more packs were installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    real = trainlint.rule.entry_points
    added: list[EntryPoint] = []

    def with_extra(*, group: str) -> list[EntryPoint]:
        return [*real(group=group), *added]

    monkeypatch.setattr(trainlint.rule, "entry_points", with_extra)
    return added


@pytest.mark.parametrize(
    ("pack_source", "expected"),
    [
        pytest.param(RULE_TEMPLATE.format(code="TL405"), "TL405 is already used", id="duplicate"),
        pytest.param(RULE_TEMPLATE.format(code="tl-1"), "'tl-1' is not like TL101", id="bad-code"),
        pytest.param("raise ImportError('no module named torch')\n", "no module", id="broken"),
        pytest.param("import this_module_does_not_exist\n", "cannot load", id="missing-dep"),
    ],
)
@pytest.mark.parametrize("command", [["check", "--no-cache", "-j", "1"], ["rules"]])
def test_registry_errors_exit_2_cleanly(
    extra_packs: list[EntryPoint],
    tmp_path: Path,
    pack_source: str,
    expected: str,
    command: list[str],
    request: pytest.FixtureRequest,
) -> None:
    name = "pack_" + re.sub(r"\W", "_", request.node.callspec.id)  # unique: imports are cached
    extra_packs.append(_write_pack(tmp_path, name, pack_source))
    (tmp_path / "empty.py").write_text("")
    args = [*command, str(tmp_path / "empty.py")] if command[0] == "check" else command
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("trainlint: error:")


def test_pack_with_a_broken_submodule_exits_2(
    extra_packs: list[EntryPoint], tmp_path: Path
) -> None:
    package = tmp_path / "pack_with_broken_submodule"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "TL900_needs_torch.py").write_text("import torch_is_not_installed_here\n")
    extra_packs.append(
        EntryPoint(name="broken", value=package.name, group=trainlint.rule.ENTRY_POINT_GROUP)
    )
    result = CliRunner().invoke(main, ["rules"])
    assert result.exit_code == 2, result.output
    assert "cannot load its rules: No module named 'torch_is_not_installed_here'" in result.output
    assert "Traceback" not in result.output
