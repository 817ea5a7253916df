"""Placeholder until the reporter lands."""

from trainlint.report import Reporter


class SarifReporter(Reporter):
    pass
