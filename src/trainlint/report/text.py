"""Human output: findings grouped by file, the source line with a marker, the fix, a summary.

    train.py:8:5: TL405 [error] `optimizer.zero_grad` names the method but never calls it
      8 |     optimizer.zero_grad
        |     ^^^^^^^^^^^^^^^^^^^
      fix: add the call parentheses: optimizer.zero_grad()

Colour only on a terminal, never when ``NO_COLOR`` is set (unless ``--color`` asks for it).
Without colour the lines are written directly: rich (slow to import) is imported only to colour
them, so a pre-commit run or a redirected report never pays for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainlint import sources
from trainlint.report import Reporter, Summary, shown
from trainlint.rule import Finding, Severity

#: A piece of an output line: plain text, or (text, rich style) to colour it on a terminal.
Piece = str | tuple[str, str]

if TYPE_CHECKING:
    from trainlint.engine import FileResult

_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_PLURAL = {Severity.ERROR: "errors", Severity.WARNING: "warnings", Severity.INFO: "info"}

TAB_SIZE = 4
#: Widest source line shown when the output is not a terminal (logs, files, pipes).
PLAIN_SNIPPET_WIDTH = 200
#: Cells of context kept left of the span when a long line is cropped.
CROP_CONTEXT = 24
_ELLIPSIS = "..."
# The line breaks libcst counts (str.splitlines also splits on \f, \v, \x1c.. and would
# shift every later line).
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def color_wanted(stream: Any, requested: bool | None) -> bool:
    """``--color/--no-color`` wins; otherwise colour on a terminal unless NO_COLOR is set."""
    if requested is not None:
        return requested
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def cell_len(text: str) -> int:
    """Terminal cells ``text`` takes (rich's measure; its tables are loaded only when the text
    is not ASCII)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len as measured

    return measured(text)


def expand_tabs(line: str, tab_size: int = 8) -> str:
    """Tabs to spaces at cell positions, as rich prints them (a message or fix may hold tabs)."""
    if "\t" not in line:
        return line
    if line.isascii():
        return line.expandtabs(tab_size)
    out: list[str] = []
    for row in line.split("\n"):
        *tabbed, last = row.split("\t")
        cells, parts = 0, []
        for part in tabbed:
            cells += cell_len(part) + 1  # the tab itself becomes one space ...
            pad = -cells % tab_size  # ... then spaces up to the next tab stop
            parts.append(part + " " * (1 + pad))
            cells += pad
        out.append("".join(parts) + last)
    return "\n".join(out)


def _shown(char: str) -> tuple[str, int]:
    """How one source character is drawn, and its width in terminal cells (tabs aside)."""
    code = ord(char)
    if code < 0x20 or code == 0x7F:
        # Never send raw control characters (ESC!) to a terminal: draw their control picture.
        return chr(0x2400 + code) if code < 0x20 else "\u2421", 1
    return char, cell_len(char)


@dataclass(frozen=True)
class Snippet:
    text: str  # the line as drawn: tabs expanded, controls made visible, maybe cropped
    marker_start: int  # in cells, from the start of ``text``
    marker_width: int  # in cells, at least 1


def snippet(line: str, start: int, end: int, max_width: int = PLAIN_SNIPPET_WIDTH) -> Snippet:
    """Draw ``line`` with a marker under code points ``[start, end)`` (0-based).

    Tabs expand to the next multiple of ``TAB_SIZE``, wide characters take two cells, and a
    line wider than ``max_width`` is cropped around the span with ``...`` on either side.
    """
    drawn: list[str] = []
    offsets = [0]  # offsets[i]: the cell where character i starts
    for char in line:
        if char == "\t":
            width = TAB_SIZE - offsets[-1] % TAB_SIZE
            drawn.append(" " * width)
        else:
            text, width = _shown(char)
            drawn.append(text)
        offsets.append(offsets[-1] + width)
    count = len(drawn)
    start = min(max(start, 0), count)
    end = min(max(end, start), count)
    low, high = 0, count
    if offsets[count] > max_width:
        budget = max(max_width - 2 * len(_ELLIPSIS), 1)
        left = max(offsets[start] - CROP_CONTEXT, 0)
        while low < start and offsets[low] < left:
            low += 1
        high = low
        while high < count and offsets[high + 1] - offsets[low] <= budget:
            high += 1
        while high == count and low > 0 and offsets[count] - offsets[low - 1] <= budget:
            low -= 1  # the end of the line is in view: use the room on the left instead
    prefix = _ELLIPSIS if low > 0 else ""
    suffix = _ELLIPSIS if high < count else ""
    first, last = min(max(start, low), high), min(max(end, low), high)
    return Snippet(
        text=prefix + "".join(drawn[low:high]) + suffix,
        marker_start=len(prefix) + offsets[first] - offsets[low],
        marker_width=max(offsets[last] - offsets[first], 1),
    )


def source_of(result: FileResult) -> sources.SourceFile | None:
    try:
        return sources.load(result.path, max_bytes=0)
    except (sources.SourceError, sources.SkippedFile):
        return None


def position(finding: Finding, source: sources.SourceFile | None) -> str:
    """``path:line:col``; for a notebook ``path:cell N:line:col`` (line within the cell).

    This is the hook for any other kind of file whose analyzed lines are not its own lines.
    """
    if source is not None and finding.line in source.cell_lines:
        cell, cell_line = source.cell_lines[finding.line]
        return f"{finding.path}:cell {cell}:{cell_line}:{finding.column}"
    return f"{finding.path}:{finding.line}:{finding.column}"


