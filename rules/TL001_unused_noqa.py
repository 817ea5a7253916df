from __future__ import annotations

from collections.abc import Iterator

from trainlint import Applicability, Fix, Rule, Severity, Span, TextEdit
from trainlint.model import TrainingModel
from trainlint.rule import Violation
from trainlint.suppressions import Directive, SuppressionReport


class UnusedNoqa(Rule):
    """A `# noqa: TLxxx` that suppressed nothing, or names a code no rule has.

    ## What it does
    Flags `# noqa: TL...` comments (and file-level `# trainlint: noqa: TL...` lines) whose
    trainlint codes suppressed no finding in this run, and codes that no installed rule has.
    Codes of other linters (`E501`, `F401`) and a bare `# noqa` are left alone: they are
    not trainlint's business. Codes of rules that were not selected for the run are not judged.

    ## Why is this bad?
    A stale suppression outlives the bug it silenced: when the code changes and the bug comes
    back on that line, nothing reports it. A misspelled code suppresses nothing at all, while
    the comment makes a reader believe something was checked.

    ## Example
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)  # noqa: TL201
        loss.backward()
        optimizer.step()
    ```

    ## Use instead
    ```python
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    ```
    The fix (safe) removes the stale codes, or the whole comment when none remain.
    """

    code = "TL001"
    name = "unused-noqa"
    severity = Severity.INFO
    frameworks = ("any",)
    triggers = ("noqa", "NOQA", "Noqa")
    block_triggers = ()
    summary = "A `# noqa: TLxxx` suppressed nothing, or names a code that no rule has."
    uses_suppressions = True
    fix_availability = "always"
    fix_applicability = Applicability.SAFE

    def check(self, model: TrainingModel) -> Iterator[Violation]:
        return iter(())

    def check_suppressions(self, report: SuppressionReport) -> Iterator[Violation]:
        for directive in report.directives:
            stale, unknown = [], []
            for code in directive.codes:
                if not code.startswith("TL"):
                    continue  # another linter's code
                if not any(known.startswith(code) for known in report.known_codes):
                    unknown.append(code)
                elif not any(known.startswith(code) for known in report.checked_codes):
                    continue  # that rule did not run: nothing to judge
                elif not report.was_used(directive, code):
                    stale.append(code)
            if stale or unknown:
                yield self._violation(report, directive, stale, unknown)

    def _violation(
        self,
        report: SuppressionReport,
        directive: Directive,
        stale: list[str],
        unknown: list[str],
    ) -> Violation:
        parts = []
        if stale:
            parts.append(f"{', '.join(stale)} suppressed nothing here")
        if unknown:
            parts.append(f"{', '.join(unknown)} is not a trainlint rule")
        kept = [c for c in directive.codes if c not in stale and c not in unknown]
        anchor = Span(directive.line, directive.start + 1, directive.line, directive.end + 1)
        if kept:
            prefix = "# trainlint: noqa: " if directive.file_level else "# noqa: "
            edit = TextEdit(anchor, prefix + ", ".join(kept))
            description = f"keep only {', '.join(kept)}"
        elif directive.leads_comment and not directive.whole_comment:
            edit = TextEdit(anchor, "#")  # ``# noqa: TL101 reason`` -> ``# reason``
            description = "remove the codes"
        else:
            edit = TextEdit(_removal(report, directive), "")
            description = "remove the comment" if directive.whole_comment else "remove the codes"
        message = "unused suppression: " + "; ".join(parts)
        return Violation(anchor, message, Fix(description, None, (edit,), Applicability.SAFE))


def _removal(report: SuppressionReport, directive: Directive) -> Span:
    """The region to delete: the directive, with the spaces before it when it ends the line,
    or the whole line when the comment is all the line holds."""
    line = directive.line
    text = report.line_text(line)
    if not directive.whole_comment:
        return Span(line, directive.start + 1, line, directive.end + 1)
    before = text[: directive.start].rstrip()
    if before:
        return Span(line, len(before) + 1, line, len(text) + 1)
    if line < len(report.suppressions.lines):
        return Span(line, 1, line + 1, 1)
    return Span(line, 1, line, len(text) + 1)
