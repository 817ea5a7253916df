"""trainlint: a static analyzer for machine-learning training loops.

The public API (``from trainlint import Rule, Severity, ...``) is loaded on first use, so that
``trainlint --version`` and a cached run import no more than they need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Applicability",
    "Edit",
    "Finding",
    "Fix",
    "Rule",
    "Severity",
    "Span",
    "TextEdit",
    "__version__",
]

if TYPE_CHECKING:
    from trainlint.rule import Applicability, Edit, Finding, Fix, Rule, Severity, Span, TextEdit


def __getattr__(name: str) -> Any:
    if name in __all__:
        from trainlint import rule

        return getattr(rule, name)
    raise AttributeError(f"module 'trainlint' has no attribute {name!r}")
