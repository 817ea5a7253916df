"""The roles of names and the evidence for each; what the model could not resolve."""

from __future__ import annotations

import builtins
from typing import Any

import libcst as cst

from trainlint.inspection.loops import Report, window_report
from trainlint.model import TrainingModel, TrainStep
from trainlint.model.loops.events import EventKind
from trainlint.model.syntax.nodes import descendants, dotted
from trainlint.model.syntax.scopes import Binding, LoopInfo, Scope
from trainlint.model.values.roles import role_from_annotation, role_from_name

#: Libraries whose functions are not training helpers: calls into them are not "unseen".
_LIBRARIES = (
    "torch", "tensorflow", "keras", "numpy", "math", "random", "os", "sys", "time", "json",
    "logging", "tqdm", "transformers", "accelerate", "deepspeed", "lightning",
    "pytorch_lightning", "wandb", "datasets", "sklearn", "PIL", "torchvision", "pathlib",
    "collections", "itertools", "functools", "copy", "apex", "timm", "tensorboardX", "pickle",
)  # fmt: skip
_BUILTINS = frozenset(dir(builtins))


def role_report(model: TrainingModel, name: str, scope: Scope) -> Report:
    try:
        node = cst.parse_expression(name)
    except cst.ParserSyntaxError:
        return {"name": name, "role": None, "kind": None, "evidence": "not a plain name"}
    value = model.value_of(node, scope)
    return {
        "name": name,
        "function": scope.name,
        "role": value.role.value if value is not None else None,
        "kind": (value.kind or None) if value is not None else None,
        "evidence": _evidence(model, name, scope, value),
    }


def _binding(model: TrainingModel, name: str, scope: Scope) -> Binding | None:
    for binding in model.lookup(name, scope):
        if binding.augmented is None and (binding.value is not None or binding.nested_path):
            return binding
    return None


def _evidence(model: TrainingModel, name: str, scope: Scope, value: Any) -> str:
    binding = _binding(model, name, scope)
    made = value.call if value is not None else None
    if binding is not None and binding.from_iteration:
        return f"a loop variable (line {model.line_of(binding.statement)})"
    if binding is not None and binding.nested_path and isinstance(binding.unpacked_from, cst.Call):
        # ``model, [opt1, opt2] = amp.initialize(model, [opt1, opt2])``
        call = binding.unpacked_from
        called = model.imports.qualify(call.func) or dotted(call.func) or "a call"
        path = ", ".join(str(i) for i in binding.nested_path)
        around = ""
        if made is not None:
            maker = model.imports.qualify(made.func) or dotted(made.func) or "a call"
            around = f", around `{maker}` at line {model.line_of(made)}"
        return f"wrapper `{called}` at line {model.line_of(call)}, nested slot ({path}){around}"
    if binding is not None and isinstance(binding.value, cst.Call):
        call = binding.value
        called = model.imports.qualify(call.func) or dotted(call.func) or "a call"
        where = f"`{called}` at line {model.line_of(call)}"
        if made is call or made is None and value is not None:
            if dotted(call.func) in model.classes:
                return f"instance of same-file class {where}"
            return f"constructor {where}" if made is call else f"returned by {where}"
        if made is not None:
            maker = model.imports.qualify(made.func) or dotted(made.func) or "a call"
            slot = f", slot {binding.unpack_index}" if binding.unpack_index is not None else ""
            return f"wrapper {where}{slot}, around `{maker}` at line {model.line_of(made)}"
        return f"made by {where}: not a role trainlint recognises"
    if binding is not None and isinstance(binding.value, (cst.Name, cst.Attribute)):
        source = model.text_of(binding.value)
        line = model.line_of(binding.statement)
        if made is not None:
            maker = model.imports.qualify(made.func) or dotted(made.func) or "a call"
            made_at = model.line_of(made)
            return f"alias of `{source}` (line {line}), made by `{maker}` at line {made_at}"
        return f"alias of `{source}` (line {line})"
    if name in scope.annotations and role_from_annotation(scope.annotations[name]) is not None:
        return f"annotation `{scope.annotations[name]}`"
    if value is not None and role_from_name(name) is value.role:
        return "name only" + (" (a parameter)" if name in scope.params else "")
    if binding is None and name.split(".")[0] in scope.params:
        return "a parameter, with nothing that tells what it is"
    return "unknown: no binding, annotation or telling name"


def unstepped_loops(model: TrainingModel, in_steps: set[int]) -> list[LoopInfo]:
    """Loops that run a backward and no optimizer step trainlint recognises: the innermost
    one, unless a loop around it has ``.step()`` calls (then that loop, where the step is)."""
    found = []
    for loop in model.loops:
        if id(loop.node) in in_steps or model.is_framework_managed(loop.scope):
            continue
        kinds = {e.kind for e in model.iteration(loop)}
        if EventKind.BACKWARD in kinds and EventKind.STEP not in kinds:
            found.append(loop)
    ids = {id(lp.node) for lp in found}
    stepping = {id(lp.node) for lp in found if _step_calls(lp)}
    chosen = []
    for loop in found:
        ancestors = [a for a in model.enclosing_loops(loop) if id(a.node) in ids]
        if any(id(a.node) in stepping for a in ancestors):
            continue  # reported at the loop that holds the step calls
        children = [lp for lp in found if lp.parent is loop]
        if children and id(loop.node) not in stepping:
            continue  # an epoch loop around the loop that back-propagates
        if children and any(_step_calls(c) for c in children):
            continue
        chosen.append(loop)
    return chosen


