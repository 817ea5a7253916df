"""The pre-commit hook, used exactly as a user would: ``repo:`` this repository at its HEAD.

pre-commit clones the repository at that commit and builds the hook's environment itself
(``pip install .``, so it needs the package index). The test therefore checks what is
*committed*: run it after committing hook or packaging changes. PRE_COMMIT_HOME points into
a temporary directory, so the user's pre-commit cache is never touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BAD = "def train(optimizer, loss):\n    loss.backward()\n    optimizer.step\n"
GOOD = "def train(optimizer, loss):\n    loss.backward()\n    optimizer.step()\n"

pytestmark = pytest.mark.slow


def notebook(source: str) -> str:
    cell = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": []}
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Training\n"]}]
    cells.append({**cell, "source": source.splitlines(keepends=True)})
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _environment(home: Path) -> dict[str, str]:
    # GIT_* from an enclosing hook or worktree would point git at the wrong repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        PRE_COMMIT_HOME=str(home),
        PRE_COMMIT_COLOR="never",
        NO_COLOR="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


class Project:
    """A throwaway git repository whose .pre-commit-config.yaml uses this repo's hook."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        root.mkdir()
        _git("init", "-q", cwd=root, env=env)
        rev = _git("rev-parse", "HEAD", cwd=REPO, env=env)
        (root / ".pre-commit-config.yaml").write_text(
            f"repos:\n  - repo: {REPO.as_posix()}\n    rev: {rev}\n    hooks:\n"
            "      - id: trainlint\n"
        )

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)
        _git("add", "--all", cwd=self.root, env=self.env)

    def run_hooks(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "run", "--all-files", "--show-diff-on-failure"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: pre-commit needs a repository and a commit to point at")
    work = tmp_path_factory.mktemp("precommit")
    return Project(work / "project", _environment(work / "pre-commit-home"))


def test_hook_fails_on_a_finding(project: Project) -> None:
    project.write("train.py", BAD)
    project.write("explore.ipynb", notebook(BAD))  # types_or: jupyter reaches notebooks too
    result = project.run_hooks()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "trainlint" in output and "Failed" in output
    assert "train.py:3:" in output and "TL405" in output
    assert "explore.ipynb:" in output


def test_hook_passes_on_clean_code(project: Project) -> None:
    project.write("train.py", GOOD)
    project.write("explore.ipynb", notebook(GOOD))
    # Named by pre-commit, but excluded by the project's configuration (--force-exclude).
    (project.root / "legacy").mkdir(exist_ok=True)
    project.write("legacy/old_train.py", BAD)
    project.write("pyproject.toml", '[tool.trainlint]\nextend-exclude = ["legacy/"]\n')
    project.write("notes.txt", "optimizer.step\n")  # not Python: the hook never sees it
    result = project.run_hooks()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Passed" in output
