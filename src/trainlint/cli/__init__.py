"""The command line: thin glue between click options, the engine and a reporter.

Each command lives in its own module, imported only when that command runs: ``trainlint
--version`` and ``--help`` import click and nothing else of weight (the command list below
carries each command's one-line help for that reason).
"""

from __future__ import annotations

import importlib

import click

from trainlint import __version__
from trainlint.cli.base import SafeGroup

#: name -> (module, attribute, the line ``trainlint --help`` shows for it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": ("trainlint.cli.check", "check", "Analyze files and directories (default: .)."),
    "explain": (
        "trainlint.cli.rules",
        "explain",
        "Show what a rule finds, why it is a bug, and the fix.",
    ),
    "inspect": (
        "trainlint.cli.inspect",
        "inspect",
        "Show what trainlint saw in one file: train steps, roles, windows.",
    ),
    "rules": ("trainlint.cli.rules", "list_rules", "List every rule."),
}


class _LazyGroup(SafeGroup):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        command: click.Command = getattr(importlib.import_module(spec[0]), spec[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "-V", "--version", prog_name="trainlint", message="%(prog)s %(version)s"
)
def main() -> None:
    """trainlint: finds silent bugs in PyTorch and TensorFlow/Keras training loops.

    \b
    Examples:
      trainlint check .                     analyze a repository
      trainlint check train.py --select TL1 only the gradient-cycle rules
      trainlint check . --format sarif -o trainlint.sarif
      trainlint rules                       list every rule
      trainlint explain TL101               what a rule finds, why, and the fix
      trainlint inspect train.py            what trainlint saw in one file
    """
