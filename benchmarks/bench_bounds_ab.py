"""Before/after timing of the bound passes of two checkouts, interleaved to cancel machine drift.

Usage:
    git worktree add /tmp/before <commit>
    python benchmarks/bench_bounds_ab.py /tmp/before . [--rounds 8] [--repeats 5] [--alpha]

Each round runs one child process per checkout (alternating which goes first); a child imports
that checkout's ``verifier`` (``PYTHONPATH``), and for each network of ``bench_bounds.CASES``
(except the CIFAR one, whose alpha pass alone takes a minute) times the median of ``--repeats``
CROWN passes (all intermediate bounds, the first clause's rows and the output bounds) and, with
``--alpha``, one alpha-CROWN call on the first clause's rows. The table gives, per network and
method, the median over the rounds of each checkout and the ratio after/before, with the spread
(the smallest and largest per-round ratio). The mean output widths must agree (printed if not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CHILD = r"""
import json, statistics, sys, time, torch
from pathlib import Path
try:
    from verifier.graph.loader import load_model
    from verifier.graph.torch_graph import TorchGraph
except ImportError:  # checkouts before the graph package's split
    from verifier.graph import TorchGraph, load_model
from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.deadline import Deadline
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib
cases, repeats, alpha = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
out = {}
for name, path, spec in cases:
    graph = load_model(path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    region = parse_vnnlib(spec).regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    c = torch.as_tensor(region.clauses[0].C)
    def crown():
        analysis = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
        analysis.lower_bound(c)
        return analysis.output_bounds()
    with torch.no_grad():
        crown()
        times = []
        for _ in range(repeats):
            start = time.perf_counter(); lo, hi = crown(); times.append(time.perf_counter() - start)
    out[name + " crown"] = (statistics.median(times), float((hi - lo).mean()))
    if alpha:
        analysis = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
        start = time.perf_counter()
        rows = alpha_lower_bound(analysis, c, deadline=Deadline.after(60.0))
        out[name + " alpha"] = (time.perf_counter() - start, float(rows.mean()))
print(json.dumps(out))
"""


def _cases() -> list[tuple[str, str, str]]:
    sys.path.insert(0, str(ROOT))
    from bench_bounds import CASES  # the same networks and properties as bench_bounds.py

    return [(Path(onnx).stem[:40], str(ROOT / folder / onnx), str(ROOT / folder / spec))
            for folder, onnx, spec in CASES if "cifar" not in onnx]


def _child(checkout: Path, cases: list[tuple[str, str, str]], repeats: int, alpha: bool) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases), str(repeats), "1" if alpha else "0"],
                          env=env, cwd=checkout, capture_output=True, text=True, check=True)
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--alpha", action="store_true")
    args = parser.parse_args()
    cases = _cases()
    runs: dict[str, list[dict[str, list[float]]]] = {"before": [], "after": []}
    for number in range(args.rounds):
        order = ("before", "after") if number % 2 == 0 else ("after", "before")
        for which in order:
            runs[which].append(_child(getattr(args, which), cases, args.repeats, args.alpha))
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'network and method':48s} {'before (ms)':>12s} {'after (ms)':>12s} {'ratio':>7s} {'spread':>13s}")
    for key in runs["before"][0]:
        before = [r[key][0] * 1000 for r in runs["before"]]
        after = [r[key][0] * 1000 for r in runs["after"]]
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        b_med, a_med = statistics.median(before), statistics.median(after)
        print(f"{key:48s} {b_med:12.1f} {a_med:12.1f} {a_med / b_med:7.2f} {min(ratios):6.2f}-{max(ratios):.2f}")
        widths = {r[key][1] for r in runs["before"] + runs["after"]}
        if len(widths) > 1:
            print(f"    widths differ: {sorted(widths)}")


if __name__ == "__main__":
    main()
