"""Summaries of other modules as small same-file definitions: the model follows them exactly as
it follows the file's own helpers.

``train_one_epoch`` of ``engine.py``, summarized as "trains ``model``; in a loop: zeroes
``optimizer``, forwards ``model``, backwards, steps ``optimizer``", becomes the stub::

    def train_one_epoch(model, loader, optimizer, criterion):
        model.train()
        for _ in __loop_0__:
            optimizer.zero_grad()
            model()
            (loss).backward()
            optimizer.step()

and ``callee(call, scope)`` answers with the stub's :class:`Scope` (``instance_class`` with a
stub :class:`ClassInfo` for ``meter = AverageMeter()``). Events are then inlined by the same
code as same-file helpers (parameters renamed to the caller's arguments, roles from the
caller's arguments, ``via`` the call), and every query that follows a helper follows the stub.
Its loops are marked ``external``: the caller sees their events as a nested loop's, and the
train step they make is the other file's (it is analyzed there).

A stub is not the other file's code: nodes in it have no position in this file
(``line_of`` is 0, findings anchored on them are dropped), and it has no ``return``; what a
stub returns is read from its summary (:meth:`Stubs.function_summary`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import libcst as cst

from trainlint.model.summaries.types import ClassSummary, Effect, FunctionSummary
from trainlint.model.syntax.nodes import descendants
from trainlint.model.syntax.scopes import ScopeBuilder

if TYPE_CHECKING:
    from trainlint.model import TrainingModel
    from trainlint.model.syntax.scopes import ClassInfo, Scope

#: The role each kind of event implies for its subject (annotated on non-parameter subjects).
_IMPLIED = {
    "step": "optimizer",
    "zero_grad": "optimizer",
    "model_zero_grad": "model",
    "scheduler_step": "scheduler",
    "eval_mode": "model",
    "train_mode": "model",
    "forward": "model",
    "engine_step": "engine",
    "scaler_update": "scaler",
}
_NEEDS_SUBJECT = (set(_IMPLIED) - {"eval_mode", "train_mode"}) | {"accumulate", "append", "unscale"}
#: The receiver of a collective mode switch (every model of a collection: ``mode_switches``).
_COLLECTION = "__models__[__name__]"


def _statement(effect: Effect) -> str | None:
    """One line of stub code that the event classifier reads as ``effect``."""
    kind, subject, operand = effect.kind, effect.subject, effect.operand or "__unknown__"
    if kind in _NEEDS_SUBJECT and not subject:
        return None
    scaled = effect.scaled_by
    if kind == "accumulate":
        return f"{subject} += {operand}"
    if kind == "append":
        return f"{subject}.append({operand})"
    if kind == "backward":
        if effect.managed:
            return f"fabric.backward({operand})"
        if scaled:
            return f"{scaled}.scale({operand}).backward()"
        return f"({operand}).backward()"
    if kind == "step" and scaled:
        return f"{scaled}.step({subject})"
    if kind in ("step", "engine_step", "scheduler_step"):
        return f"{subject}.step()"
    if kind in ("zero_grad", "model_zero_grad"):
        return f"{subject}.zero_grad()"
    if kind == "grad_clear":
        return f"{subject}.zero_()" if (subject or "").endswith(".grad") else "__p__.grad = None"
    if kind == "grad":
        return "__p__.grad = __g__"
    if kind == "clip":
        return f"{subject}.clip_grad_norm_()" if subject else "torch.nn.utils.clip_grad_norm_()"
    if kind == "unscale" and scaled:
        return f"{scaled}.unscale_({subject})"
    if kind == "scaler_update":
        return f"{subject}.update()"
    if kind == "eval_mode":
        return f"{subject or _COLLECTION}.eval()"
    if kind == "train_mode":
        flag = effect.operand or ""  # ``model.train(was_training)``: a saved mode restored
        return f"{subject or _COLLECTION}.train({flag})"
    if kind == "forward":
        return f"{subject}()"
    return None


def _context_call(name: str) -> str:
    return f"__context_{name}__()"  # read by ``event_types.context_of``


def function_source(summary: FunctionSummary, indent: str = "") -> str:
    """The stub of one function (a method when ``summary.is_method``)."""
    defaults = dict(summary.defaults)
    params = ["self"] if summary.is_method else []
    for name in summary.params:
        params.append(f"{name}={defaults[name]!r}" if name in defaults else name)
    lines = [f"{indent}@{_context_call(c)}" for c in summary.contexts]
    lines.append(f"{indent}def {summary.name.rsplit('.', 1)[-1]}({', '.join(params)}):")
    body = f"{indent}    "
    outer = set(summary.contexts)
    current: tuple[object, ...] = ()
    for effect in summary.effects:
        statement = _statement(effect)
        if statement is None:
            continue
        blocks: list[str] = []
        if effect.loop is not None:
            blocks.append(f"for _ in __loop_{effect.loop}__:")
        for context in sorted(set(effect.contexts) - outer):
            blocks.append(f"with {_context_call(context)}:")
        if effect.condition is not None:
            blocks.append(f"if {effect.condition}:")
        shared = 0
        while shared < min(len(current), len(blocks)) and current[shared] == blocks[shared]:
            shared += 1
        for depth in range(shared, len(blocks)):
            lines.append(body + "    " * depth + blocks[depth])
        lines.append(body + "    " * len(blocks) + statement)
        current = tuple(blocks)
    if len(lines) == len(summary.contexts) + 1:
        lines.append(body + "pass")
    return "\n".join(lines) + "\n"


def class_source(summary: ClassSummary) -> str:
    lines = [f"class {summary.name}:"]
    for method in summary.methods:
        lines.append(function_source(method, "    "))
    if not summary.methods:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


class Stubs:
    """The stubs one file's model has made, by summary (each summary's stub made once)."""

    def __init__(self, model: TrainingModel) -> None:
        self.model = model
        self._functions: dict[int, Scope | None] = {}
        self._classes: dict[int, ClassInfo | None] = {}
        self._summaries: dict[int, FunctionSummary] = {}  # id(stub scope node) -> summary
        self._class_summaries: dict[int, ClassSummary] = {}  # id(stub ClassDef) -> summary
        self._kept: list[object] = []  # summaries keyed by id(): keep them alive
        #: id(call) -> what it runs in another module (``queries.external_call``'s memo).
        self.calls: dict[int, object] = {}
        #: ``queries.lookup``'s and ``queries.instance_summary``'s memos, by name and
        #: id(scope) (the scopes live as long as the model).
        self.lookups: dict[tuple[str, int, bool], tuple[object, object]] = {}
        self.instances: dict[tuple[str, int], tuple[object, object]] = {}
        self._origins: dict[int, str] = {}  # id(stub node) -> the definition it stands for

    def keep(self, node: object) -> None:
        self._kept.append(node)

    def function(self, summary: FunctionSummary) -> Scope | None:
        key = id(summary)
        if key not in self._functions:
            self._kept.append(summary)
            builder = self._build(function_source(summary), summary)
            scope = next((s for s in builder.scopes if not s.is_module), None) if builder else None
            self._functions[key] = scope
        return self._functions[key]

    def class_info(self, summary: ClassSummary) -> ClassInfo | None:
        key = id(summary)
        if key not in self._classes:
            self._kept.append(summary)
            builder = self._build(class_source(summary), summary)
            info = builder.classes.get(summary.name) if builder else None
            if info is not None:
                info.bases = list(summary.bases)
                self._class_summaries[id(info.node)] = summary
                for method in summary.methods:
                    scope = info.methods.get(method.name.rsplit(".", 1)[-1])
                    if scope is not None:
                        self._summaries[id(scope.node)] = method
            self._classes[key] = info
        return self._classes[key]

    def origin(self, node: cst.CSTNode) -> str | None:
        """The summarized definition a stub node stands for (``AverageMeter.update``)."""
        return self._origins.get(id(node))

    def function_summary(self, scope: Scope | None) -> FunctionSummary | None:
        """The summary a stub scope was made from (None for the file's own functions)."""
        return self._summaries.get(id(scope.node)) if scope is not None else None

    def class_summary(self, info: ClassInfo | None) -> ClassSummary | None:
        return self._class_summaries.get(id(info.node)) if info is not None else None

    def _build(self, source: str, summary: FunctionSummary | ClassSummary) -> ScopeBuilder | None:
        parsed = _parse_stub(source)
        if parsed is None:
            return None
        module, nodes_by_scope = parsed
        builder = ScopeBuilder(module)
        builder.walk(module)
        functions = [summary] if isinstance(summary, FunctionSummary) else list(summary.methods)
        scopes = [s for s in builder.scopes if not s.is_module]
        for index, (scope, function) in enumerate(zip(scopes, functions, strict=False)):
            self._summaries[id(scope.node)] = function
            self._annotate(scope, function)
            for node in nodes_by_scope[index] if index < len(nodes_by_scope) else ():
                self._origins[id(node)] = function.name
        for loop in builder.loops:
            loop.external = True
            self.model.register_loop(loop)
        self._kept.append(module)
        return builder

    @staticmethod
    def _annotate(scope: Scope, summary: FunctionSummary) -> None:
        """Roles of the objects a stub uses that are not its parameters (``self.optimizer``):
        the callee's own knowledge, as the model reads annotations."""
        params = set(scope.params)
        for effect in summary.effects:
            for name, role in (
                (effect.subject, effect.role or _IMPLIED.get(effect.kind)),
                (effect.scaled_by, "scaler"),
            ):
                if name and role and name.split(".", 1)[0] not in params - {"self"}:
                    scope.annotations.setdefault(name, f"trainlint:{role}")


@lru_cache(maxsize=2048)
def _parse_stub(source: str) -> tuple[cst.Module, tuple[tuple[cst.CSTNode, ...], ...]] | None:
    """A stub's tree and, for each function in it (in order), its nodes. Every file that
    imports a definition makes the same stub: parsed once per process (trees are immutable,
    so the models of several files can share one; each keeps its own facts about it)."""
    try:
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError):
        return None
    builder = ScopeBuilder(module)
    builder.walk(module)
    nodes = tuple(
        (scope.node, *descendants(scope.node)) for scope in builder.scopes if not scope.is_module
    )
    return module, nodes
