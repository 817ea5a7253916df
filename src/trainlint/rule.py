"""The rule API shared by built-in rules and third-party rule packs.

A rule pack is any importable object registered under the ``trainlint.rules`` entry point:
a module or package (every :class:`Rule` subclass defined in it, and in its submodules, is
collected), a single :class:`Rule` subclass, or an iterable of them.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    import libcst as cst

    from trainlint.model import TrainingModel
    from trainlint.suppressions import SuppressionReport

ENTRY_POINT_GROUP = "trainlint.rules"
CODE_PATTERN = re.compile(r"^[A-Z]{1,4}[0-9]{3}$")


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (choose from {choices})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Applicability(enum.Enum):
    """How far an automatic fix can be trusted (ruff's model).

    ``SAFE`` fixes keep the program's meaning except for the bug (``--fix`` applies them);
    ``UNSAFE`` ones may change behaviour beyond it (only with ``--unsafe-fixes``); a ``DISPLAY``
    fix is advice, never applied.
    """

    SAFE = "safe"
    UNSAFE = "unsafe"
    DISPLAY = "display"


@dataclass(frozen=True)
class Edit:
    """Replace the source of ``node`` with ``replacement`` (code text, or a new libcst node)."""

    node: cst.CSTNode
    replacement: str | cst.CSTNode


@dataclass(frozen=True)
class Span:
    """A region of the source: 1-based lines, 1-based columns, the end column exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class TextEdit:
    """A located edit, as the cache, reporters and ``--fix`` see it."""

    span: Span
    content: str

    def to_dict(self) -> dict[str, Any]:
        span = self.span
        return {
            "start": {"line": span.line, "column": span.column},
            "end": {"line": span.end_line, "column": span.end_column},
            "content": self.content,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextEdit:
        start, end, content = data["start"], data["end"], data["content"]
        numbers = (start["line"], start["column"], end["line"], end["column"])
        if not all(type(n) is int and n >= 1 for n in numbers) or not isinstance(content, str):
            raise ValueError("malformed edit")
        return cls(Span(*numbers), content)


@dataclass(frozen=True)
class Fix:
    """How to fix a finding: a sentence, optionally the code to write instead, and the edits
    that make the change (with how far they can be trusted)."""

    description: str
    replacement: str | None = None
    edits: tuple[Edit | TextEdit, ...] = ()
    applicability: Applicability = Applicability.DISPLAY

    def render(self) -> str:
        if self.replacement:
            return f"{self.description}: {self.replacement}"
        return self.description


@dataclass(frozen=True)
class Violation:
    """What a rule reports: the anchor node, the message and the fix (positions come later)."""

    node: cst.CSTNode | Span  # a Span for what has no node (a comment, for TL001)
    message: str
    fix: Fix | None = None
    severity: Severity | None = None  # overrides the rule's default (e.g. TL201 under no_grad)


@dataclass(frozen=True, order=True)
class Finding:
    """A located, rendered violation, as reporters and the cache see it."""

    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    name: str = field(compare=False)
    severity: Severity = field(compare=False)
    message: str = field(compare=False)
    fix: str | None = field(compare=False, default=None)
    #: ``safe`` / ``unsafe`` when the fix carries edits, else None.
    applicability: str | None = field(compare=False, default=None)
    edits: tuple[TextEdit, ...] = field(compare=False, default=())
    #: What the baseline and SARIF ``partialFingerprints`` match on (see trainlint.baseline).
    fingerprint: str = field(compare=False, default="")

    @property
    def span(self) -> Span:
        return Span(self.line, self.column, self.end_line, self.end_column)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.label,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "message": self.message,
            "fix": self.fix,
            "fix_applicability": self.applicability,
            "fix_edits": [edit.to_dict() for edit in self.edits],
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            path=data["path"],
            line=data["line"],
            column=data["column"],
            end_line=data["end_line"],
            end_column=data["end_column"],
            code=data["code"],
            name=data["name"],
            severity=Severity.parse(data["severity"]),
            message=data["message"],
            fix=data.get("fix"),
            applicability=data.get("fix_applicability"),
            edits=tuple(TextEdit.from_dict(e) for e in data.get("fix_edits") or ()),
            fingerprint=data.get("fingerprint") or "",
        )


class Rule:
    """Base class of every rule.

    Subclasses set the class attributes below and implement :meth:`check`. The class docstring
    is the rule's documentation, written in Markdown with the sections ``## What it does``,
    ``## Why is this bad?``, ``## Example`` and ``## Use instead``; ``trainlint explain`` shows it.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity] = Severity.WARNING
    frameworks: ClassVar[tuple[str, ...]] = ("torch",)
    #: The file is analyzed for this rule only if its text contains one of these words.
    #: An empty tuple means "always run".
    triggers: ClassVar[tuple[str, ...]] = ()
    #: Block-level slicing (:mod:`trainlint.slicing`): a finding of this rule lies in, or is
    #: connected through same-file names to, a top-level block holding one of these words (or
    #: matching one of the ``re:`` patterns, e.g. :data:`trainlint.slicing.LOOP`). Blocks no
    #: selected rule cares about are blanked before parsing. None: the rule needs the whole file.
    block_triggers: ClassVar[tuple[str, ...] | None] = None
    summary: ClassVar[str] = ""
    #: Whether findings come with an automatic fix: "always", "sometimes" or "never" ...
    fix_availability: ClassVar[str] = "never"
    #: ... and how far it can be trusted when they do.
    fix_applicability: ClassVar[Applicability] = Applicability.DISPLAY

    #: True for rules about the suppressions themselves (TL001): the engine calls
    #: :meth:`check_suppressions` after every other rule of the file has reported.
    uses_suppressions: ClassVar[bool] = False

    def check(self, model: TrainingModel) -> Iterable[Violation]:
        raise NotImplementedError

    def check_suppressions(self, report: SuppressionReport) -> Iterable[Violation]:
        return ()

    @classmethod
    def documentation(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")  # the first line has no indent

    @classmethod
    def one_line(cls) -> str:
        if cls.summary:
            return cls.summary
        doc = cls.documentation()
        for line in doc.splitlines():
            if line.strip() and not line.startswith("#"):
                return line.strip()
        return cls.name


class RegistryError(Exception):
    """A rule pack could not be loaded or declares a bad rule."""


def _rules_in_module(module: ModuleType) -> Iterator[type[Rule]]:
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if issubclass(obj, Rule) and obj is not Rule and obj.__module__ == module.__name__:
            yield obj
    if hasattr(module, "__path__"):
        for info in pkgutil.iter_modules(module.__path__, module.__name__ + "."):
            yield from _rules_in_module(importlib.import_module(info.name))


def rules_from_object(obj: object) -> list[type[Rule]]:
    """The rules a registered object provides (module, rule class, or iterable of classes)."""
    if isinstance(obj, ModuleType):
        return list(_rules_in_module(obj))
    if inspect.isclass(obj) and issubclass(obj, Rule):
        return [obj]
    if isinstance(obj, Iterable):
        found = list(obj)
        if all(inspect.isclass(r) and issubclass(r, Rule) for r in found):
            return found
    raise RegistryError(f"{obj!r} is not a rule, a list of rules or a module of rules")


def _validate(rule: type[Rule], origin: str) -> None:
    for attribute in ("code", "name"):
        if not isinstance(getattr(rule, attribute, None), str):
            raise RegistryError(f"{origin}: rule {rule.__name__} has no {attribute}")
    if not CODE_PATTERN.match(rule.code):
        raise RegistryError(f"{origin}: rule code {rule.code!r} is not like TL101")
    if not isinstance(rule.severity, Severity):
        raise RegistryError(f"{origin}: rule {rule.code} has a bad severity")
    if rule.fix_availability not in ("always", "sometimes", "never"):
        raise RegistryError(
            f"{origin}: rule {rule.code}: fix_availability must be always, sometimes or never"
        )


def entry_points(*, group: str) -> Iterable[EntryPoint]:
    """The installed entry points of ``group`` (importlib.metadata is imported only here: it
    costs more than the rest of a cached run's start-up)."""
    from importlib.metadata import entry_points as installed

    return installed(group=group)


def load_registry(extra: Iterable[object] = ()) -> dict[str, type[Rule]]:
    """Every registered rule by code, sorted by code. ``extra`` adds packs without entry points."""
    registry: dict[str, type[Rule]] = {}
    sources: list[tuple[str, object]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            sources.append((f"entry point {ep.name!r} ({ep.value})", ep.load()))
        except Exception as exc:  # a broken third-party pack must not take the tool down
            raise RegistryError(f"cannot load rule pack {ep.name!r} ({ep.value}): {exc}") from exc
    sources.extend((repr(obj), obj) for obj in extra)
    for origin, obj in sources:
        try:
            rules = rules_from_object(obj)
        except RegistryError:
            raise
        except Exception as exc:  # e.g. a submodule of the pack that fails to import
            raise RegistryError(f"{origin}: cannot load its rules: {exc}") from exc
        for rule in rules:
            _validate(rule, origin)
            known = registry.get(rule.code)
            if known is not None and known is not rule:
                raise RegistryError(
                    f"{origin}: rule code {rule.code} is already used by {known.__module__}"
                )
            registry[rule.code] = rule
    return dict(sorted(registry.items()))
