"""ACAS Xu side by side: our verifier and a peer on all 186 instances, at the same time, one
core and one thread each, with a 60 s cap, whole-process wall times (from the launch of each
instance's process to its exit, as ``verify bench`` measures them).

    python benchmarks/acasxu_side_by_side.py --out benchmarks/results/acasxu_side_by_side.md \
        [--peer neuralsat='bash benchmarks/peers/neuralsat.sh {onnx} {vnnlib} {timeout} {result}'] \
        [--cold] [--filter REGEX]

Each tool runs in its own ``verify bench --jobs 1 --threads 1`` process, both started together,
so the two share the machine's two cores as equals. Our verifier runs through its warm worker
(``verify bench``'s default: the worker imports everything once and forks a process per
instance; the time still runs from the launch of the instance's client process to its exit);
``--cold`` starts a fresh interpreter per instance instead. The table adds the nnenum figures
recorded in issue 22 (another run on this machine: nnenum is not on PyPI). Results CSVs are
kept beside ``--out`` (``*_<tool>.csv``), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACAS = ROOT / "benchmarks" / "acasxu"
CAP = 60.0
NNENUM = {"tool": "nnenum (recorded, issue 22)", "solved": 183, "wrong": 0, "timeouts": "2 (+1 unknown)",
          "total": 735.0, "median": 1.23}


def _bench(tool: str, results: Path, cold: bool, pattern: str | None) -> subprocess.Popen[bytes]:
    """Starts ``verify bench`` on ACAS Xu for one tool (``verifier`` or ``NAME=TEMPLATE``)."""
    timeout = max(float(row[2]) for row in csv.reader((ACAS / "instances.csv").open()))
    command = [sys.executable, "-m", "verifier.cli", "bench", str(ACAS), "--tool", tool, "--jobs", "1",
               "--threads", "1", "--timeout-scale", repr(CAP / timeout), "--results", str(results), "--quiet"]
    command += ["--cold"] if cold else []
    command += ["--filter", pattern] if pattern else []
    return subprocess.Popen(command, cwd=ROOT)


def _summary(name: str, path: Path) -> dict[str, object]:
    rows = list(csv.DictReader(path.open()))
    times = [float(r["time"]) for r in rows]
    by_prop: dict[str, float] = {}
    for r in rows:
        group = "prop_1-2" if r["vnnlib"].split("/")[-1] in ("prop_1.vnnlib", "prop_2.vnnlib") else (
            "prop_3-4" if r["vnnlib"].split("/")[-1] in ("prop_3.vnnlib", "prop_4.vnnlib") else "prop_5-10")
        by_prop[group] = by_prop.get(group, 0.0) + float(r["time"])
    return {"tool": name, "instances": len(rows), "solved": sum(r["status"] in ("sat", "unsat") for r in rows),
            "wrong": sum(r["correct"] == "no" for r in rows), "timeouts": sum(r["status"] == "timeout" for r in rows),
            "other": sum(r["status"] in ("unknown", "error") for r in rows), "total": round(sum(times), 1),
            "median": round(statistics.median(times), 2) if times else 0.0, "by_prop": by_prop}


def _table(summaries: list[dict[str, object]], command: str, seconds: float) -> str:
    lines = ["# ACAS Xu side by side", "",
             f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}; one core and one thread per tool, {CAP:g} s cap, "
             "whole-process wall times.", f"Command: `{command}` ({seconds / 60:.1f} min).", "",
             "| tool | instances | solved | wrong | timeouts | unknown/error | total s | median s "
             "| prop 1-2 s | prop 3-4 s | prop 5-10 s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        by = s.get("by_prop", {})
        assert isinstance(by, dict)
        lines.append(f"| {s['tool']} | {s.get('instances', 186)} | {s['solved']} | {s['wrong']} | {s['timeouts']} "
                     f"| {s.get('other', '')} | {s['total']} | {s['median']} | "
                     + " | ".join(f"{by[k]:.1f}" if k in by else "" for k in ("prop_1-2", "prop_3-4", "prop_5-10"))
                     + " |")
    lines += ["", "nnenum's row is the figure recorded in issue 22 (its VNN-COMP settings, another run on "
              "this machine); the other rows come from this run."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the Markdown table to write")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=TEMPLATE",
                        help="a peer as a verify bench --tool template (repeatable)")
    parser.add_argument("--cold", action="store_true", help="our verifier as a fresh process per instance")
    parser.add_argument("--filter", default=None, help="only instances matching this regex (trial runs)")
    args = parser.parse_args()
    stem = args.out.with_suffix("")
    tools = [("verifier", "verifier-cold" if args.cold else "verifier")]
    tools += [(peer, peer.split("=", 1)[0]) for peer in args.peer]
    start = time.monotonic()
    procs = [(name, path, _bench(tool, path, args.cold, args.filter))
             for tool, name in tools for path in [Path(f"{stem}_{name}.csv")]]
    for _, _, proc in procs:
        proc.wait()
    seconds = time.monotonic() - start
    summaries = [_summary(name, path) for name, path, _ in procs if path.exists()]
    command = "python benchmarks/acasxu_side_by_side.py " + " ".join(
        f"'{a}'" if " " in a else a for a in sys.argv[1:])
    text = _table([*summaries, NNENUM], command, seconds)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
