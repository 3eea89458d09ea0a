"""The shared-benchmark instances that ``benchmarks/gpu_check.sh`` runs on a GPU machine, copied into
one small VNN-COMP tree (the whole shared set is too large to send to that machine).

    python benchmarks/gpu_subset.py [--root ../shared/benchmarks] [--out .gpu/bench] [--timeout 30]

The instances are the hard ones of issue 23 (on this project's 2-core CPU machine each times out
at 30 s or needs the ReLU-split search): MNIST fc 256x4 and 256x6 at eps 0.05, eran's 9x200 ReLU
net at index 5520, dist_shift index 3187, marabou-cifar10's small net at index 6413 and oval21's
base net at image 2578; and issue 24's three sigmoid instances (eran's 6x200 Sigmoid net at
indices 7259, 4214 and 3881). Each gets ``--timeout`` seconds in ``instances.csv`` and its answer from the
benchmark's ``expected.csv``. The files that ``benchmarks/bench_relu_throughput.py`` reads are
copied too (its ``--root`` can point here).
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTANCES = [
    ("mnist_fc", "onnx/mnist-net_256x4.onnx", "vnnlib/prop_8_0.05.vnnlib"),
    ("mnist_fc", "onnx/mnist-net_256x6.onnx", "vnnlib/prop_8_0.05.vnnlib"),
    ("eran", "onnx/mnist_relu_9_200.onnx", "vnnlib/mnist/mnist_spec_idx_5520_eps_0.01500.vnnlib"),
    ("dist_shift", "onnx/mnist_concat.onnx", "vnnlib/index3187_delta0.13.vnnlib"),
    ("marabou-cifar10", "onnx/cifar10_small.onnx",
     "vnnlib/networkcifar10_small_index6413_eps0.012_target7_orig6.vnnlib"),
    ("oval21", "onnx/cifar_base_kw.onnx", "vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib"),
    ("eran", "onnx/ffnnSIGMOID__Point_6x200.onnx", "vnnlib/mnist/mnist_spec_idx_7259_eps_0.01200.vnnlib"),
    ("eran", "onnx/ffnnSIGMOID__Point_6x200.onnx", "vnnlib/mnist/mnist_spec_idx_4214_eps_0.01200.vnnlib"),
    ("eran", "onnx/ffnnSIGMOID__Point_6x200.onnx", "vnnlib/mnist/mnist_spec_idx_3881_eps_0.01200.vnnlib"),
]
EXTRA_FILES = [("mnist_fc", "vnnlib/prop_12_0.05.vnnlib")]  # the throughput benchmark's third instance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "benchmarks")
    parser.add_argument("--out", type=Path, default=HERE.parent / ".gpu" / "bench")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    benchmarks = sorted({bench for bench, _, _ in INSTANCES})
    for bench in benchmarks:
        expected = {(r["onnx"].strip(), r["vnnlib"].strip()): r["expected"].strip()
                    for r in csv.DictReader((args.root / bench / "expected.csv").open())}
        chosen = [(onnx, vnnlib) for b, onnx, vnnlib in INSTANCES if b == bench]
        files = [f for pair in chosen for f in pair] + [f for b, f in EXTRA_FILES if b == bench]
        for relative in files:
            (args.out / bench / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.root / bench / relative, args.out / bench / relative)
        with (args.out / bench / "instances.csv").open("w", newline="") as inst:
            csv.writer(inst).writerows([onnx, vnnlib, repr(args.timeout)] for onnx, vnnlib in chosen)
        with (args.out / bench / "expected.csv").open("w", newline="") as exp:
            writer = csv.writer(exp)
            writer.writerow(["onnx", "vnnlib", "expected"])
            writer.writerows([onnx, vnnlib, expected.get((onnx, vnnlib), "unknown")] for onnx, vnnlib in chosen)
    print(f"{len(INSTANCES)} instances of {len(benchmarks)} benchmarks in {args.out}")


if __name__ == "__main__":
    main()
