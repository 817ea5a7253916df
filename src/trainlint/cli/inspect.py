"""``trainlint inspect``: what the model saw in one file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trainlint.cli.base import Failure


@click.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: for reading; json: the shape documented in docs/inspect-output.md.",
)
def inspect(file: Path, output_format: str) -> None:
    """Show what trainlint's model saw in FILE (a .py file or a notebook).

    Prints the train steps (loops that run backward and step) and eval loops (loops that call
    a model with no backward) it found; each loop's events in order with their line, kind and
    the conditions they run under (accumulation guards are marked); accumulation windows
    (guard, window length, how each backward is scaled); the roles of the names involved
    (optimizer, model, scheduler...) and the evidence for each; and what it could not
    resolve (a backward with no optimizer step it recognises, calls to functions it cannot
    see). Use it to understand a finding, or a silence.
    """
    from trainlint.inspection import InspectError, inspect_file, render_text

    try:
        report = inspect_file(file)
    except InspectError as exc:
        raise Failure(str(exc)) from None
    if output_format == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_text(report))
