"""A small synthetic run for the reporter tests: findings of every severity, a file that could
not be analyzed, a clean file, a skipped one and a path that discovery could not read."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlint.engine import FileResult
from trainlint.report import Summary, get_reporter
from trainlint.rule import Finding, Rule, Severity

_DOC = """A sample rule for the reporter tests.

    ## What it does
    Flags the sample pattern.

    ## Why is this bad?
    Because the sample says so.

    ## Example
    ```python
    optimizer.zero_grad
    ```
    """


class _SampleRule(Rule):
    frameworks = ("torch",)

    def check(self, model):  # type: ignore[no-untyped-def]  # never run by these tests
        return ()


class SampleError(_SampleRule):
    __doc__ = _DOC
    code = "TST101"
    name = "sample-error"
    severity = Severity.ERROR


class SampleWarning(_SampleRule):
    __doc__ = _DOC
    code = "TST202"
    name = "sample-warning"
    severity = Severity.WARNING
    frameworks = ("torch", "tf")


class SampleInfo(_SampleRule):
    __doc__ = _DOC
    code = "TST303"
    name = "sample-info"
    severity = Severity.INFO


class SampleUnused(_SampleRule):
    """Never reported here: rule metadata still lists it."""

    code = "TST404"
    name = "sample-unused"


REGISTRY: dict[str, type[Rule]] = {
    r.code: r for r in (SampleError, SampleWarning, SampleInfo, SampleUnused)
}

SOURCE = (
    "import torch\n"
    "for batch in loader:\n"
    "\toptimizer.zero_grad\n"
    "    loss = model.forward(batch)  # \u6f22\u5b57\n"
)
TRICKY_MESSAGE = "50% of `x`, see: y\r\nsecond line"


def finding(code: str, line: int, column: int, end_column: int, **kw: Any) -> Finding:
    rule = REGISTRY[code]
    values: dict[str, Any] = {
        "path": "pkg/train.py",
        "line": line,
        "column": column,
        "end_line": line,
        "end_column": end_column,
        "code": code,
        "name": rule.name,
        "severity": rule.severity,
        "message": f"{rule.name} found",
        "fix": None,
    }
    values.update(kw)
    return Finding(**values)


FINDINGS = [
    finding("TST303", 1, 1, 13, message="imports torch"),
    finding("TST101", 3, 2, 21, fix="add the call parentheses: optimizer.zero_grad()"),
    finding("TST202", 4, 12, 32, message=TRICKY_MESSAGE, fix="call the module: model(batch)"),
]


@dataclass
class SampleRun:
    results: list[FileResult]
    discovery_errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        summary = Summary()
        for result in self.results:
            summary.add(result)
        return summary


def sample_run(root: Path) -> SampleRun:
    """Writes the files under ``root`` (the text reporter reads source lines back)."""
    (root / "pkg").mkdir(parents=True, exist_ok=True)
    train = root / "pkg" / "train.py"
    train.write_text(SOURCE, "utf-8")
    broken = root / "pkg" / "broken.py"
    broken.write_text("def f(:\n", "utf-8")
    clean = root / "pkg" / "clean.py"
    clean.write_text("x = 1\n", "utf-8")
    return SampleRun(
        results=[
            FileResult(train, "pkg/train.py", findings=list(FINDINGS), parsed=True),
            FileResult(
                broken,
                "pkg/broken.py",
                error="syntax error: unexpected token ':'",
                error_line=1,
                parsed=True,
            ),
            FileResult(clean, "pkg/clean.py", parsed=True),
            FileResult(root / "huge.py", "huge.py", skipped="skipped: too large (2000 kB)"),
        ],
        discovery_errors=[("missing.py", "no such file or directory")],
    )


def clean_run(root: Path) -> SampleRun:
    (root / "ok.py").write_text("x = 1\n", "utf-8")
    return SampleRun(results=[FileResult(root / "ok.py", "ok.py", parsed=True)])


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def render(
    fmt: str,
    run: SampleRun,
    stream: io.StringIO | None = None,
    registry: dict[str, type[Rule]] | None = None,
    **options: Any,
) -> str:
    """Feed ``run`` to the ``fmt`` reporter the way the CLI does; return what it wrote."""
    stream = stream if stream is not None else io.StringIO()
    reporter = get_reporter(fmt)(stream, registry or REGISTRY, **options)
    for path, reason in run.discovery_errors:
        reporter.on_discovery_error(path, reason)
    for result in run.results:
        reporter.on_file(result)
    reporter.finish(run.summary)
    return stream.getvalue()
