"""trainlint: a static analyzer for machine-learning training loops."""

from trainlint.rule import Applicability, Edit, Finding, Fix, Rule, Severity, Span, TextEdit

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
