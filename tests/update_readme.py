"""Regenerate README.md's generated blocks: ``python tests/update_readme.py``.

Each block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``:

* ``rules``: the built-in rule table, from the registry (as ``trainlint rules --format
  markdown`` prints it);
* ``example-output``: what ``trainlint check train.py`` prints for the ``example-source`` block
  right above it (edit the source by hand; the output is always real);
* ``pack-pyproject`` / ``pack-module``: the rule pack in tests/plugin_pack, which
  tests/test_plugin.py installs and runs, so the documented example is the tested one.

tests/test_readme.py fails when a block is stale (run times excepted).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PACK = REPO / "tests" / "plugin_pack"
EXAMPLE_FILE = "train.py"
_ELAPSED = re.compile(r"\bin [0-9]+(?:\.[0-9]+)?\s?m?s\b")


def block_pattern(name: str) -> re.Pattern[str]:
    marker = re.escape(name)
    return re.compile(
        rf"(?P<start><!-- {marker}:start -->\n)(?P<body>.*?)(?P<end><!-- {marker}:end -->)", re.S
    )


def block(text: str, name: str) -> str:
    match = block_pattern(name).search(text)
    if match is None:
        raise SystemExit(f"README.md: missing <!-- {name}:start --> ... <!-- {name}:end -->")
    return match.group("body")


def replace_block(text: str, name: str, body: str) -> str:
    block(text, name)  # fail loudly when the markers are gone
    return block_pattern(name).sub(lambda m: m.group("start") + body + m.group("end"), text)


def fenced(code: str, language: str) -> str:
    return f"```{language}\n{code.rstrip()}\n```\n"


def unfenced(body: str) -> str:
    lines = body.strip().splitlines()
    return "\n".join(lines[1:-1]) + "\n"


def rules_table() -> str:
    from trainlint.cli.rules import rules_markdown
    from trainlint.rule import load_registry

    builtin = {
        code: rule
        for code, rule in load_registry().items()
        if rule.__module__.startswith("trainlint_rules.")
    }
    return rules_markdown(builtin).rstrip() + "\n"


def example_output(source: str) -> str:
    """Run the installed trainlint on the example, as a user would, from its directory."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / EXAMPLE_FILE).write_text(source, encoding="utf-8")
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        result = subprocess.run(
            [sys.executable, "-m", "trainlint", "check", "--no-cache", EXAMPLE_FILE],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode == 2:
        raise SystemExit(f"trainlint failed on the README example:\n{result.stderr}")
    transcript = f"$ trainlint check {EXAMPLE_FILE}\n{result.stdout.rstrip()}\n$ echo $?\n"
    return fenced(transcript + f"{result.returncode}\n", "console")


GENERATORS: dict[str, Callable[[str], str]] = {
    "rules": lambda readme: rules_table(),
    "example-output": lambda readme: example_output(unfenced(block(readme, "example-source"))),
    "pack-pyproject": lambda readme: fenced((PACK / "pyproject.toml").read_text("utf-8"), "toml"),
    "pack-module": lambda readme: fenced(
        (PACK / "trainlint_xyz" / "__init__.py").read_text("utf-8"), "python"
    ),
}


def render(readme: str) -> str:
    for name, generate in GENERATORS.items():
        readme = replace_block(readme, name, generate(readme))
    return readme


def without_run_times(text: str) -> str:
    return _ELAPSED.sub("in <time>", text)


def main() -> int:
    current = README.read_text("utf-8")
    updated = render(current)
    if without_run_times(updated) == without_run_times(current):
        print("README.md is up to date")
        return 0
    README.write_text(updated, encoding="utf-8")
    print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
