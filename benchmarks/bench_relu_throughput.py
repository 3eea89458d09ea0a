"""ReLU-split search throughput: domains bounded per second, and where a round's time goes
(bounding, branching), on three instances that need the search (issue 23, item 4).

    python benchmarks/bench_relu_throughput.py [--timeout 30] [--out benchmarks/results/relu_throughput.md]
        [--device cpu|cuda] [--batch 64 ...]

Each instance runs through the pipeline with ``--bab relu`` in this process, on one thread,
and the search's statistics give: domains bounded, rounds, the seconds spent bounding and
branching (filtered smart branching bounds both children of 4 candidates per domain in one
quick pass), and domains per second of search (bounding + branching). Instances, from the
shared benchmarks (the files are looked up under ``--root``; MNIST fc's are bundled):
MNIST 256x4 prop 12 at eps 0.05, eran's 9x200 ReLU net at index 5520, dist_shift index 3187.
``--batch`` runs each instance once per given batch (domains popped per round; the default is the
configuration's); ``--device cuda`` bounds on the GPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from report import add_row, emit, header, instance_parser  # benchmarks/report.py

from verifier.api import verify_problem
from verifier.config import default_config
from verifier.problem import load_problem

INSTANCES = [
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_12_0.05.vnnlib"),
    ("eran", "onnx/mnist_relu_9_200.onnx", "vnnlib/mnist/mnist_spec_idx_5520_eps_0.01500.vnnlib"),
    ("dist_shift", "onnx/mnist_concat.onnx", "vnnlib/index3187_delta0.13.vnnlib"),
]


def main() -> None:
    parser = instance_parser(__doc__, 30.0)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--batch", type=int, nargs="*", default=[], help="domains per round (default: configured)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = replace(default_config(args.device, 0), bab="relu")
    configs = [replace(config, relu_split=replace(config.relu_split, batch=b)) for b in args.batch] or [config]
    gpu = f", GPU {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    lines = header("ReLU-split throughput", f"{gpu}, `--bab relu`, {args.timeout:g} s per instance",
                   ["instance", "verdict", "domains bounded", "rounds", "batch", "bounding s", "branching s",
                    "domains/s"])
    for (bench, onnx, vnnlib), run_config in ((i, c) for i in INSTANCES for c in configs):
        problem = load_problem(args.root / bench / onnx, args.root / bench / vnnlib)
        result = verify_problem(problem, args.timeout, run_config)
        bab = result.stats.get("bab", {})
        bounding, branching = bab.get("seconds_bounding", 0.0), bab.get("seconds_branching", 0.0)
        domains = bab.get("domains_bounded", 0)
        rate = domains / (bounding + branching) if bounding + branching else 0.0
        add_row(lines, f"{bench} {Path(vnnlib).stem}", result.status.value, domains, bab.get("rounds", 0),
                bab.get("batch", ""), f"{bounding:.1f}", f"{branching:.1f}", f"{rate:.1f}")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
