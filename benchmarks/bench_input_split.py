"""Input-split search throughput per intermediate-bound method, on one instance: domains bounded
per second of bounding, and the verdict within the time given.

    python benchmarks/bench_input_split.py [--root ../shared/benchmarks] [--benchmark dist_shift]
        [--onnx onnx/mnist_concat.onnx] [--vnnlib vnnlib/index9830_delta0.13.vnnlib] [--timeout 60]
        [--methods forward backward] [--out benchmarks/results/input_split_methods.md]

Each method is ``InputSplitConfig.intermediate_method`` (how CROWN bounds each box's
intermediate values: linear forms over the free inputs, backward passes per unstable neuron, or
both); the run is the whole pipeline (``verify_problem``) on one thread.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from report import add_row, emit, header, instance_parser  # benchmarks/report.py

from verifier.api import verify_problem
from verifier.config import default_config
from verifier.problem import load_problem


def main() -> None:
    parser = instance_parser(__doc__, 60.0)
    parser.add_argument("--benchmark", default="dist_shift")
    parser.add_argument("--onnx", default="onnx/mnist_concat.onnx")
    parser.add_argument("--vnnlib", default="vnnlib/index9830_delta0.13.vnnlib")
    parser.add_argument("--methods", nargs="+", default=["forward", "backward"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = args.root / args.benchmark
    problem = load_problem(folder / args.onnx, folder / args.vnnlib)
    lines = header(f"Input-split throughput per intermediate method ({args.benchmark} {Path(args.vnnlib).stem})",
                   f", {args.timeout:g} s",
                   ["method", "verdict", "seconds", "domains bounded", "rounds", "bounding s", "domains/s"])
    for method in args.methods:
        config = default_config("cpu", 0)
        config = replace(config, input_split=replace(config.input_split, intermediate_method=method))
        start = time.monotonic()
        result = verify_problem(problem, args.timeout, config)
        bab = result.stats.get("bab", {})
        domains, bounding = bab.get("domains_bounded", 0), bab.get("seconds_bounding", 0.0)
        add_row(lines, method, result.status.value, f"{time.monotonic() - start:.1f}", domains,
                bab.get("rounds", 0), f"{bounding:.1f}", f"{domains / bounding if bounding else 0.0:.1f}")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
