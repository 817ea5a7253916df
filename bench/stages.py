"""Where the time goes: each stage of the per-file pipeline, summed over a directory.

    python bench/stages.py DIRECTORY [--top 10] [--every N] [--no-summaries]

One process, every registered rule selected, no cache, cross-file summaries on (as a default
run; ``--no-summaries`` analyzes each file on its own). Prints CPU seconds per stage
(read+decode, prefilter, parse, model, each rule, positions; CPU time, so other load on a shared
machine barely moves them) and the slowest files, so an optimization can be aimed at the stage
that costs. Summaries are built lazily, when a rule first asks about another module, so their
cost shows inside the rules: compare a run with and without ``--no-summaries``. ``--every N``
profiles every Nth file only (a fixed sample, the same in every run).
"""

from __future__ import annotations

import argparse
import functools
import gc
import time
from collections import Counter
from pathlib import Path

import libcst as cst

from trainlint import limits, sources
from trainlint.discovery import discover
from trainlint.engine import FileAnalyzer, RunOptions
from trainlint.model import TrainingModel
from trainlint.rule import load_registry


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--every", type=int, default=1, help="profile every Nth file only")
    parser.add_argument("--no-summaries", action="store_true", help="no cross-file summaries")
    args = parser.parse_args()
    registry = load_registry()
    options = RunOptions(
        codes=tuple(registry), summaries=not args.no_summaries, root=args.directory
    )
    analyzer = FileAnalyzer(options, registry)
    files = discover([args.directory], root=args.directory).files[:: max(1, args.every)]
    max_tokens = limits.token_limit(options.max_file_size)
    stages: Counter[str] = Counter()
    per_file: Counter[str] = Counter()
    parsed = skipped = with_findings = 0

    def timed(stage: str, path: Path, func, *a):  # type: ignore[no-untyped-def]
        start = time.process_time()
        value = func(*a)
        spent = time.process_time() - start
        stages[stage] += spent
        per_file[str(path)] += spent
        return value

    for path in files:
        try:
            source = timed("read+decode", path, sources.load, path)
        except (sources.SourceError, sources.SkippedFile):
            continue
        rules = timed("prefilter", path, analyzer.wanted, source.text)
        if not rules:
            skipped += 1
            continue
        parsed += 1
        # As the engine: the collector off for the whole file, the model released after it
        # (with the collector on, a rule is charged for collections of everything before it).
        gc.disable()
        try:
            timed("limits", path, limits.check, source.text, max_tokens)
            module = timed("parse", path, cst.parse_module, source.text)
        except (cst.ParserSyntaxError, limits.TooComplex, limits.TooManyTokens):
            gc.collect(0)
            gc.enable()
            continue
        project = analyzer.project
        if project is not None:  # as the engine: other files' summaries reuse this tree
            project.keep_tree(path.resolve(), source.text, module)
        gc.freeze()  # as the engine: the kept tree stays out of the file's last collection
        view = timed("project view", path, project.view, path) if project is not None else None
        build = functools.partial(TrainingModel, parsed_from_text=True)  # as the engine
        model = timed("model", path, build, module, path, source.text, view)
        found = False
        for rule in rules:
            try:
                found |= bool(
                    timed(f"rule {rule.code}", path, lambda r=rule, m=model: list(r.check(m)))
                )
            except Exception:  # a rule bug is reported elsewhere; here it only costs its time
                continue
        if found:
            with_findings += 1
            timed("positions", path, lambda m=model: m.positions)
        model.release()
        del module, model
        timed("gc", path, gc.collect, 0)  # as the engine, before the collector is back on
        gc.unfreeze()
        gc.enable()
    total = sum(stages.values())
    print(
        f"{len(files)} files: {parsed} parsed, {skipped} skipped by the prefilter, "
        f"{with_findings} with findings; {total:.2f} s in-process"
    )
    for stage, seconds in stages.most_common():
        print(f"  {stage:<14} {seconds:8.3f} s  {100 * seconds / total:5.1f} %")
    print("slowest files:")
    for path, seconds in per_file.most_common(args.top):
        print(f"  {seconds:7.3f} s  {Path(path).stat().st_size // 1000:6d} kB  {path}")


if __name__ == "__main__":
    main()
