"""Text -> libcst module, or one line saying why not (never a crash, never a wrong accusation).

Before libcst's native parser sees the text, :func:`trainlint.limits.check` rejects what would
overflow its stack, take minutes or exhaust memory. When libcst rejects text that Python itself
accepts (libcst's grammar lags behind, or a form feed in an indented block), the file is not
called a syntax error: "cannot analyze: the parser does not support this".
"""

from __future__ import annotations

import re
import traceback
from collections import Counter

import libcst as cst

from trainlint import budget, limits, sources


class Unparsable(Exception):
    """The text cannot be analyzed; ``message`` says why in one line, ``line`` where."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


#: Errors that depend only on the text (and trainlint's version): safe to cache.
DETERMINISTIC_PREFIXES = ("syntax error", "cannot analyze:", *limits.PREFIXES)

_AT = re.compile(r"\bat (\d+):(\d+)")
#: A form feed where an indented line starts: Python resets the column, libcst rejects it.
_FORM_FEED_INDENT = re.compile(r"^[ \t]*\x0c+[ \t]+\S", re.MULTILINE)


def parse(text: str, max_tokens: int = 0, instead: str | None = None) -> cst.Module:
    """Raises :class:`Unparsable`, or :class:`trainlint.limits.TooManyTokens` (a skip).

    ``instead``: a sliced copy of ``text`` (:mod:`trainlint.slicing`, the same lines) to parse
    once ``text`` passed the limits. When libcst rejects it, ``text`` itself is parsed, so an
    error is always the whole file's."""
    try:
        limits.check(text, max_tokens)
    except limits.TooComplex as exc:
        raise Unparsable(exc.message, exc.line) from None
    if instead is not None:
        try:
            with budget.native():
                return cst.parse_module(instead)
        except (cst.ParserSyntaxError, cst.CSTValidationError, RecursionError):
            pass
    try:
        with budget.native():  # a time budget or Ctrl-C must not land in the parser's callbacks
            return cst.parse_module(text)
    except cst.ParserSyntaxError as exc:
        python = sources.python_syntax_error(text)
        if python is not None:
            raise Unparsable(f"syntax error: {python[1]}", python[0]) from None
        at = _AT.search(exc.message)
        line = int(at.group(1)) if at else None
        what = ""
        if line is None:
            feed = _FORM_FEED_INDENT.search(text)
            if feed:
                line, what = text.count("\n", 0, feed.start()) + 1, "a form feed in the indentation"
        where = f" ({what + ', ' if what else ''}line {line})" if line else ""
        raise Unparsable(
            f"cannot analyze: the parser does not support this{where}, though Python accepts it",
            line,
        ) from None
    except cst.CSTValidationError as exc:  # parsed, but e.g. a name Python rejects
        line, message = sources.python_syntax_error(text) or (None, str(exc))
        raise Unparsable(f"syntax error: {message}", line) from None
    except RecursionError as exc:
        raise Unparsable(f"cannot analyze: {recursion_reason(exc)}") from None
    except MemoryError:
        raise Unparsable("not enough memory to parse it") from None


def recursion_reason(exc: RecursionError) -> str:
    """A true reason for a RecursionError: the function that recursed, from the traceback."""
    counts = Counter(
        (frame.f_code.co_name, frame.f_code.co_filename)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )
    if not counts:
        return "code nested too deeply"
    (name, filename), _ = counts.most_common(1)[0]
    module = filename.replace("\\", "/").rsplit("/", 2)[-2:]
    return f"code nested too deeply (recursion in {name}, {'/'.join(module)})"
