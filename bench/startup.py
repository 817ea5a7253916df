"""Start-up: trainlint's short commands beside a bare interpreter start, in one run.

    python bench/startup.py [--rounds N] [--trainlint [LABEL=]CMD ...] [--importtime]

Measured, each as a separate process, interleaved round by round (so that a shared machine's
load falls on all of them alike): ``python -c pass``; ``trainlint --version``; ``--help``;
``rules``; a cached check of one training file, plain and as the pre-commit hook runs it
(``--quiet --jobs 1 --force-exclude``); and a cold check of that file (``--no-cache``). Every
figure is the median of the rounds, wall clock and CPU (user + system, from ``os.wait4``), with
its ratio to ``python -c pass``; the targets of issue 13 are judged on both. Several
``--trainlint`` commands (``before=/path/to/old/venv/bin/trainlint``) are measured in the same
rounds, side by side.

``--importtime`` adds ``python -X importtime`` of the cached check: the modules it imports,
the slowest ones, and whether libcst, the model, a rule module or rich was among them (a run
where every file is cached must import none of them).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAINING_FILE = """\
import torch
from torch import nn


def train(model: nn.Module, loader, epochs: int = 3) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step
"""

#: Modules a run where every file is cached must not import (prefixes).
HEAVY = ("libcst", "trainlint.model", "trainlint_rules", "rich")

#: (label, largest ratio to `python -c pass` allowed) per measured command.
TARGETS = {"--version": 5.0, "--help": 5.0, "cached check": 8.0, "pre-commit (cached)": 8.0}


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, exit status) of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def commands(trainlint: list[str]) -> dict[str, list[str]]:
    check = [*trainlint, "check", "train.py"]
    return {
        "--version": [*trainlint, "--version"],
        "--help": [*trainlint, "--help"],
        "rules": [*trainlint, "rules"],
        "cached check": check,
        "pre-commit (cached)": [*check, "--quiet", "--jobs", "1", "--force-exclude"],
        "cold check": [*check, "--no-cache"],
    }


def measure(named: dict[str, list[str]], cwd: Path, rounds: int) -> dict[str, list[tuple]]:
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in named}
    names = list(named)
    for round_ in range(rounds):
        shift = round_ % len(names)  # rotate the order: no command always runs first
        for name in names[shift:] + names[:shift]:
            runs[name].append(timed(named[name], cwd))
    return runs


def importtime(command: list[str], cwd: Path) -> tuple[list[tuple[int, int, str]], set[str]]:
    """(self µs, cumulative µs, module) of every import, and the modules' names."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        rows.append((int(own), int(total), name.strip()))
    return rows, {name for _, _, name in rows}


PROBE = """\
import sys
out = sys.argv.pop(1)
try:
    from trainlint.cli import main
    main()
finally:
    with open(out, "w") as handle:
        handle.write("\\n".join(sorted(sys.modules)))
"""


def modules_at_exit(trainlint: list[str], args: list[str], cwd: Path) -> set[str] | None:
    """``sys.modules`` when ``trainlint ARGS`` exits (run by the Python beside the console
    script); None when there is no such Python. More reliable than -X importtime's names."""
    python = Path(trainlint[0]).with_name("python")
    if len(trainlint) != 1 or not python.exists():
        return None
    probe, out = cwd / "probe.py", cwd / "modules.txt"
    probe.write_text(PROBE)
    subprocess.run([str(python), str(probe), str(out), *args], cwd=cwd, capture_output=True)
    return set(out.read_text().split()) if out.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command")
    parser.add_argument(
        "--trainlint",
        action="append",
        help="[LABEL=]command that runs trainlint; repeatable (default: the console script "
        "next to this Python)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for `python -c pass`")
    parser.add_argument("--importtime", action="store_true", help="add -X importtime output")
    parser.add_argument("--top", type=int, default=15, help="slowest imports to list")
    args = parser.parse_args(argv)
    given = args.trainlint or [str(Path(sys.executable).with_name("trainlint"))]
    tools = {}
    for number, item in enumerate(given):
        label, _, command = item.rpartition("=") if "=" in item.split()[0] else ("", "", item)
        tools[label or (f"#{number + 1}" if len(given) > 1 else "trainlint")] = shlex.split(command)

    named: dict[str, list[str]] = {"python -c pass": [args.python, "-c", "pass"]}
    for label, trainlint in tools.items():
        for name, command in commands(trainlint).items():
            named[f"{label}: {name}" if len(tools) > 1 else name] = command
    with tempfile.TemporaryDirectory(prefix="trainlint-startup-") as temp:
        project = Path(temp)
        (project / "train.py").write_text(TRAINING_FILE)
        (project / "pyproject.toml").write_text("[tool.trainlint]\n")
        for name, command in named.items():
            if name.endswith(("cached check", "pre-commit (cached)", "rules")):
                timed(command, project)  # fill the results cache and the rule catalog
        load_before = os.getloadavg()
        runs = measure(named, project, args.rounds)
        load_after = os.getloadavg()
        imports = {}
        if args.importtime:
            for label, trainlint in tools.items():
                rows, names = importtime([*trainlint, "check", "train.py"], project)
                at_exit = modules_at_exit(trainlint, ["check", "train.py"], project)
                imports[label] = (rows, at_exit if at_exit is not None else names)

    statuses = {name: {r[2] for r in rs} for name, rs in runs.items()}
    base_wall = statistics.median(r[0] for r in runs["python -c pass"])
    base_cpu = statistics.median(r[1] for r in runs["python -c pass"])
    for label, trainlint in tools.items():
        print(f"{label}: {shlex.join(trainlint)}")
    print(
        f"{args.rounds} rounds, {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (medians of the rounds)\n"
    )
    print("| command | wall ms | ÷ pass | cpu ms | ÷ pass | exit |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    verdicts = []
    for name, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        exits = ",".join(str(s) for s in sorted(statuses[name]))
        print(
            f"| {name} | {wall * 1000:.1f} | {wall / base_wall:.2f} | {cpu * 1000:.1f} |"
            f" {cpu / base_cpu:.2f} | {exits} |"
        )
        target = name.rpartition(": ")[2]
        if target in TARGETS:
            limit = TARGETS[target]
            met = "met" if wall / base_wall <= limit else "NOT met"
            verdicts.append(
                f"  [{met}] {name} ≤ {limit:g}× python -c pass: {wall / base_wall:.2f}× wall, "
                f"{cpu / base_cpu:.2f}× cpu"
            )
    print("\ntargets:")
    print("\n".join(verdicts))
    for label, (rows, names) in imports.items():
        heavy = {p: sorted(n for n in names if n == p or n.startswith(p + ".")) for p in HEAVY}
        total = sum(own for own, _, _ in rows)
        print(
            f"\n{label}: -X importtime of the cached check: {len(rows)} modules, "
            f"{total / 1000:.1f} ms"
        )
        for prefix, found in heavy.items():
            told = f"imported ({len(found)} modules)" if found else "no"
            print(f"  {prefix}: {told}")
        print(f"  slowest {args.top} by self time:")
        for own, cumulative, name in sorted(rows, reverse=True)[: args.top]:
            print(f"    {own / 1000:7.2f} ms self {cumulative / 1000:7.2f} ms cumulative  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
