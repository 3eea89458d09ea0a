"""Times interval and CROWN passes on ACAS Xu and MNIST networks, and reports their tightness.

Usage:
    python benchmarks/bench_bounds.py [--repeats 5] [--batch 1] [--device cpu]

For each network and property: the median wall time of one full pass (all intermediate bounds
and the spec rows) and the mean width of the output bounds, for ``ibp``, ``crown`` and
``alpha`` (alpha-CROWN on the first clause's rows, then on the outputs, each call at most
30 s); ``--batch N`` bounds N copies of the input box at once (as branch and bound will).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib

ROOT = Path(__file__).resolve().parent
ALPHA_SECONDS = 30.0  # per alpha-CROWN call at most (the CIFAR network's joint slopes are costly)
CASES = [
    ("acasxu", "onnx/ACASXU_run2a_1_1_batch_2000.onnx", "vnnlib/prop_1.vnnlib"),
    ("acasxu", "onnx/ACASXU_run2a_3_3_batch_2000.onnx", "vnnlib/prop_4.vnnlib"),
    ("acasxu", "onnx/ACASXU_run2a_5_9_batch_2000.onnx", "vnnlib/prop_2.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x2.onnx", "vnnlib/prop_0_0.03.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_0_0.03.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x6.onnx", "vnnlib/prop_0_0.03.vnnlib"),
    ("zoo", "onnx/eran__mnist_relu_9_200.onnx", "vnnlib/eran__mnist_spec_idx_8098_eps_0.01500.vnnlib"),
    ("zoo", "onnx/eran__ffnnSIGMOID__Point_6x200.onnx", "vnnlib/eran__mnist_spec_idx_7167_eps_0.01200.vnnlib"),
    ("zoo", "onnx/oval21__cifar_deep_kw.onnx", "vnnlib/oval21__cifar_deep_kw-img4405-eps0.036732026143790855.vnnlib"),
]


def _median_time(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, tgraph: TorchGraph, lower: torch.Tensor, upper: torch.Tensor, c: torch.Tensor,
            repeats: int) -> None:
    """Prints time and mean output width of one ibp, crown and alpha-crown pass."""
    shape = tgraph.graph.inputs[0].shape
    m = tgraph.graph.output_size
    eye = torch.eye(m, dtype=torch.float64)

    def ibp() -> tuple[torch.Tensor, torch.Tensor]:
        return interval_bounds(tgraph, lower, upper)

    def crown() -> tuple[torch.Tensor, torch.Tensor]:
        analysis = Crown(tgraph, [lower.reshape(-1, *shape)], [upper.reshape(-1, *shape)])
        analysis.lower_bound(c)
        return analysis.output_bounds()

    def alpha() -> tuple[torch.Tensor, torch.Tensor]:
        analysis = Crown(tgraph, [lower.reshape(-1, *shape)], [upper.reshape(-1, *shape)])
        alpha_lower_bound(analysis, c, deadline=Deadline.after(ALPHA_SECONDS))
        both = alpha_lower_bound(analysis, torch.cat([eye, -eye]), deadline=Deadline.after(ALPHA_SECONDS))
        return both[:, :m], -both[:, m:]

    for method, fn in (("ibp", ibp), ("crown", crown), ("alpha", alpha)):
        with torch.no_grad() if method != "alpha" else torch.enable_grad():
            fn()  # warm-up
            seconds = _median_time(fn, repeats)
            lo, hi = fn()
        print(f"{name:45s} {method:6s} {seconds * 1000:10.1f} {float((hi - lo).mean()):12.5g}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, batch {args.batch}")
    print(f"{'network':45s} {'method':6s} {'time (ms)':>10s} {'mean width':>12s}")
    for folder, onnx_rel, spec_rel in CASES:
        graph = load_model(ROOT / folder / onnx_rel)
        tgraph = TorchGraph(graph, args.device, torch.float64)
        region = parse_vnnlib(ROOT / folder / spec_rel).regions[0]
        lower, upper = proof_box(graph, region, torch.device(args.device))
        lower, upper = lower.expand(args.batch, -1), upper.expand(args.batch, -1)
        c = torch.as_tensor(region.clauses[0].C)
        measure(Path(onnx_rel).stem[:45], tgraph, lower, upper, c, args.repeats)


if __name__ == "__main__":
    main()
