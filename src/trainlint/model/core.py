"""The model object of one file: its parse results and the queries that need them all
(lookups, callees, positions); the per-concept queries come from the mixins of
:mod:`.values.queries`, :mod:`.dataflow.queries`, :mod:`.loops.queries` and
:mod:`.frameworks.queries`. The public queries are documented in :mod:`trainlint.model`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path

import libcst as cst
from libcst.metadata import CodeRange

from trainlint.model.dataflow.objects import method_of_instance
from trainlint.model.dataflow.queries import DataflowQueries
from trainlint.model.frameworks.queries import FrameworkQueries
from trainlint.model.loops.events import Event
from trainlint.model.loops.queries import LoopQueries
from trainlint.model.summaries.queries import (
    External,
    SummarySource,
    external_call,
    external_callee,
    inherited_method,
    instance_summary,
    returned_of,
)
from trainlint.model.summaries.stubs import Stubs
from trainlint.model.summaries.types import ClassSummary, Returned
from trainlint.model.syntax.nodes import dotted
from trainlint.model.syntax.scopes import (
    Binding,
    CallSite,
    ClassInfo,
    LoopInfo,
    Scope,
    ScopeBuilder,
)
from trainlint.model.values.queries import ValueQueries
from trainlint.positions import StatementPositions, code_for_node, positions


class TrainingModel(ValueQueries, DataflowQueries, LoopQueries, FrameworkQueries):
    """Everything rules need to know about one file."""

    def __init__(
        self,
        module: cst.Module,
        path: Path | str = "<string>",
        text: str = "",
        project: SummarySource | None = None,
        *,
        parsed_from_text: bool = False,
    ) -> None:
        """``parsed_from_text``: ``module`` is ``text`` parsed (so it prints as ``text``
        exactly): positions are then computed per top-level statement, when first asked."""
        self.module = module
        self._text_is_code = parsed_from_text or not text
        #: The project index as this file sees it (None: same-file knowledge only).
        self.project = project
        self.path = Path(path)
        self.text = text or module.code
        builder = ScopeBuilder(module)
        builder.walk(module)
        self.imports = builder.imports
        self.module_scope = builder.module_scope
        self.scopes = builder.scopes
        self.classes = builder.classes
        self.loops = builder.loops
        self.calls = builder.calls
        self.expression_statements = builder.expression_statements
        self._order_of = builder.order_of
        #: id(node) -> the node's parent, every node of the module (see ``Placement.parent``).
        self.node_parents = builder.parents
        self._loops_by_node = {id(loop.node): loop for loop in self.loops}
        self._iterations: dict[int, list[Event]] = {}
        #: ids of the loops whose iteration inlines a function around them (see
        #: ``reusable_iteration``).
        self._reentrant_loops: set[int] = set()
        self._function_events: dict[int, list[Event]] = {}
        #: id(expression) -> (expression, its calls in evaluation order), for the events
        #: builder: an expression is read again for every loop, function and helper call
        #: that reaches it.
        self._post_orders: dict[int, tuple[cst.CSTNode, list]] = {}
        #: (id(call), id(scope)) -> (call, scope, what event it is), see ``_classify``.
        self._classified: dict[tuple[int, int], tuple[cst.Call, Scope, tuple | None]] = {}
        #: id(node) -> (node, its printed source): the node is kept so its id is never reused.
        self._texts: dict[int, tuple[cst.CSTNode, str]] = {}
        self._file_mentions: dict[re.Pattern[str], bool] = {}
        self._callees: dict[tuple[int, int, bool], tuple[cst.Call, Scope, Scope | None]] = {}

    @classmethod
    def from_source(
        cls, text: str, path: Path | str = "<string>", project: SummarySource | None = None
    ) -> TrainingModel:
        return cls(cst.parse_module(text), path, text, project, parsed_from_text=True)

    def release(self) -> None:
        """Drop every analysis cached on the model; the model is unusable afterwards.

        The cached analyses refer back to the model, so the model and all they hold (positions,
        events, values) form a cycle that only the garbage collector can free, by traversing
        every one of those objects: measured, a fifth of a file's CPU. Released, reference
        counting frees them at once.

        The scopes, classes and loops link to each other both ways (a scope's parent holds it
        among its functions, a binding names its scope, a method's scope its class): those
        links are cut too, or the cycle they make kept the whole tree (every node hangs off a
        scope) until a collection. With the collector off during a file, the excerpt trees of
        the other modules a file's summaries parse piled up (measured: +190 MB on a file
        reading 205 summaries of one module).
        """
        stubs = self.__dict__.get("stubs")
        scopes = list(self.__dict__.get("scopes", ()))
        classes = list(self.__dict__.get("classes", {}).values())
        loops = list(self.__dict__.get("loops", ()))
        if stubs is not None:
            scopes += [s for s in stubs._functions.values() if s is not None]
            classes += [c for c in stubs._classes.values() if c is not None]
        for scope in scopes:
            _cut_scope(scope)
        for info in classes:
            for method in info.methods.values():
                _cut_scope(method)
            info.methods.clear()
            info.attributes.clear()
        for loop in loops:
            loop.children.clear()
            loop.parent = None
        self.__dict__.clear()

    # ------------------------------------------------------------------ structure
    def loop_for(self, node: cst.CSTNode) -> LoopInfo | None:
        return self._loops_by_node.get(id(node))

    def register_loop(self, loop: LoopInfo) -> None:
        """A loop of a stub (another module's function, see :mod:`.summaries.stubs`)."""
        self._loops_by_node[id(loop.node)] = loop

    @cached_property
    def stubs(self) -> Stubs:
        """Other modules' definitions as stubs the model follows like its own helpers."""
        return Stubs(self)

    def order_of(self, node: cst.CSTNode) -> int | None:
        return self._order_of.get(id(node))

    # ------------------------------------------------------------------ classes
    def class_bases(self, info: ClassInfo, seen: frozenset[str] = frozenset()) -> set[str]:
        """Every base, transitively through same-file classes, as written or qualified."""
        found: set[str] = set()
        for base in info.bases:
            found.add(base)
            short = base.rsplit(".", 1)[-1]
            local = self.classes.get(base) or self.classes.get(short)
            if local is not None and local.name not in seen and local is not info:
                found |= self.class_bases(local, seen | {info.name})
        return found

    # ------------------------------------------------------------------ functions
    def callee(self, call: cst.Call, scope: Scope, external: bool = True) -> Scope | None:
        """The function or method ``call`` runs, if it can be told statically: same-file, or
        (``external``) the stub of another project module's (see :mod:`.summaries.stubs`).
        Maps of a function's same-file callers pass ``external=False``: they need no other
        module, and asking would summarize every imported function the file calls.

        Answered once per (call, scope): the events builder asks again for every loop,
        function and helper call that reaches the call (measured: 3 asks per answer)."""
        key = (id(call), id(scope), external)
        found = self._callees.get(key)
        if found is not None and found[0] is call and found[1] is scope:
            return found[2]
        answer = self._callee(call, scope, external)
        self._callees[key] = (call, scope, answer)  # both kept: their ids stay theirs
        return answer

    def _callee(self, call: cst.Call, scope: Scope, external: bool) -> Scope | None:
        func = call.func
        if isinstance(func, cst.Name):
            found = scope.visible_function(func.value)
            if found is not None:
                return found
            found = method_of_instance(self, call, scope, external=False)
            if found is not None:
                return found
            return external_callee(self, call, scope) if external else None
        if (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and scope.cls is not None
        ):
            return self.method(scope.cls, func.attr.value)
        found = method_of_instance(self, call, scope, external)  # ``meter.update(loss)``
        if found is not None or not external:
            return found
        return external_callee(self, call, scope)

    def external_call(self, call: cst.Call, scope: Scope) -> External | None:
        """What ``call`` runs in another module of the project (see :mod:`.summaries`)."""
        return external_call(self, call, scope) if self.project is not None else None

    def instance_summary(
        self, expr: cst.BaseExpression | None, scope: Scope
    ) -> ClassSummary | None:
        """The class of another project module ``expr`` is an instance of."""
        return instance_summary(self, expr, scope) if self.project is not None else None

    def returned_summary(
        self, call: cst.Call, scope: Scope, index: int | None = None
    ) -> Returned | None:
        """What a call into another module returns: activation, loss reduction, role."""
        return returned_of(self, call, scope, index) if self.project is not None else None

    def method(self, info: ClassInfo, name: str) -> Scope | None:
        found = info.methods.get(name)
        if found is not None:
            return found
        for base in info.bases:
            local = self.classes.get(base.rsplit(".", 1)[-1])
            if local is not None and local is not info:
                found = local.methods.get(name)
                if found is not None:
                    return found
        return inherited_method(self, info, name)  # a base class of another project module

    def argument_renames(self, call: cst.Call, callee: Scope) -> dict[str, str | None]:
        """Callee parameter -> the caller's name for the argument (None when not a name)."""
        params = list(callee.params)
        if callee.cls is not None and params and params[0] in ("self", "cls"):
            params = params[1:]
        renames: dict[str, str | None] = {}
        position = 0
        for arg in call.args:
            if arg.star:
                continue
            if arg.keyword is not None:
                renames[arg.keyword.value] = dotted(arg.value)
            elif position < len(params):
                renames[params[position]] = dotted(arg.value)
                position += 1
        return {k: v for k, v in renames.items() if k != v}

    # ------------------------------------------------------------------ values and roles
    def lookup(self, name: str, scope: Scope, before: int | None = None) -> list[Binding]:
        """Bindings of ``name`` visible from ``scope`` (latest first)."""
        if name.startswith("self.") and scope.cls is not None:
            bindings = list(scope.cls.attributes.get(name[len("self.") :], []))
            bindings += scope.bindings.get(name, [])
        else:
            bindings = []
            current: Scope | None = scope
            owner: Scope | None = None
            while current is not None and not bindings:
                bindings = list(current.bindings.get(name, []))
                owner = current
                current = current.parent
            if before is not None and owner is not None and name in owner.params:
                # used before any rebinding: the parameter itself, not the later value
                # (``loss = bce(pred, y); pred = torch.sigmoid(pred)``)
                return sorted(
                    (b for b in bindings if b.order < before), key=lambda b: b.order, reverse=True
                )
        if before is not None:
            earlier = [b for b in bindings if b.order < before]
            bindings = earlier or bindings
        return sorted(bindings, key=lambda b: b.order, reverse=True)

    @cached_property
    def positions(self) -> Mapping[cst.CSTNode, CodeRange]:
        """Source positions; computed on first use only (most files never need them).

        Same ranges as libcst's PositionProvider, about 3x cheaper (see trainlint.positions);
        for a module parsed from the model's text, only the top-level statements looked up
        are walked (``StatementPositions``).
        """
        if self._text_is_code:
            return StatementPositions(self.module, self.node_parents, self.text, self._is_stub)
        return positions(self.module)

    def _is_stub(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` belongs to a stub (another module's definition, no position here)."""
        stubs = self.__dict__.get("stubs")
        return stubs is not None and stubs.origin(node) is not None

    def text_of(self, node: cst.CSTNode | None) -> str:
        """The source code of ``node`` as written (empty for ``None``), for messages and fixes.

        Printed once per node (printing a whole function is not cheap, and several rules read
        the same functions' text)."""
        if node is None:
            return ""
        entry = self._texts.get(id(node))
        if entry is not None and entry[0] is node:
            return entry[1]
        text = code_for_node(self.module, node)
        self._texts[id(node)] = (node, text)
        return text

    def source_mentions(self, nodes: Iterable[cst.CSTNode], pattern: re.Pattern[str]) -> bool:
        """Whether ``pattern`` is found (``search``) in the source of any of ``nodes``.

        ``pattern``'s matches must lie within one line and hold no whitespace, and it must not
        use ``^`` or ``$``. Printing a function, class or loop of this file leaves out only the
        indentation of the blocks around it, so a match in its text is a match in the file's:
        when the file has none, only the other nodes (another module's stubs, statements) are
        printed to be sure."""
        unique = {id(node): node for node in nodes}
        in_file = self._file_mentions.get(pattern)
        if in_file is None:  # asked once per region: search the whole file once per pattern
            in_file = self._file_mentions[pattern] = pattern.search(self.text) is not None
        if not in_file:
            own = self._own_blocks
            unique = {key: node for key, node in unique.items() if key not in own}
        return any(pattern.search(self.text_of(node)) for node in unique.values())

    @cached_property
    def _own_blocks(self) -> frozenset[int]:
        """The ids of this file's functions, classes and loops (not a stub's)."""
        nodes = [s.node for s in self.scopes] + [c.node for c in self.classes.values()]
        return frozenset(id(node) for node in nodes + [loop.node for loop in self.loops])

    def line_of(self, node: cst.CSTNode) -> int:
        """The 1-based line where ``node`` starts (0 when unknown)."""
        found = self.positions.get(node)
        return found.start.line if found is not None else 0  # 0: a stub's (another module's)

    def where(self, node: cst.CSTNode) -> str:
        """``line N``, or for a stub's node (another module's code) where it comes from."""
        line = self.line_of(node)
        if line:
            return f"line {line}"
        origin = self.stubs.origin(node)
        return f"in `{origin}`" if origin else "line 0"

    def calls_in(self, scope: Scope) -> list[CallSite]:
        """The call sites written directly in ``scope`` (not in functions nested in it)."""
        return self._calls_by_scope.get(id(scope.node), [])

    def calls_in_class(self, info: ClassInfo) -> list[CallSite]:
        """The call sites written in the methods of ``info``."""
        return self._calls_by_class.get(id(info.node), [])

    @cached_property
    def _calls_by_class(self) -> dict[int, list[CallSite]]:
        found: dict[int, list[CallSite]] = {}
        for site in self.calls:
            if site.scope.cls is not None:
                found.setdefault(id(site.scope.cls.node), []).append(site)
        return found

    @cached_property
    def _calls_by_scope(self) -> dict[int, list[CallSite]]:
        found: dict[int, list[CallSite]] = {}
        for site in self.calls:
            found.setdefault(id(site.scope.node), []).append(site)
        return found


def _cut_scope(scope: Scope) -> None:
    """Cut ``scope``'s links to other scopes, its class and its bindings (see ``release``)."""
    for nested in scope.functions.values():
        nested.parent = None
    scope.functions.clear()
    for bindings in scope.bindings.values():
        for binding in bindings:
            binding.scope = None
    scope.bindings.clear()
    scope.parent = None
    scope.cls = None
