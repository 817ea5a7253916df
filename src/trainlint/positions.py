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
from collections.abc import Iterator, Mapping
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
