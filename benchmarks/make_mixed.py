"""Builds a small benchmark of MLPs that mix ReLU and smooth activations.

    python benchmarks/make_mixed.py OUT_DIR [--networks 4] [--timeout 20] [--eps 0.1 0.2 0.3]

Each network: ``x (20) -> Gemm 32 -> Relu -> Gemm 32 -> Sigmoid -> Gemm 32 -> Relu -> Gemm 32
-> Tanh -> Gemm 5`` (seeded weights), too many inputs for input splitting, so the search splits
neurons: before the mixed neuron-split search, ReLU splitting with the smooth neurons only
relaxed; since, both kinds split in one search (:mod:`verifier.bab.neuron_split`).
Properties: local robustness of the label at a random centre for each eps (default 0.1, 0.2
and 0.3; at 0.02-0.1 CROWN alone decides nearly all), two centres per network. OUT_DIR gets
the VNN-COMP layout for ``verify bench OUT_DIR --tool verifier``; there is no ``expected.csv``:
every ``sat`` is checked by onnxruntime, and the ``unsat`` answers of two versions must never
meet a ``sat``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from make_normalised import write_robustness_benchmark
from onnx import TensorProto, helper, numpy_helper

EPSILONS = (0.1, 0.2, 0.3)
SIZES = (20, 32, 32, 32, 32, 5)
ACTIVATIONS = ("Relu", "Sigmoid", "Relu", "Tanh")


def network(seed: int) -> onnx.ModelProto:
    """The seeded network of the module docstring."""
    rng = np.random.default_rng(seed)
    inits, nodes, value = [], [], "x"
    for k in range(len(SIZES) - 1):
        w = rng.normal(size=(SIZES[k + 1], SIZES[k])) * 1.5 / np.sqrt(SIZES[k])
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array((rng.normal(size=SIZES[k + 1]) * 0.2).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        value = f"z{k}"
        if k < len(ACTIVATIONS):
            nodes.append(helper.make_node(ACTIVATIONS[k], [value], [f"a{k}"]))
            value = f"a{k}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SIZES[0]])]
    graph = helper.make_graph(nodes, f"mixed{seed}", inputs,
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, SIZES[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def main() -> None:
    """Writes the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--networks", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--eps", type=float, nargs="+", default=list(EPSILONS))
    args = parser.parse_args()
    count = write_robustness_benchmark(args.out, "mixed", network, args.networks, args.eps, args.timeout, 2000)
    print(f"{count} instances in {args.out}")


if __name__ == "__main__":
    main()
