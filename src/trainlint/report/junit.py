"""JUnit XML, for CI systems that show test reports (GitLab, Jenkins, Azure, test-report actions).

One ``<testsuite name="trainlint">`` inside ``<testsuites>``; one ``<testcase>`` per finding
(``classname`` = the path, ``name`` = the code, rule and position), as ruff and pylint emit:
JUnit consumers read only the first ``<failure>`` of a test case, so findings must not share
one. A file that could not be analyzed is a test case with an ``<error>``, a file skipped on
purpose (too large) one with ``<skipped>``. A run with no finding, error or skip emits one
passing test case, so the report is never an empty suite.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from trainlint.report import Reporter, Summary
from trainlint.rule import Finding

if TYPE_CHECKING:
    from trainlint.engine import FileResult

SUITE_NAME = "trainlint"
CASE_NAME = "trainlint"

# Characters XML 1.0 cannot carry at all, even escaped (control characters, lone surrogates).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def failure_text(finding: Finding) -> str:
    lines = [
        f"{finding.path}:{finding.line}:{finding.column}: {finding.code} "
        f"[{finding.severity.label}] {finding.message}",
        f"rule: {finding.name}",
        f"span: line {finding.line} column {finding.column} to line {finding.end_line} "
        f"column {finding.end_column}",
    ]
    if finding.fix:
        lines.append(f"fix: {finding.fix}")
    return "\n".join(xml_text(line) for line in lines)


class JunitReporter(Reporter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # JUnit's timestamp is an ISO date-time without a zone offset; trainlint writes UTC.
        self.started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        self.cases: list[ET.Element] = []
        self.failed_cases = 0
        self.error_cases = 0
        self.skipped_cases = 0

    def _case(self, path: str, name: str = CASE_NAME) -> ET.Element:
        case = ET.Element("testcase", {"classname": xml_text(path), "name": xml_text(name)})
        case.set("file", xml_text(path))
        self.cases.append(case)
        return case

    def on_file(self, result: FileResult) -> None:
        for finding in result.findings:
            name = f"{finding.code} {finding.name} at line {finding.line}, column {finding.column}"
            case = self._case(result.display, name)
            case.set("line", str(finding.line))
            failure = ET.SubElement(
                case,
                "failure",
                {"message": xml_text(finding.message), "type": finding.code},
            )
            failure.text = failure_text(finding)
            self.failed_cases += 1
        if result.error:
            self._error(self._case(result.display), result.display, result.error, result.error_line)
        elif result.skipped:
            case = self._case(result.display)
            ET.SubElement(case, "skipped", {"message": xml_text(result.skipped)})
            self.skipped_cases += 1

    def on_discovery_error(self, path: str, reason: str) -> None:
        self._error(self._case(path), path, reason, None)

    def _error(self, case: ET.Element, path: str, reason: str, line: int | None) -> None:
        where = f"{path}:{line}" if line else path
        error = ET.SubElement(case, "error", {"message": xml_text(reason), "type": "not-analyzed"})
        error.text = xml_text(f"{where}: could not be analyzed: {reason}")
        self.error_cases += 1

    def document(self, summary: Summary) -> ET.ElementTree:
        if not self.cases:
            self._case(SUITE_NAME, f"{summary.files} files checked: no findings")
        counts = {
            "tests": str(len(self.cases)),
            "failures": str(self.failed_cases),
            "errors": str(self.error_cases),
            "skipped": str(self.skipped_cases),
            "time": f"{summary.elapsed:.3f}",
        }
        root = ET.Element("testsuites", {"name": SUITE_NAME, **counts})
        suite = ET.SubElement(
            root,
            "testsuite",
            {"name": SUITE_NAME, **counts, "timestamp": self.started},
        )
        suite.extend(self.cases)
        ET.indent(root)
        return ET.ElementTree(root)

    def finish(self, summary: Summary) -> None:
        tree = self.document(summary)
        self.stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        tree.write(self.stream, encoding="unicode", xml_declaration=False)
        self.stream.write("\n")
