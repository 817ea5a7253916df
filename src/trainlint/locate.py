"""Violations -> findings: positions, noqa, severities, fixes located as text edits, and the
fingerprints baselines match on. Runs only for files where something was found."""

from __future__ import annotations

from trainlint.baseline import anchor_text, finding_fingerprint
from trainlint.model import TrainingModel
from trainlint.rule import Edit, Finding, Rule, Severity, Span, TextEdit, Violation
from trainlint.suppressions import SuppressionReport, Suppressions, comments


def locate(
    model: TrainingModel,
    text: str,
    display: str,
    violations: list[tuple[Rule, Violation]],
    judges: list[Rule],
    severities: dict[str, Severity],
    known_codes: frozenset[str],
    selected_codes: frozenset[str],
) -> tuple[list[Finding], str | None]:
    """Findings with positions, fixes and fingerprints, after noqa; and a rule's error."""
    error = None
    suppressions = Suppressions.of(text)
    lines = suppressions.lines
    findings: set[Finding] = set()

    def add(rule: Rule, violation: Violation) -> None:
        span = _span(model, violation.node)
        if span is None or suppressions.suppresses(rule.code, span.line):
            return
        severity = severities.get(rule.code, violation.severity or rule.severity)
        fix = violation.fix
        edits = _edits(model, fix.edits) if fix is not None else None
        findings.add(
            Finding(
                path=display,
                line=span.line,
                column=span.column,
                end_line=span.end_line,
                end_column=span.end_column,
                code=rule.code,
                name=rule.name,
                severity=severity,
                message=violation.message,
                fix=fix.render() if fix else None,
                applicability=fix.applicability.value if fix and edits else None,
                edits=edits or (),
                fingerprint=finding_fingerprint(
                    rule.code, anchor_text(lines, span.line, span.end_line)
                ),
            )
        )

    for rule, violation in violations:
        add(rule, violation)
    if judges:
        report = SuppressionReport(
            tuple(suppressions.directives(comments(text))),
            suppressions,
            known_codes,
            selected_codes,
        )
        for rule in judges:
            try:
                found = list(rule.check_suppressions(report))
            except Exception as exc:  # a rule bug must not lose the file's other findings
                error = f"internal error in rule {rule.code}: {type(exc).__name__}: {exc}"
                continue
            for violation in found:
                add(rule, violation)
    return sorted(findings), error


def _span(model: TrainingModel, node: object) -> Span | None:
    if isinstance(node, Span):
        return node
    code_range = model.positions.get(node)  # type: ignore[call-overload]
    if code_range is None:
        return None
    start, end = code_range.start, code_range.end
    return Span(start.line, start.column + 1, end.line, end.column + 1)


def _edits(model: TrainingModel, edits: tuple[Edit | TextEdit, ...]) -> tuple[TextEdit, ...] | None:
    """Located edits; None when one cannot be located (the fix stays advice)."""
    located = []
    for edit in edits:
        if isinstance(edit, TextEdit):
            located.append(edit)
            continue
        span = _span(model, edit.node)
        if span is None:
            return None
        content = edit.replacement
        if not isinstance(content, str):
            content = model.module.code_for_node(content)
        located.append(TextEdit(span, content))
    return tuple(located)
