"""What cross-file summaries cost: cold runs with and without them, on the same files.

    python bench/crossfile.py DIR [DIR ...] [--rounds N] [--trainlint CMD] [--save DIR]

Each round runs ``trainlint check DIR... --no-cache --jobs 1`` twice, once with
``--no-summaries`` and once without, alternating which goes first (so a burst of load on the
shared machine hits both sides alike). Every run is a separate process; its CPU time (user +
system of it and its children, from ``os.wait4``) is what is compared, since CPU time is what
load barely moves. Prints each round, the medians, the overhead of summaries in percent
against the target (at most +15 %), and whether the two sides report the same findings
(summaries may add findings; the script says how many and where).

``--save DIR`` writes the reports (``on.json``, ``off.json``) of the last round, so that two
versions of trainlint can be checked for identical findings (``diff`` of the two ``on.json``).

``--callgrind`` runs each side once under ``valgrind --tool=callgrind`` instead and compares
instruction counts (``I refs``, every thread, start-up included): deterministic, so a loaded
machine moves it no more than a few hundredths of a percent (CPU seconds move by +-20 %).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_PERCENT = 15.0


def run(command: list[str]) -> tuple[float, float, dict]:
    """Run one check; return (CPU seconds, wall seconds, the JSON report)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        full = [*command, "-o", str(report)]
        start = time.perf_counter()
        with open(os.devnull, "wb") as devnull:
            process = subprocess.Popen(full, stdout=devnull, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
            code = os.waitstatus_to_exitcode(status)
            errors = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
        if code not in (0, 1, 2):
            raise SystemExit(f"{shlex.join(full)} exited {code}:\n{errors[-2000:]}")
        data = json.loads(report.read_text())
    return usage.ru_utime + usage.ru_stime, wall, data


def instructions(command: list[str]) -> tuple[int, dict]:
    """Run one check under callgrind; return (instructions executed, the JSON report)."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        counts = Path(scratch) / "callgrind.out"
        full = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={counts}", *command]
        done = subprocess.run([*full, "-o", str(report)], capture_output=True, text=True)
        if done.returncode not in (0, 1, 2):
            raise SystemExit(f"{shlex.join(full)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if found is None:
            raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
        return int(found.group(1).replace(",", "")), json.loads(report.read_text())


def callgrind(sides: dict[str, list[str]]) -> dict[str, dict]:
    counts, reports = {}, {}
    for side in ("off", "on"):
        counts[side], reports[side] = instructions(sides[side])
        load = os.getloadavg()[0]
        print(f"{side}: {counts[side] / 1e9:.3f} G instructions; load {load:.1f}", flush=True)
    overhead = 100.0 * (counts["on"] - counts["off"]) / counts["off"]
    verdict = "met" if overhead <= TARGET_PERCENT else "not met"
    print(f"[{verdict}] summaries cost {overhead:+.1f} % instructions (target ≤ +15 %)")
    return reports


def findings(report: dict) -> list[tuple[str, int, str, str]]:
    return sorted(
        (f.get("path", ""), int(f.get("line", 0)), f.get("code", ""), f.get("message", ""))
        for f in report.get("findings", [])
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trainlint", default=f"{sys.executable} -m trainlint")
    parser.add_argument("--save", type=Path, help="write the last round's reports here")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    args = parser.parse_args()

    base = [*shlex.split(args.trainlint), "check", *map(str, args.directories)]
    base += ["--no-cache", "--jobs", "1", "--exit-zero", "-q", "--format", "json"]
    sides = {"off": [*base, "--no-summaries"], "on": base}
    if args.callgrind:
        compare(callgrind(sides), args.save)
        return 0
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    wall: dict[str, list[float]] = {"off": [], "on": []}
    reports: dict[str, dict] = {}
    for number in range(args.rounds):
        order = ("off", "on") if number % 2 == 0 else ("on", "off")
        line = []
        for side in order:
            seconds, elapsed, reports[side] = run(sides[side])
            cpu[side].append(seconds)
            wall[side].append(elapsed)
            line.append(f"{side} {seconds:6.2f} s cpu ({elapsed:5.2f} s wall)")
        load = os.getloadavg()[0]
        print(f"round {number + 1}: " + ", ".join(line) + f"; load {load:.1f}", flush=True)

    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    overhead = 100.0 * (on - off) / off
    ratios = [100.0 * (b - a) / a for a, b in zip(cpu["off"], cpu["on"], strict=True)]
    files = len(reports["on"].get("files", [])) or reports["on"].get("summary", {}).get("files")
    print(f"\nfiles: {files if files else '?'} ({', '.join(map(str, args.directories))})")
    print(
        f"median cpu: off {off:.2f} s, on {on:.2f} s; wall off "
        f"{statistics.median(wall['off']):.2f} s, on {statistics.median(wall['on']):.2f} s"
    )
    print(f"per-round overhead: {', '.join(f'{r:+.1f} %' for r in ratios)}")
    verdict = "met" if overhead <= TARGET_PERCENT else "not met"
    print(f"[{verdict}] summaries cost {overhead:+.1f} % cpu (target ≤ +{TARGET_PERCENT:.0f} %)")

    compare(reports, args.save)
    return 0


def compare(reports: dict[str, dict], save: Path | None) -> None:
    only_on = sorted(set(findings(reports["on"])) - set(findings(reports["off"])))
    only_off = sorted(set(findings(reports["off"])) - set(findings(reports["on"])))
    print(
        f"findings: off {len(findings(reports['off']))}, on {len(findings(reports['on']))}; "
        f"only with summaries {len(only_on)}, only without {len(only_off)}"
    )
    for path, line_no, code, _ in only_on:
        print(f"  + {path}:{line_no} {code}")
    for path, line_no, code, _ in only_off:
        print(f"  - {path}:{line_no} {code}")
    if save:
        save.mkdir(parents=True, exist_ok=True)
        for side, report in reports.items():
            (save / f"{side}.json").write_text(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    raise SystemExit(main())
