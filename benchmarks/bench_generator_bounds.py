"""Output bounds of the 5-input generator network (``benchmarks/generator``) per bound method and
refinement budget: time and width, beside the range sampled with onnxruntime.

    python benchmarks/bench_generator_bounds.py [--spec generator_narrow] [--budgets 2 8 30] [--full] [--dense]
        [--out benchmarks/results/generator_bounds.md] [--device cpu|cuda] [--threads 1]

Rows: interval bounds; forward-mode forms (``intermediate_method="forward"``); the pipeline's
hybrid CROWN with ``refine_seconds`` = each budget (the backward refinement of the most unstable
neurons within it; the rest keep their forms' bounds). ``--threads`` torch threads (default one), this process only. The
sampled range (20,000 uniform points of the box through onnxruntime) is a lower estimate of
the true range: a certified bound must contain it. With ``--device cuda`` the bounds are computed
on the GPU (float64, as on the CPU); each row's time then includes waiting for the GPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from report import add_row, emit, header  # benchmarks/report.py

from verifier.config import CrownConfig
from verifier.graph.torch_graph import TorchGraph
from verifier.ladder import Ladder, Rung
from verifier.problem import load_problem
from verifier.witness import OnnxOracle

HERE = Path(__file__).resolve().parent


def _sampled(model: Path, lower: np.ndarray, upper: np.ndarray, count: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and largest output seen at ``count`` uniform points of the box."""
    oracle = OnnxOracle(model)
    points = lower + np.random.default_rng(0).random((count, lower.size)) * (upper - lower)
    outs = np.stack([oracle.run(p) for p in points])
    return outs.min(axis=0), outs.max(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default="generator_narrow")
    parser.add_argument("--budgets", type=float, nargs="*", default=[2.0, 8.0, 30.0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--full", action="store_true",
                        help="also full CROWN (no refinement limit)")
    parser.add_argument("--dense", action="store_true", help="also full CROWN with dense rows instead of windows")
    parser.add_argument("--device", default="cpu", help="torch device of the bound computation (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = HERE / "generator" / "onnx" / "generator.onnx"
    problem = load_problem(model, HERE / "generator" / "vnnlib" / f"{args.spec}.vnnlib")
    region = problem.spec.regions[0]
    tgraph = TorchGraph(problem.graph, device, torch.float64)
    low, high = _sampled(model, region.lower, region.upper)
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    lines = header(f"Generator network bounds ({args.spec})", gpu, threads=args.threads)
    lines += [f"Sampled output range (20,000 points): Y_0 in [{low[0]:.4f}, {high[0]:.4f}], "
              f"Y_1 in [{low[1]:.4f}, {high[1]:.4f}]", "",
              "| method | seconds | Y_0 bounds | Y_1 bounds | mean width | refinement cut |",
              "|---|---|---|---|---|---|"]
    runs: list[tuple[str, CrownConfig | None]] = [("interval", None),
                                                  ("forward forms", CrownConfig(intermediate_method="forward"))]
    runs += [(f"hybrid, refine {b:g} s", CrownConfig(intermediate_method="hybrid", refine_seconds=b))
             for b in args.budgets]
    if args.full:
        runs.append(("hybrid, no limit (full CROWN)", CrownConfig(intermediate_method="hybrid")))
    if args.dense:
        runs.append(("hybrid, no limit, dense rows", CrownConfig(intermediate_method="hybrid", windows=False)))
    for name, config in runs:
        start = time.monotonic()
        ladder = Ladder(tgraph, region, config)
        y_lo, y_hi = ladder.output_bounds(Rung.INTERVAL if config is None else Rung.CROWN)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.monotonic() - start
        lo, hi = y_lo[0].tolist(), y_hi[0].tolist()
        assert all(lo[i] <= low[i] and hi[i] >= high[i] for i in range(2)), (name, lo, hi)  # must contain samples
        cut = "" if config is None else ("yes" if ladder.crown().refinement_cut else "no")
        add_row(lines, name, f"{seconds:.2f}", f"[{lo[0]:.4g}, {hi[0]:.4g}]", f"[{lo[1]:.4g}, {hi[1]:.4g}]",
                f"{(sum(hi) - sum(lo)) / 2:.4g}", cut)
    emit(lines, args.out)


if __name__ == "__main__":
    main()
