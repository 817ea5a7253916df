"""``trainlint inspect``'s text rendering of a report (see :mod:`trainlint.inspection`)."""

from __future__ import annotations

from typing import Any

Report = dict[str, Any]


def _at(entry: Report) -> str:
    """``line 12``, or ``cell 3, line 4`` in a notebook."""
    return entry.get("where") or f"line {entry['line']}"


def render_text(report: Report) -> str:
    lines = [report["file"]]
    if not report["train_steps"] and not report["eval_loops"]:
        lines.append("  no train step and no eval loop found")
    for step in report["train_steps"]:
        lines.append(f"train step: {_at(step)} in `{step['function']}`: {step['header']}")
        lines += _render_events(step["events"])
        window = step["window"]
        if window is not None:
            lines += _render_window(window)
    for loop in report["eval_loops"]:
        contexts = f" (in {', '.join(loop['contexts'])})" if loop["contexts"] else ""
        lines.append(f"eval loop: {_at(loop)} in `{loop['function']}`: {loop['header']}{contexts}")
        lines += _render_events(loop["events"])
    if report["roles"]:
        lines.append("roles:")
        width = max(len(r["name"]) for r in report["roles"])
        function = None
        for role in sorted(report["roles"], key=lambda r: r["function"]):
            if role["function"] != function:
                function = role["function"]
                lines.append(f"  in `{function}`:")
            what = role["role"] or "?"
            kind = f" ({role['kind']})" if role["kind"] else ""
            lines.append(f"    {role['name']:<{width}}  {what}{kind}: {role['evidence']}")
    if report["unresolved"]:
        lines.append("unresolved:")
        lines += [f"  {_at(u)}: {u['message']}" for u in report["unresolved"]]
    return "\n".join(lines)


def _render_events(events: list[Report]) -> list[str]:
    lines = ["  events:"] if events else ["  events: none"]
    for event in events:
        what = event["subject"] or event["operand"] or ""
        at = event.get("where") or str(event["line"])
        parts = [f"    {at:>5}  {event['kind']:<15} {what}".rstrip()]
        for condition in event["conditions"]:
            negation = "not " if condition["negated"] else ""
            guard = "  [window guard]" if condition["window_guard"] else ""
            parts.append(f"if {negation}{condition['test']}{guard}")
        if event["contexts"]:
            parts.append("in " + ", ".join(event["contexts"]))
        if event["in_loops"]:
            parts.append("inner loop at line " + ", ".join(map(str, event["in_loops"])))
        if event["via"]:
            parts.append("via " + " -> ".join(event["via"]))
        lines.append("  ·  ".join(parts))
    return lines


def _render_window(window: Report) -> list[str]:
    guard = f", guard `{window['guard']}` (line {window['line']})" if window["guard"] else ""
    length = f", length `{window['length']}`" if window["length"] else ", length unknown"
    counter = f", counter `{window['counter']}`" if window["counter"] else ""
    flush = ", also steps the last partial window" if window["flushes_last"] else ""
    lines = [f"  accumulation window: {window['kind']}{guard}{length}{counter}{flush}"]
    for backward in window["backwards"]:
        sources = ", ".join(backward["sources"]) or "no loss call found"
        presumed = ", presumed from a model output index" if backward["presumed"] else ""
        lines.append(
            f"    backward at line {backward['line']}: `{backward['operand']}` "
            f"{backward['scaling']}; reduction {backward['reduction']}{presumed} ({sources})"
        )
    return lines
