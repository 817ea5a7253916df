"""trainlint: a static analyzer for machine-learning training loops."""

from trainlint.rule import Finding, Fix, Rule, Severity

__version__ = "0.1.0"

__all__ = ["Finding", "Fix", "Rule", "Severity", "__version__"]
