"""What the model saw in one file, for ``trainlint inspect``: a report built from a
:class:`~trainlint.model.TrainingModel`, as plain JSON-ready data, and its text rendering.

Users read it to understand a finding or a silence; developers to debug the model. The
report's shape (``--format json``, documented in docs/inspect-output.md) is::

    {"schema_version": 1, "file": str, "train_steps": [Loop], "eval_loops": [Loop],
     "roles": [Role], "unresolved": [{"line": int, "message": str}]}

    (notebooks: every entry with a "line" also has "where": "cell 3, line 4")

    Loop = {"line": int, "function": str, "header": str, "contexts": [str], "per_call": bool,
            "events": [Event], "window": Window | null}      (eval loops: no "window")
    Event = {"line": int, "kind": str, "subject": str | null, "operand": str | null,
             "conditions": [{"test": str, "negated": bool, "window_guard": bool}],
             "contexts": [str], "in_loops": [int], "via": [str]}
    Window = {"kind": str, "guard": str | null, "line": int | null, "length": str | null,
              "counter": str | null, "flushes_last": bool, "optimizers": [str],
              "backwards": [{"line": int, "operand": str, "reduction": str,
                             "presumed": bool, "sources": [str], "divisions": [str],
                             "scaling": str}]}
    Role = {"name": str, "function": str, "role": str | null, "kind": str | null,
            "evidence": str}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainlint import budget, parsing, sources
from trainlint.inspection.evidence import role_report, unresolved, unstepped_loops
from trainlint.inspection.loops import Report, eval_loop, is_eval_loop, train_step_report
from trainlint.inspection.text import render_text
from trainlint.model import TrainingModel
from trainlint.model.loops.events import EventKind
from trainlint.model.syntax.nodes import descendants, dotted, method_call
from trainlint.model.syntax.scopes import Scope

#: Goes up when a key is removed or renamed or changes meaning (new keys may be added freely).
SCHEMA_VERSION = 1

__all__ = ["InspectError", "Report", "build_report", "inspect_file", "render_text"]


class InspectError(Exception):
    """The file cannot be inspected; the message says why in one line."""


def inspect_file(path: Path, display: str | None = None) -> Report:
    """Read (a .py file or a notebook), parse and model ``path``; its report.

    Notebooks: lines are those of the code cells joined, as ``trainlint check`` counts them;
    every entry with a ``line`` also gets ``where`` (``cell 3, line 4``), and messages name
    the cell.
    """
    display = display or str(path)
    try:
        source = sources.load(path, max_bytes=0)
    except (sources.SourceError, sources.SkippedFile) as exc:
        raise InspectError(f"{display}: {exc}") from None
    try:
        # Parse limits, and a deep stack for the walks (see trainlint.limits).
        module = budget.deep_call(lambda: parsing.parse(source.text))
        report = budget.deep_call(
            lambda: build_report(TrainingModel(module, path, source.text), display)
        )
    except parsing.Unparsable as exc:
        where = f" ({source.display_line(exc.line)})" if exc.line else ""
        raise InspectError(f"{display}: {exc.message}{where}") from None
    except RecursionError as exc:
        raise InspectError(f"{display}: cannot analyze: {parsing.recursion_reason(exc)}") from None
    if source.cell_lines:
        _name_cells(report, source)
    return report


def _name_cells(node: Any, source: sources.SourceFile) -> None:
    if isinstance(node, list):
        for item in node:
            _name_cells(item, source)
    elif isinstance(node, dict):
        line = node.get("line")
        if isinstance(line, int) and line in source.cell_lines:
            node["where"] = source.display_line(line)
            if isinstance(node.get("message"), str):
                node["message"] = source.cell_message(node["message"], line)
        for value in node.values():
            if isinstance(value, (list, dict)):
                _name_cells(value, source)


#: Event kinds whose subject is a named object worth a role line.
_SUBJECT_KINDS = (
    EventKind.FORWARD, EventKind.STEP, EventKind.ZERO_GRAD, EventKind.MODEL_ZERO_GRAD,
    EventKind.SCHEDULER_STEP, EventKind.SCALER_UPDATE, EventKind.UNSCALE,
    EventKind.EVAL_MODE, EventKind.TRAIN_MODE, EventKind.ENGINE_STEP,
)  # fmt: skip
_STEP_METHODS = ("step", "zero_grad")


def build_report(model: TrainingModel, display: str) -> Report:
    """Everything ``trainlint inspect`` prints about one file."""
    steps = model.window_steps
    in_steps = {id(lp.node) for s in steps for e in s.events for lp in e.loops}
    in_steps |= {id(s.loop.node) for s in steps}
    evals = [lp for lp in model.loops if is_eval_loop(model, lp, in_steps)]
    subjects: dict[tuple[str, int], Scope] = {}
    for events in [s.events for s in steps] + [model.iteration(lp) for lp in evals]:
        for event in events:
            if event.kind in _SUBJECT_KINDS and event.subject:
                subjects.setdefault((event.subject, id(event.scope)), event.scope)
    unstepped = unstepped_loops(model, in_steps)
    loops = [s.loop for s in steps] + evals + unstepped
    watched = {id(n) for lp in loops for n in descendants(lp.node)}
    for site in model.calls:  # ``criterion(...)``, ``loss_fn(...)``: called objects with a role
        name = dotted(site.node.func)
        if name and id(site.node) in watched and model.role_of(site.node.func, site.scope):
            subjects.setdefault((name, id(site.scope)), site.scope)
        method = method_call(site.node)
        receiver = dotted(method[0]) if method and method[1] in _STEP_METHODS else None
        if receiver and id(site.node) in watched:  # ``opt.step()`` even when not a step event
            subjects.setdefault((receiver, id(site.scope)), site.scope)
    return {
        "schema_version": SCHEMA_VERSION,
        "file": display,
        "train_steps": [train_step_report(model, s) for s in steps],
        "eval_loops": [eval_loop(model, lp) for lp in evals],
        "roles": [role_report(model, name, scope) for (name, _), scope in subjects.items()],
        "unresolved": unresolved(model, steps, evals, unstepped, in_steps),
    }
