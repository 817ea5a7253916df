"""What a file may cost before it is parsed.

libcst's native parser recurses on the machine stack and needs time quadratic in the length of
an attribute, subscript, call or arithmetic chain: a 20 kB file holding ``a.b.b.b...`` (6,000
links) takes minutes and then kills the process with a stack overflow, and a data literal
costs about 2 kB of memory per token. Python code after the parse (the model, the rules,
positions) recurses once per tree level. So before parsing, one pass over the tokens (the C
tokenizer: about 6 % of the parse's cost; :mod:`tokenize` where that is not available)
measures

* how deep the tree will be: brackets, indentation and ``elif`` chains, plus, inside one
  expression segment, every operator, attribute dot, call/subscript trailer and implicitly
  joined string (each adds a tree level in libcst); commas start a new segment, so a flat
  data list is wide, not deep. At most :data:`MAX_DEPTH`;
* the part of that depth the parser is quadratic in (attribute dots, trailers, arithmetic and
  bitwise operators, ``lambda``): at most :data:`MAX_CHAIN`. Joined strings, ``and``/``or``
  chains and ``elif`` branches parse in linear time, so CPython's own ``pydoc_data/topics.py``
  (2,205 joined strings) is analyzed;
* how many tokens the file has (the parser's memory).

Over a limit, or with brackets nested over :data:`MAX_BRACKETS` (Python's own limit), the file
cannot be analyzed: :class:`TooComplex` says where. A file with more tokens than the size cap
allows is skipped like a file over the size cap. Every file that passes is analyzed in a thread
with a deep stack (:mod:`trainlint.budget`), so its tree walks finish.
"""

from __future__ import annotations

import io
import sys
import tokenize
from collections.abc import Iterator
from typing import Any

#: Estimated tree depth (see the module docstring) above which a file is not parsed.
MAX_DEPTH = 3000
#: The part of the depth the native parser is quadratic in: a 1,000-link chain takes it about
#: a second (2,000 subscripts: five).
MAX_CHAIN = 1000
#: Brackets nested deeper than this are a syntax error for Python itself.
MAX_BRACKETS = 200
#: Tokens per byte of the size cap: the default 1 MB cap allows 250,000 tokens (~700 MB
#: parsed). Real code has 5-8 bytes per token; a ``[1,1,1,...]`` literal has 2.
TOKENS_PER_CAP_BYTE = 0.25

#: Tree levels a bracket and an indented block add (Call -> Arg, IndentedBlock -> statement).
_BRACKET_COST = 2
_BLOCK_COST = 2

_OPENING = frozenset("([{")
_CLOSING = frozenset(")]}")
#: Operators that nest one tree level each, and the part of them the parser is quadratic in.
_SLOW_OPERATORS = frozenset(
    ["+", "-", "*", "/", "//", "%", "@", "**", "<<", ">>", "&", "|", "^", "~", ".", ":="]
)
_CHEAP_OPERATORS = frozenset(["<", ">", "==", "!=", "<=", ">=", "->"])
_SLOW_WORDS = frozenset({"lambda", "await"})
_CHEAP_WORDS = frozenset({"and", "or", "not", "if", "for", "yield"})
_CONTINUING = frozenset({"elif", "else", "except", "finally"})
_KEYWORDS = frozenset(
    [
        "False",
        "None",
        "True",
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "class",
        "continue",
        "def",
        "del",
        "elif",
        "else",
        "except",
        "finally",
        "for",
        "from",
        "global",
        "if",
        "import",
        "in",
        "is",
        "lambda",
        "nonlocal",
        "not",
        "or",
        "pass",
        "raise",
        "return",
        "try",
        "while",
        "with",
        "yield",
    ]
)
_STRING_ENDS = frozenset(
    t for t in (tokenize.STRING, getattr(tokenize, "FSTRING_END", None)) if t is not None
)


#: How every :class:`TooComplex` message starts.
PREFIXES = (
    "expression too long",
    "expression too deeply nested",
    "code nested too deeply",
    "brackets nested too deeply",
)


class TooComplex(Exception):
    """The file is too deep to parse safely; ``line`` is where the limit was passed."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class TooManyTokens(Exception):
    """The file has more tokens than the size cap allows (``count`` is a lower bound)."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} tokens > {limit}")
        self.count = count
        self.limit = limit


def token_limit(max_file_size: int) -> int:
    """Tokens allowed for a size cap (0: no cap, no limit)."""
    return int(max_file_size * TOKENS_PER_CAP_BYTE) if max_file_size else 0


def check(text: str, max_tokens: int = 0) -> None:
    """Raise :class:`TooComplex` or :class:`TooManyTokens` when ``text`` must not be parsed.

    Text that :mod:`tokenize` rejects is measured up to the error: the parser reports the
    error itself, and whatever came before it has been measured.
    """
    try:
        fast = _c_tokens(text)
        if fast is not None:
            _measure(fast, max_tokens)
            return
    # also brackets over 200 deep, and a NUL the C tokenizer refuses: measured the slow way
    except (SyntaxError, ValueError):
        pass
    try:
        _measure(_python_tokens(text), max_tokens)
    except (tokenize.TokenError, SyntaxError, ValueError):  # IndentationError too
        return


def _python_tokens(text: str) -> Iterator[tuple[int, str, int]]:
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        yield token.type, token.string, token.start[0]


