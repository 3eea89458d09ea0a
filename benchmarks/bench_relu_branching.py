"""ReLU-split branching heuristics side by side: the whole pipeline (``verify_problem``, one
thread) per instance with ``ReluSplitConfig.branching`` set to each heuristic.

    python benchmarks/bench_relu_branching.py [--root ../shared/benchmarks] [--timeout 120] \\
        [--branchings babsr fsb] [--set mnist|oval21] [--out benchmarks/results/relu_branching.md]

The instances are MNIST fc (``--set mnist``) or oval21 CIFAR (``--set oval21``) ones where the
search decides the verdict (``INSTANCES``); the table gives the verdict, the seconds, the
domains bounded, the share of them refuted and the seconds spent choosing splits (FSB's
trial passes).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from report import add_row, emit, header, instance_parser  # benchmarks/report.py

from verifier.api import verify_problem
from verifier.config import ReluBranching, default_config
from verifier.problem import load_problem

INSTANCES = {
    "mnist": [
        ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_3_0.05.vnnlib"),
        ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_10_0.05.vnnlib"),
        ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_6_0.03.vnnlib"),
    ],
    "oval21": [
        ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img3568-eps0.030457516339869282.vnnlib"),
        ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img876-eps0.024836601307189544.vnnlib"),
        ("oval21", "onnx/cifar_wide_kw.onnx", "vnnlib/cifar_wide_kw-img8517-eps0.006928104575163399.vnnlib"),
    ],
}


def main() -> None:
    parser = instance_parser(__doc__, 120.0)
    parser.add_argument("--branchings", nargs="+", default=["babsr", "fsb"])
    parser.add_argument("--set", choices=sorted(INSTANCES), default="mnist")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = header("ReLU-split branching heuristics", f", {args.timeout:g} s per run",
                   ["instance", "branching", "verdict", "seconds", "domains bounded", "refuted", "branching s"])
    for benchmark, onnx, vnnlib in INSTANCES[args.set]:
        problem = load_problem(args.root / benchmark / onnx, args.root / benchmark / vnnlib)
        name = f"{Path(onnx).stem} {Path(vnnlib).stem}"
        for branching in args.branchings:
            config = default_config("cpu", 0)
            config = replace(config, relu_split=replace(config.relu_split, branching=ReluBranching(branching)))
            start = time.monotonic()
            result = verify_problem(problem, args.timeout, config)
            bab = result.stats.get("bab", {})
            bounded = int(bab.get("domains_bounded", 0))
            refuted = f"{int(bab.get('domains_proven', 0)) / bounded:.0%}" if bounded else "-"
            add_row(lines, name, branching, result.status.value, f"{time.monotonic() - start:.1f}",
                    bounded, refuted, f"{bab.get('seconds_branching', 0.0):.1f}")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
