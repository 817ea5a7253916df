"""Block-level slicing on a corpus: what is kept, and whether the findings stay the same.

    python bench/slicing.py DIR [--every N] [--compare]

Prints how many files pass the word prefilter, how many of those are sliced, and how many of
their top-level blocks and lines are kept (every rule selected, cross-file summaries on, as
``trainlint check`` runs). With ``--compare`` it also runs ``trainlint check --no-cache
--format json`` on the same files with ``--slicing`` and ``--no-slicing`` and prints every
difference (exit 1 when there is one).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from trainlint import slicing
from trainlint.catalog import load_catalog
from trainlint.engine import FileAnalyzer, RunOptions, _resolved
from trainlint.sources import SourceFile


def files_of(root: Path, every: int) -> list[Path]:
    return sorted(root.rglob("*.py"))[::every]


def stats(files: list[Path]) -> dict[str, int]:
    analyzer = FileAnalyzer(RunOptions(codes=tuple(load_catalog().rules)))
    totals = dict.fromkeys(("files", "parsed", "sliced", "blocks", "kept_blocks"), 0)
    totals.update(lines=0, kept_lines=0)
    for path in files:
        totals["files"] += 1
        prepared = analyzer.prepare(path, str(path))
        if not isinstance(prepared, SourceFile):
            continue
        rules = analyzer.wanted(prepared.text)
        totals["parsed"] += 1
        lines = prepared.text.count("\n") + 1
        found = _slice(analyzer, prepared.text, path, rules)
        totals["lines"] += lines
        if found is None:
            totals["kept_lines"] += lines
            continue
        totals["sliced"] += 1
        totals["blocks"] += found.blocks
        totals["kept_blocks"] += found.kept_blocks
        totals["kept_lines"] += found.kept_lines + (lines - found.lines)
    return totals


def _slice(analyzer: FileAnalyzer, text: str, path: Path, rules: list) -> slicing.Sliced | None:
    compiled = []
    for rule in rules:
        if rule.uses_suppressions:
            continue
        if rule.block_triggers is None:
            return None
        compiled.append(slicing.compile_triggers(rule.block_triggers))
    resolved = _resolved(path)
    project = analyzer.project

    def in_project(target: str) -> bool:
        return project is not None and project.resolve(resolved, target) is not None

    return slicing.slice_text(text, compiled, in_project)


def report(targets: list[Path], *extra: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "trainlint", "check", "--no-cache", "--format", "json"]
        + ["--exit-zero", *extra, *map(str, targets)],
        capture_output=True,
        text=True,
        check=False,
    )
    data = json.loads(out.stdout)
    return sorted(
        data["findings"] + [{"error": e} for e in data.get("errors", [])],
        key=lambda f: json.dumps(f, sort_keys=True),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    files = files_of(args.root, args.every)
    totals = stats(files)
    print(json.dumps(totals))
    if totals["lines"]:
        print(
            f"{totals['parsed']} of {totals['files']} files parsed, {totals['sliced']} sliced; "
            f"blocks kept in sliced files {totals['kept_blocks']}/{totals['blocks']}; "
            f"lines kept {totals['kept_lines']}/{totals['lines']} "
            f"({100 * totals['kept_lines'] / totals['lines']:.0f}%)"
        )
    if not args.compare:
        return 0
    targets = [args.root] if args.every == 1 else files
    sliced, whole = report(targets, "--slicing"), report(targets, "--no-slicing")
    a = {json.dumps(f, sort_keys=True) for f in sliced}
    b = {json.dumps(f, sort_keys=True) for f in whole}
    for item in sorted(b - a):
        print("only without slicing:", item)
    for item in sorted(a - b):
        print("only with slicing:   ", item)
    print(f"findings: {len(sliced)} with slicing, {len(whole)} without; differ: {len(a ^ b)}")
    return 1 if a ^ b else 0


if __name__ == "__main__":
    sys.exit(main())