#: Python 3.11's C tokenizer (six times faster than :mod:`tokenize`, which uses it itself
#: from 3.12 on) yields exact operator types: every type but these is an operator.
_PLAIN_KINDS = frozenset(
    {
        tokenize.NAME,
        tokenize.NUMBER,
        tokenize.STRING,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
)


class _CTokens:
    """The C tokenizer's tokens, ``(string, exact type, line, ...)``: :func:`_measure` reads
    them with every operator type made ``OP`` itself (a generator doing it cost a third of
    the measure)."""

    __slots__ = ("tokens",)

    def __init__(self, tokens: Iterator[tuple[Any, ...]]) -> None:
        self.tokens = tokens


def _c_tokens(text: str) -> _CTokens | None:
    """Tokens from 3.11's C tokenizer (a private API: None elsewhere or when it changed).
    It raises SyntaxError where :mod:`tokenize` would go on (brackets over 200 deep)."""
    if sys.version_info[:2] != (3, 11):
        return None
    try:
        import _tokenize  # type: ignore[import-not-found]

        return _CTokens(_tokenize.TokenizerIter(text))
    except (ImportError, AttributeError, TypeError):
        return None


def _measure(  # noqa: C901
    tokens: Iterator[tuple[int, str, int]] | _CTokens, max_tokens: int
) -> None:
    """``tokens``: ``(type, string, line)``, or the C tokenizer's."""
    # Per open bracket (and the statement at the bottom): tree levels in the current segment,
    # and how many of them the parser is quadratic in.
    frames, slows = [0], [0]
    levels = [0]  # per indentation level: elif branches so far in the current if statement
    expr = 0  # sum(frames) + _BRACKET_COST per open bracket
    chain = 0  # sum(slows)
    block = 0  # sum(levels) + _BLOCK_COST per indented block
    line_start = True
    prev_type, prev = tokenize.NEWLINE, ""
    count = 0
    op = tokenize.OP
    c_tokens = isinstance(tokens, _CTokens)
    for token in tokens.tokens if isinstance(tokens, _CTokens) else tokens:
        if c_tokens:
            value, kind, line = token[0], token[1], token[2]
            if kind not in _PLAIN_KINDS:
                kind = op
        else:
            kind, value, line = token
        count += 1
        if max_tokens and count > max_tokens:
            raise TooManyTokens(count, max_tokens)
        if kind in (tokenize.NL, tokenize.COMMENT):
            continue
        if kind == tokenize.NEWLINE:
            frames, slows, expr, chain, line_start = [0], [0], 0, 0, True
            prev_type, prev = kind, value
            continue
        if kind == tokenize.INDENT:
            levels.append(0)
            block += _BLOCK_COST
            continue
        if kind == tokenize.DEDENT:
            if len(levels) > 1:
                block -= _BLOCK_COST + levels.pop()
            continue
        if line_start:
            line_start = False
            if value == "elif" and kind == tokenize.NAME:
                levels[-1] += 1
                block += 1
            elif value not in _CONTINUING:
                block -= levels[-1]
                levels[-1] = 0
        step = slow = 0  # levels this token adds, and whether the parser is slow in them
        if kind == tokenize.OP:
            if value in _OPENING:
                if _ends_operand(prev_type, prev):  # a call or subscript trailer wraps the chain
                    step = slow = 1
                frames[-1] += step
                slows[-1] += slow
                expr += step + _BRACKET_COST
                chain += slow
                frames.append(0)
                slows.append(0)
                if len(frames) - 1 > MAX_BRACKETS:
                    raise TooComplex(
                        f"brackets nested too deeply to analyze (more than {MAX_BRACKETS} "
                        "levels, Python's own limit)",
                        line,
                    )
                step = 1  # checked below
            elif value in _CLOSING:
                if len(frames) > 1:
                    expr -= frames.pop() + _BRACKET_COST
                    chain -= slows.pop()
            elif value == ",":
                expr -= frames[-1]
                chain -= slows[-1]
                frames[-1] = slows[-1] = 0
            elif value == ";":
                frames, slows, expr, chain = [0], [0], 0, 0
            elif value in _SLOW_OPERATORS:
                step = slow = 1
            elif value in _CHEAP_OPERATORS:
                step = 1
        elif kind == tokenize.NAME:
            if value in _SLOW_WORDS:
                step = slow = 1
            elif value in _CHEAP_WORDS:
                step = 1
            elif value == "elif":
                step = 1  # checked below (added to block above)
        elif kind in _STRING_ENDS and prev_type in _STRING_ENDS:
            step = 1  # implicitly joined strings nest one level per string
        if step and value not in _OPENING and value != "elif":
            frames[-1] += step
            slows[-1] += slow
            expr += step
            chain += slow
        if step:
            if chain > MAX_CHAIN:
                raise TooComplex(
                    f"expression too long to analyze: a chain of over {MAX_CHAIN} operators, "
                    "attributes, calls or subscripts",
                    line,
                )
            if expr + block > MAX_DEPTH:
                raise TooComplex(_depth_message(expr, block), line)
        prev_type, prev = kind, value


def _ends_operand(kind: int, value: str) -> bool:
    if kind == tokenize.NAME:
        return value not in _KEYWORDS or value in ("None", "True", "False")
    return kind in _STRING_ENDS or kind == tokenize.NUMBER or value in _CLOSING


def _depth_message(expr: int, block: int) -> str:
    if expr >= block:
        what = "expression too deeply nested to analyze"
    else:
        what = "code nested too deeply to analyze (blocks and elif branches)"
    return f"{what}: over {MAX_DEPTH} levels"
