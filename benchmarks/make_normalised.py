"""Builds a small benchmark of networks with a decomposed LayerNorm and a Softmax head.

    python benchmarks/make_normalised.py OUT_DIR [--networks 4] [--timeout 20]

Each network: ``x (8) -> Gemm 16 -> Relu -> Gemm 16 -> LayerNorm -> Gemm 16 -> Relu -> Gemm 3
-> Softmax``, the LayerNorm written out as exporters write it (ReduceMean, Sub, Pow 2,
ReduceMean, Add 1e-5, Sqrt, Div), so it exercises Pow with a constant exponent, Div by a
variable and Softmax. Properties: local robustness of the label at a random centre (the
output's largest probability stays the largest) for eps 0.01, 0.03 and 0.1, two centres per
network. OUT_DIR gets the VNN-COMP layout (``onnx/``, ``vnnlib/``, ``instances.csv``) for
``verify bench OUT_DIR --tool verifier``; there is no ``expected.csv``: every ``sat`` is
checked by onnxruntime, and the ``unsat`` answers of two versions must never meet a ``sat``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

EPSILONS = (0.01, 0.03, 0.1)
CENTRES = 2


def _layer_norm(src: str, out: str) -> list[onnx.NodeProto]:
    """LayerNorm over axis 1 as exporters write it (no scale or shift)."""
    return [helper.make_node("ReduceMean", [src], [f"{out}_mu"], axes=[1], keepdims=1),
            helper.make_node("Sub", [src, f"{out}_mu"], [f"{out}_c"]),
            helper.make_node("Pow", [f"{out}_c", "two"], [f"{out}_sq"]),
            helper.make_node("ReduceMean", [f"{out}_sq"], [f"{out}_var"], axes=[1], keepdims=1),
            helper.make_node("Add", [f"{out}_var", "eps"], [f"{out}_ve"]),
            helper.make_node("Sqrt", [f"{out}_ve"], [f"{out}_sd"]),
            helper.make_node("Div", [f"{out}_c", f"{out}_sd"], [out])]


def network(seed: int) -> onnx.ModelProto:
    """The seeded network of the module docstring."""
    rng = np.random.default_rng(seed)
    sizes = [8, 16, 16, 16, 3]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-5, np.float32), "eps")]
    for k in range(4):
        w = rng.normal(size=(sizes[k + 1], sizes[k])) * 1.5 / np.sqrt(sizes[k])
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array((rng.normal(size=sizes[k + 1]) * 0.2).astype(np.float32), f"b{k}")]
    gemm = [helper.make_node("Gemm", [src, f"W{k}", f"b{k}"], [f"z{k}"], transB=1)
            for k, src in enumerate(["x", "r0", "n1", "r2"])]
    nodes = [gemm[0], helper.make_node("Relu", ["z0"], ["r0"]), gemm[1], *_layer_norm("z1", "n1"),
             gemm[2], helper.make_node("Relu", ["z2"], ["r2"]), gemm[3],
             helper.make_node("Softmax", ["z3"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, f"normalised{seed}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def robustness_spec(centre: np.ndarray, eps: float, label: int, outputs: int) -> str:
    """VNN-LIB text: inputs within ``eps`` of ``centre``; violated when another output reaches
    the label's."""
    lines = [f"(declare-const X_{i} Real)" for i in range(centre.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(outputs)]
    for i, c in enumerate(centre):
        lines += [f"(assert (>= X_{i} {c - eps:.8f}))", f"(assert (<= X_{i} {c + eps:.8f}))"]
    others = " ".join(f"(and (>= Y_{j} Y_{label}))" for j in range(outputs) if j != label)
    return "\n".join([*lines, f"(assert (or {others}))"]) + "\n"


def write_robustness_benchmark(out: Path, prefix: str, build: Callable[[int], onnx.ModelProto], networks: int,
                               epsilons: Sequence[float], timeout: float, seed_base: int) -> int:
    """Writes ``networks`` models ``build(seed)`` as ``out/onnx/<prefix><seed>.onnx`` and, per
    model, local-robustness properties (:func:`robustness_spec`) at :data:`CENTRES` centres drawn
    uniformly in ``[-1, 1]`` (seeded ``seed_base + seed``; the label is onnxruntime's argmax) for
    each eps, and ``instances.csv``; returns the number of instances."""
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    (out / "vnnlib").mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in range(networks):
        model = build(seed)
        onnx_path = out / "onnx" / f"{prefix}{seed}.onnx"
        onnx.save(model, onnx_path)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        size = int(np.prod([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]))
        outputs = int(np.prod([d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]))
        rng = np.random.default_rng(seed_base + seed)
        for k in range(CENTRES):
            centre = rng.uniform(-1, 1, size).astype(np.float32)
            (y,) = session.run(None, {model.graph.input[0].name: centre.reshape(1, -1)})
            label = int(np.argmax(y))
            for eps in epsilons:
                name = f"{prefix}{seed}_c{k}_eps{eps}.vnnlib"
                (out / "vnnlib" / name).write_text(robustness_spec(centre, eps, label, outputs))
                rows.append(f"onnx/{onnx_path.name},vnnlib/{name},{timeout:g}")
    (out / "instances.csv").write_text("\n".join(rows) + "\n")
    return len(rows)


def main() -> None:
    """Writes the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--networks", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    count = write_robustness_benchmark(args.out, "normalised", network, args.networks, EPSILONS, args.timeout, 1000)
    print(f"{count} instances in {args.out}")


if __name__ == "__main__":
    main()
