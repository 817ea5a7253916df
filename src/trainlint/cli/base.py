"""What every command shares: exit codes, the one-line failure, the rule catalog.

Imported by ``trainlint --version`` and ``--help``: nothing here may import more than click at
module level.
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from trainlint.catalog import RuleInfo

EXIT_OK, EXIT_FINDINGS, EXIT_FAILURE = 0, 1, 2
TRACEBACK_VARIABLE = "TRAINLINT_TRACEBACK"


class Failure(click.ClickException):
    """trainlint could not do its job: one line on stderr, exit 2."""

    exit_code = EXIT_FAILURE

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"trainlint: error: {self.format_message()}", err=True)


class SafeGroup(click.Group):
    """Turns any unexpected exception into one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:  # Ctrl-C is not "findings found" (exit 1): 130, as shells do
            click.echo("trainlint: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `trainlint check | head`: the reader left, stop quietly
            _silence_stdout()
            sys.exit(EXIT_FAILURE)
        except Exception as exc:
            if os.environ.get(TRACEBACK_VARIABLE):
                raise
            raise Failure(
                f"internal error: {type(exc).__name__}: {exc} "
                f"(please report it; {TRACEBACK_VARIABLE}=1 shows the traceback)"
            ) from None


def _silence_stdout() -> None:
    with suppress(OSError, ValueError, AttributeError):  # not a real descriptor under test
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def registry() -> dict[str, RuleInfo]:
    """Every installed rule's metadata (from the catalog: no rule module is imported)."""
    from trainlint.catalog import load_catalog
    from trainlint.rule import RegistryError

    try:
        return load_catalog().rules
    except RegistryError as exc:  # a broken rule pack: trainlint cannot do its job (exit 2)
        raise Failure(str(exc)) from None


def codes(values: tuple[str, ...], known: list[str], option: str) -> list[str]:
    """``--select TL1,TL2 --select TL3`` -> checked codes/prefixes."""
    from trainlint.config import ConfigError, check_codes

    found = [c for value in values for c in value.replace(" ", ",").split(",") if c]
    if option == "--select" and not found:
        # `--select "$RULES"` with an unset variable must not turn the gate off silently.
        raise ConfigError(f"{option}: no rule code given (an empty value selects no rule)")
    return check_codes(found, known, option)


def fix_label(rule: RuleInfo) -> str:
    """``always (safe)``, ``sometimes (unsafe)`` or ``never``."""
    if rule.fix_availability == "never":
        return "never"
    return f"{rule.fix_availability} ({rule.fix_applicability.value})"
