"""README.md stays true: generated blocks current, commands real, examples valid, links alive.

When a generated block is stale, run ``python tests/update_readme.py`` and commit README.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from update_readme import GENERATORS, README, REPO, block, without_run_times

from trainlint.cli import main
from trainlint.config import KEYS, load_config
from trainlint.rule import load_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TEST_COMMAND = "python -m pip install -e '.[test]' && python -m pytest -q"
EXAMPLE_COMMAND = "python -m pip install . && trainlint check fixtures/"
REGENERATE = "README.md is stale: run `python tests/update_readme.py` and commit README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text("utf-8")


@pytest.mark.parametrize("name", list(GENERATORS))
def test_generated_block_is_current(readme: str, name: str) -> None:
    expected = GENERATORS[name](readme)
    assert without_run_times(block(readme, name)) == without_run_times(expected), REGENERATE


def test_rule_table_lists_exactly_the_registry(readme: str) -> None:
    listed = re.findall(r"^\| ([A-Z]+[0-9]{3}) \|", block(readme, "rules"), re.M)
    builtin = [c for c, r in load_registry().items() if r.__module__.startswith("trainlint_rules.")]
    assert listed == builtin, REGENERATE


def test_setup_commands_are_documented_and_ci_runs_the_test_command(readme: str) -> None:
    assert f"```sh\n{EXAMPLE_COMMAND}\n```" in readme
    assert f"```sh\n{TEST_COMMAND}\n```" in readme
    ci_script = (REPO / ".ci" / "run").read_text("utf-8")
    assert TEST_COMMAND in ci_script.splitlines(), ".ci/run must run README's test command"


def test_configuration_example_is_valid_and_complete(readme: str, tmp_path: Path) -> None:
    example = block(readme, "config").strip().removeprefix("```toml").removesuffix("```")
    documented = tomllib.loads(example)["tool"]["trainlint"]
    missing = set(KEYS) - set(documented)
    assert not missing, f"README's configuration example lacks {sorted(missing)}"
    (tmp_path / "pyproject.toml").write_text(example)
    load_config(tmp_path / "pyproject.toml", load_registry())  # raises on any bad key or code


def _options(command: click.Command) -> set[str]:
    found: set[str] = set()
    for parameter in command.params:
        found.update(getattr(parameter, "opts", []))
        found.update(getattr(parameter, "secondary_opts", []))
    return found


def test_every_documented_option_exists(readme: str) -> None:
    assert isinstance(main, click.Group)
    known = _options(main) | {"--help"}
    with click.Context(main) as ctx:  # commands are imported on demand: ask the group
        for name in main.list_commands(ctx):
            command = main.get_command(ctx, name)
            assert command is not None
            known |= _options(command)
    # Other programs' options (pip, the benchmark script) are not trainlint's.
    trainlint_lines = [
        line for line in readme.splitlines() if not re.search(r"\bpip\b|bench\.py", line)
    ]
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", "\n".join(trainlint_lines)))
    assert not mentioned - known, f"README documents unknown options: {mentioned - known}"


def test_relative_links_point_at_files(readme: str) -> None:
    for target in re.findall(r"\]\((?!https?://|#)([^)]+)\)", readme):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_hook_documented_as_defined(readme: str) -> None:
    hooks = (REPO / ".pre-commit-hooks.yaml").read_text("utf-8")
    assert "- id: trainlint" in hooks and "types_or: [python, jupyter]" in hooks
    assert "require_serial: false" in hooks
    assert "id: trainlint" in readme and "types_or: [python, jupyter]" in readme
    assert "github/codeql-action/upload-sarif" in readme


@pytest.mark.skipif(sys.platform == "win32", reason=".ci/run is a bash script")
@pytest.mark.parametrize(("pytest_status", "ci_status"), [(0, 0), (1, 1), (5, 1)])
def test_ci_script_fails_when_no_test_ran(
    tmp_path: Path, pytest_status: int, ci_status: int
) -> None:
    """.ci/run against a stand-in ``python`` whose pytest exits with ``pytest_status``."""
    (tmp_path / ".ci").mkdir()
    script = tmp_path / ".ci" / "run"
    shutil.copy2(REPO / ".ci" / "run", script)
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\ncase "$*" in *"-m pytest"*) exit {pytest_status};; esac\nexit 0\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(script)], env=env, capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert result.returncode == ci_status, result.stderr
    if pytest_status == 5:
        assert "no tests" in result.stderr
