"""Source positions of every node, like libcst's ``PositionProvider``, at a fraction of the cost.

libcst computes positions by generating the module's code with a state that records where
each node starts and ends. Its provider splits every token with a regular expression, builds
two ``CodePosition`` and one ``CodeRange`` object per node, keys a dict by node (whose
``__hash__`` is Python code) and runs a generator-based context manager per syntactic node;
on real files that costs about twice the parse itself. This state does the same walk with
the same rules (so the ranges are identical: ``tests/test_positions.py`` compares them node by
node) but keeps plain tuples keyed by ``id(node)`` and builds ``CodeRange`` objects only for
the nodes that are looked up -- the anchors of findings, and the lines rules quote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import Any

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import CodePosition, CodeRange

_NEWLINE = re.compile(r"\r\n?|\n")

_Point = tuple[int, int]
_Range = tuple[_Point, _Point]


class _Syntactic:
    """``record_syntactic_position`` without a generator per call."""

    __slots__ = ("end_node", "node", "start", "start_node", "state")

    def __init__(
        self, state: _PositionState, node: cst.CSTNode, start_node: Any, end_node: Any
    ) -> None:
        self.state = state
        self.node = node
        self.start_node = start_node
        self.end_node = end_node
        self.start: _Point = (0, 0)

    def __enter__(self) -> None:
        self.start = (self.state.line, self.state.column)

    def __exit__(self, *exc: object) -> None:
        state = self.state
        ranges = state.ranges
        start = ranges[id(self.start_node)][0] if self.start_node is not None else self.start
        end = (
            ranges[id(self.end_node)][1]
            if self.end_node is not None
            else (state.line, state.column)
        )
        ranges[id(self.node)] = (start, end)


class _PositionState(CodegenState):
    """Code generation that tracks line/column and records node ranges, keeping no text."""

    def __init__(self, module: cst.Module) -> None:
        super().__init__(
            default_indent=module.default_indent, default_newline=module.default_newline
        )
        self.line = 1  # one-based, as libcst
        self.column = 0  # zero-based, as libcst
        self.starts: list[_Point] = []
        self.ranges: dict[int, _Range] = {}

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def add_token(self, value: str) -> None:
        if not self.tokens:  # Module's code generation asks whether anything was written
            self.tokens.append(value)
        if "\n" in value or "\r" in value:
            segments = _NEWLINE.split(value)
            self.line += len(segments) - 1
            self.column = len(segments[-1])
        else:
            self.column += len(value)

    def pop_trailing_newline(self) -> None:
        pass  # no text is kept; libcst does not move the position back either

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.starts.append((self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self.starts.pop()
        key = id(node)
        if key not in self.ranges:  # a syntactic position recorded inside wins
            self.ranges[key] = (start, (self.line, self.column))

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _Syntactic:
        return _Syntactic(self, node, start_node, end_node)


class Positions(Mapping[cst.CSTNode, CodeRange]):
    """node -> ``CodeRange``, as ``MetadataWrapper.resolve(PositionProvider)`` returns."""

    def __init__(self, module: cst.Module) -> None:
        state = _PositionState(module)
        module._codegen(state)
        self._ranges = state.ranges
        self._nodes: dict[int, cst.CSTNode] | None = None
        self._module = module

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        (line, column), (end_line, end_column) = self._ranges[id(node)]
        return CodeRange(CodePosition(line, column), CodePosition(end_line, end_column))

    def __contains__(self, node: object) -> bool:
        return id(node) in self._ranges

    def __len__(self) -> int:
        return len(self._ranges)

    def __iter__(self) -> Iterator[cst.CSTNode]:
        if self._nodes is None:  # rarely wanted: walk the tree once to map ids back to nodes
            self._nodes = {}
            stack: list[cst.CSTNode] = [self._module]
            while stack:
                node = stack.pop()
                self._nodes[id(node)] = node
                stack.extend(node.children)
        return (self._nodes[key] for key in self._ranges if key in self._nodes)


def positions(module: cst.Module) -> Positions:
    return Positions(module)


class _TextState(_PositionState):
    """A :class:`_PositionState` that also keeps the text it generates."""

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        if "\n" in value or "\r" in value:
            segments = _NEWLINE.split(value)
            self.line += len(segments) - 1
            self.column = len(segments[-1])
        else:
            self.column += len(value)


class StatementPositions(Mapping[cst.CSTNode, CodeRange]):
    """:class:`Positions` computed one top-level statement at a time, when a node in it is
    first looked up: a file with one finding prints the statement holding it, not the module.

    ``text`` must be the module's code (the text it was parsed from: libcst gives it back
    exactly) and ``parents`` map the module's nodes to their parents (layout nodes may be left
    out). A statement's
    printed text starts a line of the file; when it occurs in ``text`` exactly once, that is
    where it starts, and its ranges are those of a whole-module walk moved down by the lines
    before it. Anything else (a node of the module's header or footer, text with carriage
    returns, a statement whose text occurs twice) falls back to the whole-module walk, so the
    ranges are always :class:`Positions`' (``tests/test_positions.py``). (The one argument:
    every statement's printed text is in ``text`` where the statement starts, so an only
    occurrence is that; but for the last statement of a file without a final newline.)"""

    def __init__(
        self,
        module: cst.Module,
        parents: Mapping[int, cst.CSTNode],
        text: str,
        foreign: Callable[[cst.CSTNode], bool] | None = None,
    ) -> None:
        self._module = module
        self._parents = parents
        self._text = text
        #: Tells a node known to be of another tree (a stub's) from one ``parents`` leaves out
        #: (layout: whitespace, commas, comments), which only the whole walk can place.
        self._foreign = foreign
        self._full: Positions | None = None
        #: id(top-level statement) -> (id(node) -> range counted from the statement's first
        #: line as line 1, lines to add); None: not located, use the whole-module walk.
        self._statements: dict[int, tuple[dict[int, _Range], int] | None] = {}

    def _whole(self) -> Positions:
        if self._full is None:
            self._full = Positions(self._module)
        return self._full

    def _located(self, node: cst.CSTNode) -> tuple[dict[int, _Range], int] | None:
        """The ranges of the top-level statement holding ``node``, or None (use ``_whole``)."""
        parents, module = self._parents, self._module
        top, parent = node, parents.get(id(node))
        while parent is not None and parent is not module:
            top, parent = parent, parents.get(id(parent))
        if parent is None:
            return None  # the module itself, or not one of its nodes
        key = id(top)
        if key not in self._statements:
            self._statements[key] = self._locate(top)
        return self._statements[key]

    @cached_property
    def _body(self) -> frozenset[int]:
        # Carriage returns: lines end in three ways, counted here by "\n" alone.
        return frozenset() if "\r" in self._text else frozenset(map(id, self._module.body))

    def _locate(self, statement: cst.CSTNode) -> tuple[dict[int, _Range], int] | None:
        text = self._text
        if id(statement) not in self._body:
            return None  # a comment of the module's header or footer
        module = self._module
        if not module.has_trailing_newline and not module.footer and statement is module.body[-1]:
            return None  # printed with the newline the file lacks: not where it starts
        state = _TextState(self._module)
        statement._codegen(state)
        printed = "".join(state.tokens)
        start = text.find(printed)
        if not printed or start < 0 or text.find(printed, start + 1) >= 0:
            return None
        if start and text[start - 1] != "\n":
            return None
        return state.ranges, text.count("\n", 0, start)

    def get(self, node: cst.CSTNode, default: Any = None) -> Any:  # type: ignore[override]
        if self._full is None:
            found = self._located(node)
            if found is not None:
                ranges, shift = found
                point = ranges.get(id(node))
                if point is None:
                    return default
                (line, column), (end_line, end_column) = point
                return CodeRange(
                    CodePosition(line + shift, column), CodePosition(end_line + shift, end_column)
                )
            if self._foreign is not None and self._foreign(node):
                return default
        found_range = self._whole()._ranges.get(id(node))
        if found_range is None:
            return default
        (line, column), (end_line, end_column) = found_range
        return CodeRange(CodePosition(line, column), CodePosition(end_line, end_column))

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self.get(node)
        if found is None:
            raise KeyError(node)
        return found  # type: ignore[no-any-return]

    def __contains__(self, node: object) -> bool:
        return self.get(node) is not None  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._whole())

    def __iter__(self) -> Iterator[cst.CSTNode]:
        return iter(self._whole())


class _NoPosition:
    """What :class:`_PrintState` records a syntactic position with: nothing, no generator."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_POSITION = _NoPosition()


class _PrintState(CodegenState):
    """libcst's own code generation state, but ``record_syntactic_position`` (a generator-based
    context manager that only yields, entered for most nodes) is a shared no-op object."""

    __slots__ = ()

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _NoPosition:
        return _NO_POSITION


def code_for_node(module: cst.Module, node: cst.CSTNode) -> str:
    """``module.code_for_node(node)``, the same text, about a quarter cheaper."""
    state = _PrintState(
        default_indent=module.default_indent, default_newline=module.default_newline
    )
    node._codegen(state)
    return "".join(state.tokens)
