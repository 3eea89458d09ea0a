"""Writes the tiny hand-made example models and properties in specs/ (answers known by construction).

Run ``python specs/make_examples.py`` to regenerate; the outputs are committed. Each property's
expected verdict is recorded in ``specs/instances.csv`` and ``specs/expected.csv`` and argued
in the comment at the top of the .vnnlib file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
OPSET = 13


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           inits: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="specs/make_examples.py")
    onnx.checker.check_model(model, full_check=True)
    return model


def _io(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def affine() -> onnx.ModelProto:
    """y = 2 x0 - x1 + 0.5 (one Gemm)."""
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)]
    return _model(nodes, [_io("x", [1, 2])], [_io("y", [1, 1])],
                  {"W": np.array([[2.0, -1.0]]), "b": np.array([0.5])}, "affine")


def relu_net() -> onnx.ModelProto:
    """y0 = relu(x0 + x1) + relu(x0 - x1) (= 2 max(x0, |x1|) for x0 >= 0), y1 = x0 (MatMul+Add)."""
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["a"]),
        helper.make_node("MatMul", ["a", "W2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["y"]),
    ]
    w1 = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]])
    w2 = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    inits = {"W1": w1, "b1": np.zeros(3), "W2": w2, "b2": np.zeros(2)}
    return _model(nodes, [_io("x", [1, 2])], [_io("y", [1, 2])], inits, "relu_net")


def sigmoid_net() -> onnx.ModelProto:
    """y = sigmoid(x) on a scalar input of shape [1, 1]."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"])]
    return _model(nodes, [_io("x", [1, 1])], [_io("y", [1, 1])], {}, "sigmoid_net")


def conv_net() -> onnx.ModelProto:
    """A small CNN: Conv, BatchNorm, Relu, MaxPool, Flatten, Gemm (for evaluation tests)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], epsilon=1e-5),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "Wf", "bf"], ["y"], transB=1),
    ]
    inits = {
        "Wc": rng.normal(size=(4, 1, 3, 3)) * 0.5, "bc": rng.normal(size=4) * 0.1,
        "g": rng.uniform(0.5, 1.5, size=4), "be": rng.normal(size=4) * 0.1,
        "m": rng.normal(size=4) * 0.1, "v": rng.uniform(0.5, 1.5, size=4),
        "Wf": rng.normal(size=(3, 16)) * 0.3, "bf": rng.normal(size=3) * 0.1,
    }
    return _model(nodes, [_io("x", [1, 1, 4, 4])], [_io("y", [1, 3])], inits, "conv_net")


def _box(bounds: list[tuple[float, float]]) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(len(bounds))]
    for i, (lo, hi) in enumerate(bounds):
        lines += [f"(assert (>= X_{i} {lo}))", f"(assert (<= X_{i} {hi}))"]
    return "\n".join(lines)


def _outputs(count: int) -> str:
    return "\n".join(f"(declare-const Y_{j} Real)" for j in range(count))


PROPERTIES: dict[str, tuple[str, str, str]] = {
    # name: (model, expected, text)
    "affine_unsat": ("affine.onnx", "unsat", "; max of 2 x0 - x1 + 0.5 over [0,1]^2 is 2.5 < 3\n"
                     + _box([(0, 1), (0, 1)]) + "\n" + _outputs(1) + "\n(assert (>= Y_0 3.0))\n"),
    "affine_sat": ("affine.onnx", "sat", "; x = (1, 0) gives y = 2.5 >= 2\n"
                   + _box([(0, 1), (0, 1)]) + "\n" + _outputs(1) + "\n(assert (>= Y_0 2.0))\n"),
    "relu_unsat": ("relu_net.onnx", "unsat",
                   "; y0 = relu(x0+x1) + relu(x0-x1) >= 0 always, so y0 <= -0.1 is impossible\n"
                   + _box([(-1, 1), (-1, 1)]) + "\n" + _outputs(2) + "\n(assert (<= Y_0 -0.1))\n"),
    "relu_sat_or": ("relu_net.onnx", "sat",
                    "; first disjunct impossible (y0 >= 0); second: x = (0.5, 0) gives y0 = 1 >= y1 + 0.4\n"
                    + _box([(0, 1), (-1, 1)]) + "\n" + _outputs(2)
                    + "\n(assert (or (and (<= Y_0 -1.0)) (and (>= Y_0 (+ Y_1 0.4)) (>= Y_1 0.25))))\n"),
    "sigmoid_unsat": ("sigmoid_net.onnx", "unsat", "; sigmoid(x) <= sigmoid(1) = 0.7310586 < 0.75 on [-1, 1]\n"
                      + _box([(-1, 1)]) + "\n" + _outputs(1) + "\n(assert (>= Y_0 0.75))\n"),
    "sigmoid_sat": ("sigmoid_net.onnx", "sat", "; sigmoid(1) = 0.7310586 >= 0.73\n"
                    + _box([(-1, 1)]) + "\n" + _outputs(1) + "\n(assert (>= Y_0 0.73))\n"),
}


def main() -> None:
    (HERE / "onnx").mkdir(exist_ok=True)
    (HERE / "vnnlib").mkdir(exist_ok=True)
    for name, make in {"affine": affine, "relu_net": relu_net, "sigmoid_net": sigmoid_net,
                       "conv_net": conv_net}.items():
        onnx.save(make(), HERE / "onnx" / f"{name}.onnx")
    rows, expected = [], ["onnx,vnnlib,expected"]
    for name, (model, verdict, text) in PROPERTIES.items():
        (HERE / "vnnlib" / f"{name}.vnnlib").write_text(text)
        rows.append(f"onnx/{model},vnnlib/{name}.vnnlib,10")
        expected.append(f"onnx/{model},vnnlib/{name}.vnnlib,{verdict}")
    (HERE / "instances.csv").write_text("\n".join(rows) + "\n")
    (HERE / "expected.csv").write_text("\n".join(expected) + "\n")


if __name__ == "__main__":
    main()