def _step_calls(loop: LoopInfo) -> list[cst.Call]:
    return [
        node
        for node in descendants(loop.node)
        if isinstance(node, cst.Call)
        and isinstance(node.func, cst.Attribute)
        and node.func.attr.value == "step"
    ]


def _step_like_calls(model: TrainingModel, loop: LoopInfo) -> str:
    """``: `opt.step()` at line 28 (`opt` resolves to a model)`` -- why a step was not one."""
    notes = []
    for node in _step_calls(loop)[:3]:
        receiver = node.func.value  # type: ignore[attr-defined]
        value = model.value_of(receiver, loop.scope)
        module = model.imports.qualify(receiver)
        if value is not None:
            what = f"resolves to a {value.role.value}"
        elif module:
            what = f"is read as the imported module `{module}`"
        else:
            what = "has no known role"
        notes.append(
            f"`{model.text_of(node)}` at line {model.line_of(node)} "
            f"(`{model.text_of(receiver)}` {what})"
        )
    return ": " + "; ".join(notes) if notes else ""


_OPTIMIZER_KINDS = (EventKind.STEP, EventKind.ZERO_GRAD, EventKind.MODEL_ZERO_GRAD)


def _no_backward(model: TrainingModel, loop: LoopInfo, touching: list[Any]) -> Report:
    """A loop that steps or clears an optimizer with no backward in sight, and the unseen
    calls that are handed the optimizer (``loss_scaler(loss, optimizer, ...)``)."""
    line = model.line_of(loop.node)
    first = touching[0]
    names = {e.subject for e in touching if e.subject}
    suspects = []
    for node in descendants(loop.node):
        if isinstance(node, cst.Call) and model.callee(node, loop.scope) is None:
            passed = {dotted(a.value) for a in node.args}
            if passed & names and len(suspects) < 3:
                suspects.append(f"`{model.text_of(node.func)}(...)` at line {model.line_of(node)}")
    hint = f"; it passes the optimizer to {', '.join(suspects)}, which trainlint cannot see into"
    message = (
        f"loop at line {line} uses an optimizer (`{model.text_of(first.node)}` at line "
        f"{model.line_of(first.node)}) but runs no backward trainlint recognises"
        f"{hint if suspects else ''}"
    )
    return {"line": line, "message": message}


def unresolved(
    model: TrainingModel,
    steps: list[TrainStep],
    evals: list[LoopInfo],
    unstepped: list[LoopInfo],
    in_steps: set[int],
) -> list[Report]:
    found: list[Report] = []
    for loop in unstepped:
        line = model.line_of(loop.node)
        message = (
            f"loop at line {line} calls `backward()` but steps no optimizer trainlint "
            f"recognises{_step_like_calls(model, loop)}"
        )
        found.append({"line": line, "message": message})
    for loop in model.loops:
        if id(loop.node) in in_steps or model.is_framework_managed(loop.scope):
            continue
        events = model.iteration(loop)
        if any(e.loops for e in events if e.kind in _OPTIMIZER_KINDS):
            continue  # a nested loop does it: report that one
        touching = [e for e in events if e.kind in _OPTIMIZER_KINDS]
        if touching and not any(e.kind in (EventKind.BACKWARD, EventKind.GRAD) for e in events):
            found.append(_no_backward(model, loop, touching))
    found += _unseen_calls(model, [s.loop for s in steps] + evals + unstepped)
    for step in steps:
        window = window_report(model, step)
        for backward in window["backwards"] if window else ():
            if backward["reduction"] == "unknown":
                found.append(
                    {
                        "line": backward["line"],
                        "message": f"cannot tell how `{backward['operand']}` (backward at line "
                        f"{backward['line']}) is reduced: no loss call on its definition chain",
                    }
                )
    return sorted(found, key=lambda r: r["line"])


def _unseen_calls(model: TrainingModel, loops: list[LoopInfo]) -> list[Report]:
    """Calls in the watched loops to functions trainlint cannot see into."""
    inside = {id(node) for loop in loops for node in descendants(loop.node)}
    found: list[Report] = []
    seen: set[str] = set()
    for site in model.calls:
        call = site.node
        if id(call) not in inside or not isinstance(call.func, cst.Name):
            continue
        name = call.func.value
        if name in _BUILTINS or name in seen or model.callee(call, site.scope) is not None:
            continue
        if name in model.classes or model.role_of(call.func, site.scope) is not None:
            continue  # a same-file class, or a model / criterion called
        qualified = site.qualified or model.imports.qualify(call.func)
        if qualified and qualified.split(".")[0] in _LIBRARIES:
            continue
        seen.add(name)
        origin = f" (imported from `{qualified.rsplit('.', 1)[0]}`)" if qualified else ""
        line = model.line_of(call)
        found.append(
            {
                "line": line,
                "message": f"`{name}()` at line {line}{origin} is not visible: trainlint does "
                "not know what it does or returns",
            }
        )
    return found
