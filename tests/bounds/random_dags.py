"""Random small ONNX networks mixing many op types, for soundness tests of bound methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.graph.loader import load_model
from verifier.ir import Graph
from verifier.witness import grid_box

UNARY = ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Abs", "Softplus", "Sin", "Neg", "Elu", "HardSigmoid", "Exp"]


class GraphBuilder:
    """Collects nodes and float32 initializers of a random ONNX graph, with unique names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: np.ndarray) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self.name("v")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out

    def dense(self, x: str, n_in: int, n_out: int) -> str:
        w = self.rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        return self.node("Gemm", [x, self.const(w), self.const(self.rng.normal(size=n_out) * 0.1)], transB=1)

    def unary(self, x: str) -> str:
        op = str(self.rng.choice(UNARY))
        if op == "Exp":  # keep magnitudes moderate
            x = self.node("Mul", [x, self.const(np.array(0.3))])
        return self.node(op, [x])


def conv_front(b: GraphBuilder, x: str) -> tuple[str, int]:
    """Conv -> activation -> pooling -> Flatten on a (1, 2, 6, 6) input; returns (value, width)."""
    w = b.rng.normal(size=(3, 2, 3, 3)) / 3
    c = b.node("Conv", [x, b.const(w), b.const(b.rng.normal(size=3) * 0.1)], pads=[1, 1, 1, 1])
    a = b.unary(c)
    pool = "MaxPool" if b.rng.random() < 0.5 else "AveragePool"
    p = b.node(pool, [a], kernel_shape=[2, 2], strides=[2, 2])
    t = b.node("Transpose", [p], perm=[0, 1, 3, 2])
    return b.node("Flatten", [t]), 27


def random_dag(seed: int) -> onnx.ModelProto:
    """A random network with a residual Add, a Concat, a Mul of two dynamic values and a Slice."""
    b = GraphBuilder(seed)
    use_conv = seed % 2 == 0
    shape = [1, 2, 6, 6] if use_conv else [1, 4]
    if use_conv:
        h, width = conv_front(b, "x")
    else:
        h, width = "x", 4
    h1 = b.unary(b.dense(h, width, 6))
    h2 = b.unary(b.dense(h1, 6, 6))
    res = b.node("Add", [h1, h2])
    prod = b.node("Mul", [b.dense(res, 6, 6), b.unary(b.dense(h, width, 6))])
    cat = b.node("Concat", [res, prod], axis=1)
    sliced = b.node("Slice", [cat, b.const_int([1]), b.const_int([11]), b.const_int([1])])
    out = b.dense(b.unary(sliced), 10, 3)
    if b.rng.random() < 0.3:
        out = b.node("Softmax", [out], axis=1)
    graph = helper.make_graph(b.nodes, f"dag{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 3])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def _const_int(self: GraphBuilder, values: list[int]) -> str:
    name = self.name("i")
    self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name


GraphBuilder.const_int = _const_int  # type: ignore[attr-defined]


def saved_dag_box(folder: Path, seed: int) -> tuple[Path, Graph, torch.Tensor, torch.Tensor]:
    """Random DAG ``seed`` saved under ``folder``, its loaded graph and a float32-cornered box
    ``(1, *input_shape)`` around a random centre (radius in ``[0.01, 1]``)."""
    path = folder / f"dag{seed}.onnx"
    onnx.save(random_dag(seed), path)
    graph = load_model(path)
    rng = np.random.default_rng(seed)
    centre, radius = rng.normal(size=graph.inputs[0].size), rng.uniform(0.01, 1.0)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, *graph.inputs[0].shape) for b in box)
    return path, graph, lower, upper
