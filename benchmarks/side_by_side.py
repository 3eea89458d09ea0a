"""Every shared benchmark side by side: our verifier and peers on the same instances, at the same
time, one core and one thread each, whole-process wall times (``verify bench`` measures from
the launch of each instance's process to its exit).

    python benchmarks/side_by_side.py --out benchmarks/results/side_by_side.md \\
        [--root ../shared/benchmarks] [--benchmarks eran mnist_fc ...] [--sample 5] [--seed 0] \\
        [--timeout 30 | --cap 300] [--work /tmp/side_by_side] \\
        [--peer neuralsat='bash benchmarks/peers/neuralsat.sh {onnx} {vnnlib} {timeout} {result}']

Per benchmark folder of ``--root`` (VNN-COMP layout with ``instances.csv`` and
``expected.csv``) it takes ``--sample`` instances drawn with ``--seed`` (0: all of them) and
gives each its VNN-COMP timeout, capped at ``--cap`` seconds, or ``--timeout`` seconds for all.
The instances are written to ``--work`` (default beside ``--out``: ``<out>_instances/``; one
benchmark folder each, the files hard-linked or copied), and every tool runs there in its own ``verify bench --jobs 1
--threads 1`` process, all started together: with one peer, each tool has one of the two
cores. Results are kept beside ``--out`` (``<out>_<tool>.csv`` and ``.jsonl``), so an
interrupted run resumes where it stopped. The table gives, per benchmark and tool, the
instances solved (sat or unsat), the wrong answers (against ``expected.csv``), timeouts,
other answers (unknown, error) and the total time.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_instances(root: Path, names: list[str] | None, sample: int, seed: int, cap: float,
                    timeout: float | None, target: Path) -> list[str]:
    """Writes the chosen instances of each benchmark under ``target`` (see the module
    docstring); returns the benchmark names written."""
    written = []
    for folder in sorted(p for p in root.iterdir() if (p / "instances.csv").exists()):
        if names and folder.name not in names:
            continue
        rows = [r for r in csv.reader((folder / "instances.csv").open()) if len(r) >= 3]
        if sample and len(rows) > sample:
            rows = random.Random(f"{seed}:{folder.name}").sample(rows, sample)
        expected = {}
        if (folder / "expected.csv").exists():
            expected = {(r["onnx"].strip(), r["vnnlib"].strip()): r["expected"].strip()
                        for r in csv.DictReader((folder / "expected.csv").open())}
        out = target / folder.name
        out.mkdir(parents=True, exist_ok=True)
        with (out / "instances.csv").open("w", newline="") as inst, (out / "expected.csv").open("w", newline="") as exp:
            instances, answers = csv.writer(inst), csv.writer(exp)
            answers.writerow(["onnx", "vnnlib", "expected"])
            for onnx, vnnlib, seconds in ((r[0].strip(), r[1].strip(), float(r[2])) for r in rows):
                limit = timeout if timeout is not None else min(seconds, cap)
                for relative in (onnx, vnnlib):
                    _link(folder / relative, out / relative)
                instances.writerow([onnx, vnnlib, repr(limit)])
                answers.writerow([onnx, vnnlib, expected.get((onnx, vnnlib), "unknown")])
        written.append(folder.name)
    return written


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy across file systems)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def _bench(tool: str, tree: Path, results: Path) -> subprocess.Popen[bytes]:
    """Starts ``verify bench`` on ``tree`` for one tool (``verifier`` or ``NAME=TEMPLATE``)."""
    command = [sys.executable, "-m", "verifier.cli", "bench", str(tree), "--tool", tool, "--jobs", "1",
               "--threads", "1", "--results", str(results), "--quiet"]
    return subprocess.Popen(command, cwd=ROOT)


def summarise(path: Path) -> dict[str, dict[str, float]]:
    """Per benchmark: instances, solved, wrong, timeouts, other answers and total seconds."""
    table: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in csv.DictReader(path.open()):
        entry = table[row["benchmark"]]
        entry["instances"] += 1
        entry["solved"] += row["status"] in ("sat", "unsat")
        entry["wrong"] += row["correct"] == "no"
        entry["timeouts"] += row["status"] == "timeout"
        entry["other"] += row["status"] in ("unknown", "error")
        entry["seconds"] += float(row["time"])
    return table


def render(benchmarks: list[str], results: dict[str, dict[str, dict[str, float]]], header: list[str]) -> str:
    """The Markdown table: one row per benchmark and tool, then the totals per tool."""
    lines = [*header, "", "| benchmark | tool | instances | solved | wrong | timeouts | unknown/error | total s |",
             "|---|---|---|---|---|---|---|---|"]
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    keys = ("instances", "solved", "wrong", "timeouts", "other", "seconds")
    for bench in benchmarks:
        for tool, table in results.items():
            entry = table.get(bench)
            if entry is None:
                continue
            for key in keys:
                totals[tool][key] += entry[key]
            lines.append(f"| {bench} | {tool} | " + " | ".join(f"{entry[k]:.0f}" for k in keys[:-1])
                         + f" | {entry['seconds']:.1f} |")
    for tool, entry in totals.items():
        lines.append(f"| **all** | {tool} | " + " | ".join(f"{entry[k]:.0f}" for k in keys[:-1])
                     + f" | {entry['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the Markdown table to write")
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--benchmarks", nargs="*", help="benchmark folder names (default: all)")
    parser.add_argument("--sample", type=int, default=0, help="instances per benchmark (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cap", type=float, default=300.0, help="largest timeout in seconds")
    parser.add_argument("--timeout", type=float, help="this timeout for every instance instead")
    parser.add_argument("--work", type=Path, help="where the instance folders go (default <out>_instances)")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=TEMPLATE",
                        help="a peer as a verify bench --tool template (repeatable)")
    args = parser.parse_args()
    stem = args.out.with_suffix("")
    tree = args.work or Path(f"{stem}_instances")
    names = write_instances(args.root, args.benchmarks, args.sample, args.seed, args.cap, args.timeout, tree)
    tools = [("verifier", "verifier"), *((peer, peer.split("=", 1)[0]) for peer in args.peer)]
    start = time.monotonic()
    procs = [(name, path, _bench(tool, tree, path)) for tool, name in tools for path in [Path(f"{stem}_{name}.csv")]]
    for _, _, proc in procs:
        proc.wait()
    minutes = (time.monotonic() - start) / 60
    results = {name: summarise(path) for name, path, _ in procs if path.exists()}
    command = "python benchmarks/side_by_side.py " + " ".join(f"'{a}'" if " " in a else a for a in sys.argv[1:])
    limit = f"{args.timeout:g} s for every instance" if args.timeout else f"VNN-COMP timeouts capped at {args.cap:g} s"
    header = ["# Side by side on the shared benchmarks", "",
              f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, Python "
              f"{platform.python_version()}; one core and one thread per tool, {limit}, "
              f"{'all instances' if not args.sample else f'{args.sample} per benchmark (seed {args.seed})'}, "
              "whole-process wall times.", f"Command: `{command}` ({minutes:.1f} min)."]
    text = render(names, results, header)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
