"""Benchmark trainlint against its own floor and its peers on one directory.

    python bench/bench.py DIRECTORY [--peers-venv VENV] [--repeat N]
    python bench/bench.py --generate 1000 [--peers-venv VENV]

Every measured run is a separate process, timed by wall clock; its peak memory is the largest
resident set of the process and the children it waited for (``os.wait4``). Prints a table
(wall time, files/s, ms/file, peak memory, ratio to trainlint's cold run) and the issue's
targets with met / not met. See bench/README.md for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (bench/corpus.py, next to this file)


@dataclass
class Measure:
    name: str
    seconds: float  # wall clock, best of the repeats
    peak_mb: float  # largest resident set of the process or any child it waited for
    cpu: float = 0.0  # user + system seconds of the process and its children (same run)
    note: str = ""


def run_measured(
    command: list[str], cwd: Path | None = None, ok: tuple[int, ...] = (0, 1)
) -> tuple[float, float, int, str, float]:
    """Run ``command``; return (wall seconds, peak MB, exit status, stdout, CPU seconds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        if process.returncode not in ok:
            tail = err.read().decode("utf-8", "replace")[-2000:]
            print(f"  ! {command[:3]} exited {process.returncode}: {tail}", file=sys.stderr)
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, process.returncode, stdout, cpu


def best_of(name: str, command: list[str], repeat: int, note: str = "", ok=(0, 1)) -> Measure:
    runs = [run_measured(command, ok=ok) for _ in range(max(1, repeat))]
    best = min(runs, key=lambda r: r[0])
    print(f"  {name}: {best[0]:.2f} s (cpu {best[4]:.2f} s)", file=sys.stderr)
    return Measure(name, best[0], max(r[1] for r in runs), best[4], note)


def find_tool(name: str, given: str | None, venv: Path | None) -> str | None:
    if given:
        return given
    if venv is not None and (venv / "bin" / name).exists():
        return str(venv / "bin" / name)
    return shutil.which(name)


def discover(directory: Path) -> list[Path]:
    """The files trainlint itself would analyze there (same discovery, same excludes)."""
    from trainlint.discovery import discover as trainlint_discover

    return trainlint_discover([directory], root=directory).files


def sample(directory: Path, count: int, seed: int, out: Path) -> Path:
    """Copy ``count`` training files of ``directory`` (they call backward() or fit()) to
    ``out``, keeping their relative paths; the same choice for the same seed."""
    import random

    training = [
        p
        for p in sorted(discover(directory))
        if b".backward(" in (data := p.read_bytes()) or b".fit(" in data
    ]
    chosen = random.Random(seed).sample(training, min(count, len(training)))
    for path in chosen:
        target = out / path.relative_to(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return out


def count_lines(files: list[Path]) -> int:
    return sum(path.read_bytes().count(b"\n") for path in files)


def run_floor(mode: str, list_file: Path, jobs: int, repeat: int, name: str) -> Measure:
    command = [sys.executable, str(HERE / "floor.py"), mode, str(list_file), str(jobs)]
    runs = [run_measured(command) for _ in range(max(1, repeat))]
    best = min(runs, key=lambda r: r[0])
    result = json.loads(best[3] or "{}")
    note = f"{result['unparsable']} unparsable" if result.get("unparsable") else ""
    print(f"  {name}: {best[0]:.2f} s (cpu {best[4]:.2f} s)", file=sys.stderr)
    return Measure(name, best[0], max(r[1] for r in runs), best[4], note)


def trainlint_runs(
    trainlint: list[str], directory: Path, repeat: int, scratch: Path
) -> list[Measure]:
    """Cold, cache fill, warm and one-process runs. Exit 2 is fine here: it means some files
    of a real corpus could not be analyzed (Python 2 syntax...), reported as errors."""
    report = scratch / "report.json"
    base = [*trainlint, "check", str(directory), "--exit-zero", "-q", "--format", "json"]
    base += ["-o", str(report)]
    ok = (0, 1, 2)

    def outcome() -> str:
        data = json.loads(report.read_text())
        return f"{len(data['findings'])} findings, {len(data['errors'])} files not analyzable"

    cold = best_of("trainlint cold", [*base, "--no-cache"], repeat, "no cache, all jobs", ok)
    cold.note += f"; {outcome()}"
    cache = ["--cache-dir", str(scratch / "cache")]
    fill = best_of("trainlint cache fill", [*base, *cache], 1, "cold run writing the cache", ok)
    warm = best_of("trainlint warm", [*base, *cache], repeat, "cache on, nothing changed", ok)
    warm.note += f"; {outcome()}"
    one = best_of("trainlint --jobs 1", [*base, "--no-cache", "--jobs", "1"], repeat, "", ok)
    one.note = "no cache, one process"
    return [cold, fill, warm, one]


def peer_runs(args: argparse.Namespace, directory: Path, repeat: int) -> list[Measure]:
    found: list[Measure] = []
    venv = Path(args.peers_venv) if args.peers_venv else None
    ruff = find_tool("ruff", args.ruff, venv)
    if ruff:
        command = [ruff, "check", "--select", "ALL", "--no-cache", "--exit-zero", "-q"]
        command += ["--extend-exclude", "*.ipynb", str(directory)]
        found.append(best_of("ruff --select ALL", command, repeat, "cold (--no-cache)"))
    torchfix = find_tool("torchfix", args.torchfix, venv)
    if torchfix and not args.skip_slow_peers:
        command = [torchfix, "--select", "ALL", str(directory)]
        found.append(best_of("torchfix --select ALL", command, args.peer_repeat))
    fixit = find_tool("fixit", args.fixit, venv)
    if fixit and not args.skip_slow_peers:
        found.append(best_of("fixit lint", [fixit, "lint", str(directory)], args.peer_repeat))
    return found


_PEERS = ("ruff --select ALL", "torchfix --select ALL", "fixit lint")


def table(measures: list[Measure], files: int, cold: float) -> str:
    header = f"| {'run':<28} | {'wall s':>7} | {'files/s':>8} | {'ms/file':>7} | {'peak MB':>7} |"
    header += f" {'cpu s':>7} | {'÷ cold':>7} | note |"
    lines = [header, "|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|"]
    for m in measures:
        rate = files / m.seconds if m.seconds else 0.0
        lines.append(
            f"| {m.name:<28} | {m.seconds:7.2f} | {rate:8.1f} | {1000 * m.seconds / files:7.2f} |"
            f" {m.peak_mb:7.0f} | {m.cpu:7.2f} | {m.seconds / cold:7.2f} | {m.note} |"
        )
    return "\n".join(lines)


def verdicts(by_name: dict[str, Measure], prefilter: dict, files: int) -> list[str]:
    """The issue's targets, judged on wall time; CPU-time ratios shown beside them because a
    shared machine's load moves wall times but barely moves CPU seconds."""
    cold, warm = by_name["trainlint cold"], by_name["trainlint warm"]
    checks: list[tuple[str, Measure, Measure, float]] = []  # slow, fast, factor
    for peer, factor, label in (
        ("torchfix --select ALL", 10, "cold ≥ 10× faster than TorchFix"),
        ("fixit lint", 7, "cold ≥ 7× faster than Fixit"),
    ):
        if peer in by_name:
            checks.append((label, by_name[peer], cold, factor))
    floor = by_name.get("floor: parse+visit, 2 procs")
    if floor:
        checks.append(("cold ≤ 1.5× the parse+visit floor (2 procs)", floor, cold, 1 / 1.5))
    checks.append(("warm ≥ 10× faster than cold", cold, warm, 10))
    if "ruff --select ALL" in by_name:  # issue 13: whole repositories
        checks.append(
            ("cold ≤ 3× ruff --select ALL --no-cache", by_name["ruff --select ALL"], cold, 1 / 3)
        )
    if "ruff --select ALL" in by_name:
        checks.append(("warm faster than ruff's cold run", by_name["ruff --select ALL"], warm, 1))
    lines = []
    one, parse = by_name.get("trainlint --jobs 1"), by_name.get("floor: parse_module")
    if one and parse:  # issue 13, training code: judged on CPU (one process each)
        ratio = one.cpu / max(parse.cpu, 1e-9)
        lines.append(
            f"  [{'met' if ratio <= 1.6 else 'NOT met'}] --jobs 1 CPU ≤ 1.6× parse_module alone: "
            f"{ratio:.2f}× cpu, {one.seconds / parse.seconds:.2f}× wall"
        )
    for label, slow, fast, factor in checks:
        wall, cpu = slow.seconds / fast.seconds, slow.cpu / max(fast.cpu, 1e-9)
        verdict = "met" if wall >= factor else "NOT met"
        if factor < 1:  # a ceiling, not a speed-up: show it the way the target is written
            lines.append(
                f"  [{verdict}] {label}: {1 / wall:.2f}× wall, {1 / cpu:.2f}× cpu "
                f"(needs ≤ {1 / factor:.2f}×)"
            )
            continue
        lines.append(
            f"  [{verdict}] {label}: {wall:.2f}× wall, {cpu:.2f}× cpu (needs ≥ {factor:.2f}×)"
        )
    peak = max(m.peak_mb for m in by_name.values() if m.name.startswith("trainlint"))
    scope = "" if files >= 1000 else f" (only {files} files: the target is for 1000)"
    lines.append(
        f"  [{'met' if peak < 500 else 'NOT met'}] peak memory < 500 MB: {peak:.0f} MB{scope}"
    )
    read = prefilter["read_seconds"] * 1000 / max(1, files)
    filt = prefilter["prefilter_seconds"] * 1000 / max(1, files)
    lines.append(
        f"  prefilter: {prefilter['skipped']} of {files} files skipped, {prefilter['parsed']} "
        f"parsed ({prefilter['rules']} rules; without triggers: "
        f"{prefilter['rules_without_triggers'] or 'none'}); read {read:.3f} ms/file, "
        f"prefilter {filt:.3f} ms/file"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", type=Path, help="corpus to analyze")
    parser.add_argument("--generate", type=int, metavar="N", help="write N synthetic files first")
    parser.add_argument("--out", type=Path, help="where --generate writes (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="--generate's random seed")
    parser.add_argument("--peers-venv", help="virtualenv holding torchfix, fixit and ruff")
    parser.add_argument("--torchfix", help="torchfix executable")
    parser.add_argument("--fixit", help="fixit executable")
    parser.add_argument("--ruff", help="ruff executable")
    parser.add_argument("--no-peers", action="store_true", help="do not run peers")
    parser.add_argument(
        "--skip-slow-peers",
        action="store_true",
        help="run ruff but not torchfix/fixit (they take minutes on a real corpus)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per measure (best is kept)")
    parser.add_argument("--peer-repeat", type=int, default=1, help="runs of torchfix/fixit")
    parser.add_argument(
        "--trainlint",
        default=f"{sys.executable} -m trainlint",
        help="command that runs trainlint (default: this Python's module)",
    )
    parser.add_argument("--json", type=Path, help="also write the measures as JSON")
    parser.add_argument("--no-floors", action="store_true", help="skip the libcst floors")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="analyze only N of the directory's training files (those calling backward() or "
        "fit(); a fixed choice for a given --seed), copied to a scratch directory",
    )
    parser.add_argument(
        "--reuse-peers",
        type=Path,
        metavar="JSON",
        help="take the peers' measures from an earlier --json of the same corpus instead of "
        "running them again (TorchFix and Fixit take many minutes; trainlint is re-measured)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="trainlint-bench-") as temp:
        scratch = Path(temp)
        directory = args.directory
        if args.generate:
            directory = args.out or scratch / "corpus"
            corpus.generate(directory, args.generate, args.seed)
        if directory is None:
            parser.error("give a DIRECTORY or --generate N")
        directory = directory.resolve()
        if args.sample:
            directory = sample(directory, args.sample, args.seed, scratch / "sample")
        files = discover(directory)
        if not files:
            parser.error(f"no Python files under {directory}")
        list_file = scratch / "files.txt"
        list_file.write_text("\n".join(str(p) for p in files), "utf-8")
        size_mb = sum(p.stat().st_size for p in files) / 1e6
        lines = count_lines(files)
        print(f"{directory}: {len(files)} files, {lines} lines, {size_mb:.1f} MB", file=sys.stderr)
        load_start = os.getloadavg()[0]
        measures = trainlint_runs(args.trainlint.split(), directory, args.repeat, scratch)
        cpus = os.cpu_count() or 1
        if not args.no_floors:
            floor = "floor: parse_module"
            measures.append(run_floor("parse", list_file, 1, args.repeat, floor))
            measures.append(run_floor("visit", list_file, 1, args.repeat, "floor: parse+visit"))
            floor = f"floor: parse+visit, {cpus} procs"
            measures.append(run_floor("visit", list_file, cpus, args.repeat, floor))
        if args.reuse_peers:
            earlier = json.loads(args.reuse_peers.read_text())
            peers = [Measure(**m) for m in earlier["measures"] if m["name"] in _PEERS]
            for peer in peers:
                peer.note = (peer.note + "; " if peer.note else "") + "from --reuse-peers"
            measures += peers
        elif not args.no_peers:
            measures += peer_runs(args, directory, args.repeat)
        prefilter_cmd = [sys.executable, str(HERE / "floor.py"), "prefilter", str(list_file)]
        prefilter = json.loads(run_measured(prefilter_cmd)[3])

    by_name = {m.name: m for m in measures}
    if cpus != 2 and f"floor: parse+visit, {cpus} procs" in by_name:
        by_name["floor: parse+visit, 2 procs"] = by_name[f"floor: parse+visit, {cpus} procs"]
    print(
        f"\n{directory}: {len(files)} files, {lines} lines, {size_mb:.1f} MB, {cpus} CPUs, "
        f"load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n"
    )
    print(table(measures, len(files), by_name["trainlint cold"].seconds))
    print("\ntargets:")
    print("\n".join(verdicts(by_name, prefilter, len(files))))
    if args.json:
        data = {
            "directory": str(directory),
            "files": len(files),
            "lines": lines,
            "measures": [m.__dict__ for m in measures],
            "prefilter": prefilter,
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
