"""``trainlint rules`` and ``trainlint explain``: read from the rule catalog, so neither
imports a rule module."""

from __future__ import annotations

import json
import os
import sys

import click

from trainlint.catalog import RuleInfo
from trainlint.cli import base
from trainlint.cli.base import Failure, fix_label
from trainlint.config import ConfigError, check_codes


@click.command("rules")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text: a table; json: for tools; markdown: the table README embeds.",
)
def list_rules(output_format: str) -> None:
    """List every rule: code, name, severity, frameworks and what it finds."""
    registry = base.registry()
    if output_format == "json":
        click.echo(json.dumps([_rule_row(r) for r in registry.values()], indent=2))
        return
    if output_format == "markdown":
        click.echo(rules_markdown(registry))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("code", "name", "severity", "frameworks", "fix", "finds"):
        table.add_column(column, no_wrap=column != "finds")
    for rule in registry.values():
        row = _rule_row(rule)
        table.add_row(
            row["code"], row["name"], row["severity"], row["frameworks"], row["fix"], row["summary"]
        )
    terminal = sys.stdout.isatty()
    # Piped or redirected: one rule per line (greppable), however long.
    console = Console(no_color="NO_COLOR" in os.environ, width=None if terminal else 10_000)
    console.print(table)


def _rule_row(rule: RuleInfo) -> dict[str, str]:
    return {
        "code": rule.code,
        "name": rule.name,
        "severity": rule.severity.label,
        "frameworks": ",".join(rule.frameworks),
        "fix": fix_label(rule),
        "summary": rule.one_line(),
    }


def rules_markdown(registry: dict[str, RuleInfo]) -> str:
    """The rule table in Markdown (README embeds it; a test keeps the two in sync)."""
    columns = ("code", "name", "severity", "frameworks", "fix", "summary")
    lines = [
        "| Code | Name | Severity | Frameworks | Fix | What it finds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule in registry.values():
        row = _rule_row(rule)
        lines.append("| " + " | ".join(row[c] for c in columns) + " |")
    return "\n".join(lines)


@click.command()
@click.argument("code")
def explain(code: str) -> None:
    """Show a rule's documentation: what it finds, why it is a bug, an example and the fix.

    CODE is a rule code (TL101) or name (missing-call-parens).
    """
    registry = base.registry()
    wanted = code.strip()
    rule = registry.get(wanted.upper()) or next(
        (r for r in registry.values() if r.name == wanted.lower()), None
    )
    if rule is None:
        try:
            check_codes([wanted], list(registry), "explain")
            message = f"{code!r} is a prefix, not a rule; `trainlint rules` lists them"
        except ConfigError as exc:
            message = f"{exc}; `trainlint rules` lists every rule"
        raise Failure(message)
    header = (
        f"# {rule.code} {rule.name}\n\n*{rule.severity.label} · {', '.join(rule.frameworks)}"
        f" · fix: {fix_label(rule)}*"
    )
    text = f"{header}\n\n{rule.documentation()}"
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown  # slow to import; only needed here

        Console(no_color="NO_COLOR" in os.environ).print(Markdown(text))
    else:
        click.echo(text)
