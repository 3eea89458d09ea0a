"""Mean width of certified output bounds, interval vs CROWN vs alpha-CROWN, over whole suites.

Usage:
    python benchmarks/bound_widths.py [--suite acasxu|mnist_fc|all] [--limit N] [--alpha-iterations 40]

For every instance of the suite (first input region of its spec), each method bounds every
output; the table gives, per group (ACAS Xu: property; MNIST fc: network), the mean over the
instances of the mean output width, and the mean time per instance. Groups print as they
finish; the last lines are the table in markdown.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib

ROOT = Path(__file__).resolve().parent
METHODS = ("ibp", "crown", "alpha")


def _group(suite: str, onnx_rel: str, vnnlib_rel: str) -> str:
    if suite == "acasxu":
        return Path(vnnlib_rel).stem
    return Path(onnx_rel).stem


def widths(tgraph: TorchGraph, lower: torch.Tensor, upper: torch.Tensor,
           alpha: AlphaConfig) -> dict[str, tuple[float, float]]:
    """Method -> (mean output width, seconds) over one box."""
    shape = tgraph.graph.inputs[0].shape
    box = [lower.reshape(1, *shape)], [upper.reshape(1, *shape)]
    m = tgraph.graph.output_size
    eye = torch.eye(m, dtype=torch.float64)
    out: dict[str, tuple[float, float]] = {}
    start = time.perf_counter()
    lo, hi = interval_bounds(tgraph, lower.reshape(1, -1), upper.reshape(1, -1))
    out["ibp"] = (float((hi - lo).mean()), time.perf_counter() - start)
    start = time.perf_counter()
    with torch.no_grad():
        lo, hi = Crown(tgraph, *box).output_bounds()
    out["crown"] = (float((hi - lo).mean()), time.perf_counter() - start)
    start = time.perf_counter()
    both = alpha_lower_bound(Crown(tgraph, *box), torch.cat([eye, -eye]), alpha)
    out["alpha"] = (float((-both[:, m:] - both[:, :m]).mean()), time.perf_counter() - start)
    return out


def run_suite(suite: str, limit: int | None,
              alpha: AlphaConfig) -> list[tuple[str, int, dict[str, tuple[float, float]]]]:
    """Rows (group, instances, method -> (mean width, mean seconds))."""
    folder = ROOT / suite
    with open(folder / "instances.csv") as handle:
        rows = [r for r in csv.reader(handle) if r]
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for onnx_rel, vnnlib_rel, *_ in rows:
        groups[_group(suite, onnx_rel, vnnlib_rel)].append((onnx_rel, vnnlib_rel))
    table = []
    graphs: dict[str, TorchGraph] = {}
    for group in sorted(groups):
        results: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for onnx_rel, vnnlib_rel in groups[group][:limit]:
            if onnx_rel not in graphs:
                graphs[onnx_rel] = TorchGraph(load_model(folder / onnx_rel), "cpu", torch.float64)
            tgraph = graphs[onnx_rel]
            region = parse_vnnlib(folder / vnnlib_rel).regions[0]
            lower, upper = proof_box(tgraph.graph, region, torch.device("cpu"))
            for method, value in widths(tgraph, lower, upper, alpha).items():
                results[method].append(value)
        summary = {m: (statistics.mean(w for w, _ in v), statistics.mean(t for _, t in v)) for m, v in results.items()}
        count = len(results["ibp"])
        print(f"{suite} {group}: n={count} "
              + " ".join(f"{m} {w:.4g} ({t * 1000:.0f} ms)" for m, (w, t) in summary.items()),
              flush=True)
        table.append((group, count, summary))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="all", choices=["acasxu", "mnist_fc", "all"])
    parser.add_argument("--limit", type=int, default=None, help="instances per group at most")
    parser.add_argument("--alpha-iterations", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    alpha = AlphaConfig(iterations=args.alpha_iterations)
    suites = ["acasxu", "mnist_fc"] if args.suite == "all" else [args.suite]
    tables = {suite: run_suite(suite, args.limit, alpha) for suite in suites}
    print(f"\ntorch threads {torch.get_num_threads()}; mean output width (mean time per instance)\n")
    print("| suite | group | n | interval | CROWN | alpha-CROWN |")
    print("|---|---|---|---|---|---|")
    for suite, table in tables.items():
        for group, count, summary in table:
            cells = " | ".join(f"{summary[m][0]:.4g} ({summary[m][1] * 1000:.0f} ms)" for m in METHODS)
            print(f"| {suite} | {group} | {count} | {cells} |")


if __name__ == "__main__":
    main()