def _counted(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _broken_pipe() -> None:
    raise BrokenPipeError


class TextReporter(Reporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.colored = color_wanted(self.stream, self.color)
        self.console: Any = None
        self.snippet_width = PLAIN_SNIPPET_WIDTH
        if self.colored:
            from rich.console import Console

            self.console = Console(
                file=self.stream,
                force_terminal=True,
                highlight=False,
                emoji=False,  # a message mentioning `:fire:` must stay as written
                soft_wrap=True,
            )
            # rich exits 1 ("findings found") on a broken pipe; the CLI gives every format's
            # broken pipe one exit status.
            self.console.on_broken_pipe = _broken_pipe
            self.snippet_width = max(self.console.width - 8, 40)
        self.discovery_errors = 0

    def _line(self, *pieces: Piece) -> None:
        """Write one line (or several, when a piece holds line breaks)."""
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text.assemble(*pieces))
            return
        text = "".join(piece if isinstance(piece, str) else piece[0] for piece in pieces)
        self.stream.write(expand_tabs(text) + "\n")

    def on_file(self, result: FileResult) -> None:
        out = self._line
        path = shown(result.display)
        if result.error:
            # A notebook's joined-text line means nothing to its reader: the message names
            # the cell and the line in it.
            line = result.error_line if result.path.suffix != ".ipynb" else None
            where = f"{path}:{line}" if line else path
            out((where, "bold"), ": ", ("error", "bold red"), ": ", shown(result.error))
        for note in getattr(result, "notes", ()):
            out((path, "bold"), ": ", ("note", "cyan"), ": ", shown(note))
        if not result.findings:
            return
        source = source_of(result)
        lines = _LINE_BREAK.split(source.text) if source is not None else []
        for finding in result.findings:
            self._finding(finding, source, lines)

    def _finding(
        self, finding: Finding, source: sources.SourceFile | None, lines: list[str]
    ) -> None:
        out = self._line
        style = _STYLE[finding.severity]
        message = finding.message
        if source is not None and finding.line in source.cell_lines:
            # the position already names the cell; the message's suffix would repeat it
            message = message.removesuffix(f" ({source.display_line(finding.line)})")
        out(
            (shown(position(finding, source)) + ":", "bold"),
            " ",
            (finding.code, style),
            " ",
            (f"[{finding.severity.label}]", style),
            " ",
            shown(message),
        )
        if 0 < finding.line <= len(lines):
            line = lines[finding.line - 1]
            end = finding.end_column - 1 if finding.end_line == finding.line else len(line)
            drawn = snippet(line, finding.column - 1, end, self.snippet_width)
            number = str(finding.line)
            if source is not None and finding.line in source.cell_lines:
                number = str(source.cell_lines[finding.line][1])
            gutter = f"{number:>4} | "
            out((gutter, "dim"), drawn.text)
            out(
                (" " * (len(gutter) - 2) + "| ", "dim"),
                " " * drawn.marker_start,
                ("^" * drawn.marker_width, style),
            )
        if self.show_fixes and finding.fix:
            out("  ", ("fix", "green"), ": ", shown(finding.fix, newlines=True))
        out("")

    def on_discovery_error(self, path: str, reason: str) -> None:
        self.discovery_errors += 1
        self._line((shown(path), "bold"), ": ", ("error", "bold red"), ": ", shown(reason))

    def finish(self, summary: Summary) -> None:
        out = self._line
        for path, reason in summary.skipped_files:
            out((shown(path), "bold"), ": ", ("warning", "yellow"), ": ", shown(reason))
        if self.quiet:
            return
        if self.statistics and summary.by_code:
            for code, count in sorted(summary.by_code.items(), key=lambda kv: (-kv[1], kv[0])):
                rule = self.registry.get(code)
                severity = rule.severity.label if rule else ""
                out(f"{count:>5}  {code}  {severity:<8} {rule.name if rule else ''}")
            out("")
        if summary.findings:
            severities = ", ".join(
                _counted(summary.by_severity[s], s.label, _PLURAL[s])
                for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)
                if summary.by_severity[s]
            )
            codes = ", ".join(f"{code}: {n}" for code, n in sorted(summary.by_code.items()))
            out(
                (f"Found {_counted(summary.findings, 'problem')}", "bold"),
                f": {severities} ({codes}).",
            )
        elif summary.errors or self.discovery_errors:
            out(("No problems found in the files that could be analyzed.", "bold"))
        else:
            out(("All checks passed!", "bold green"))
        details = [
            f"{summary.parsed} parsed",
            f"{summary.cached} cached",
            f"{max(summary.not_training_code, 0)} not training code",
        ]
        if summary.skipped:
            details.append(f"{summary.skipped} skipped")
        if summary.unreadable:
            details.append(f"{summary.unreadable} unreadable")
        out(
            f"{_counted(summary.files, 'file')} checked ({', '.join(details)}) "
            f"in {summary.elapsed:.2f}s."
        )
        failed = len(summary.errors) + self.discovery_errors
        if failed:
            out((f"{_counted(failed, 'file')} could not be analyzed", "bold red"), " (see above).")
