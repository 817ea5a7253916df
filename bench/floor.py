"""What the bench measures in-process: the libcst floor and the prefilter.

Run as a child of ``bench.py`` (``python bench/floor.py MODE LIST_FILE [JOBS]``) so that its
wall time includes interpreter start-up and imports exactly as a trainlint run does, and its
peak memory is measured on its own. Prints one JSON object on stdout.

Files over trainlint's default size cap (1 MB) are left out of the floor as trainlint leaves
them out of its runs ("skipped: too large"), so both sides parse the same files.

Modes:
  parse     ``libcst.parse_module`` on every file;
  visit     parse + a trivial visitor (counts calls) -- the floor of any libcst linter;
  prefilter read every file, then run trainlint's prefilter with every rule selected, and
            count the files it would skip vs parse (nothing is parsed).
"""

from __future__ import annotations

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import libcst as cst


class _CallCounter(cst.CSTVisitor):
    def __init__(self) -> None:
        self.calls = 0

    def visit_Call(self, node: cst.Call) -> None:
        self.calls += 1


def _parse_one(job: tuple[str, bool]) -> int:
    """Parse (and visit) one file; -1 when libcst cannot parse it."""
    path, visit = job
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
        module = cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError, ValueError):
        return -1
    if visit:
        counter = _CallCounter()
        module.visit(counter)
        return counter.calls
    return 0


def floor(paths: list[str], visit: bool, jobs: int) -> dict[str, object]:
    jobs_list = [(p, visit) for p in paths]
    if jobs <= 1:
        outcomes = [_parse_one(job) for job in jobs_list]
    else:
        with Pool(jobs) as pool:
            outcomes = pool.map(_parse_one, jobs_list, chunksize=max(1, len(paths) // (jobs * 16)))
    return {"files": len(paths), "unparsable": sum(o < 0 for o in outcomes)}


def prefilter(paths: list[str]) -> dict[str, object]:
    """Read cost, prefilter cost and the skip count with every registered rule selected."""
    from trainlint.engine import FileAnalyzer, RunOptions
    from trainlint.rule import load_registry

    registry = load_registry()
    analyzer = FileAnalyzer(RunOptions(codes=tuple(registry)), registry)
    start = time.perf_counter()
    texts = [Path(p).read_bytes().decode("utf-8", errors="replace") for p in paths]
    read_seconds = time.perf_counter() - start
    start = time.perf_counter()
    wanted = [bool(analyzer.wanted(text)) for text in texts]
    filter_seconds = time.perf_counter() - start
    always = [r.code for r in analyzer.rules if not r.triggers]
    skipped_bytes = sum(len(t) for t, w in zip(texts, wanted, strict=True) if not w)
    return {
        "files": len(paths),
        "rules": len(analyzer.rules),
        "rules_without_triggers": always,
        "parsed": sum(wanted),
        "skipped": len(paths) - sum(wanted),
        "skipped_bytes": skipped_bytes,
        "read_seconds": read_seconds,
        "prefilter_seconds": filter_seconds,
    }


SIZE_CAP = 1_000_000  # trainlint's default max-file-size


def main(argv: list[str]) -> None:
    mode, list_file = argv[0], argv[1]
    jobs = int(argv[2]) if len(argv) > 2 else 1
    paths = Path(list_file).read_text("utf-8").splitlines()
    if mode == "prefilter":
        result = prefilter(paths)
    else:
        capped = [p for p in paths if Path(p).stat().st_size <= SIZE_CAP]
        result = floor(capped, visit=mode == "visit", jobs=jobs)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
