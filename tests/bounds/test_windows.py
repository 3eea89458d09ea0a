"""Windowed coefficients (:mod:`verifier.bounds.windows`) against dense ones and onnxruntime.

Three oracles: the vector-Jacobian product of the op's own forward (each registered op's
:meth:`local_map` must describe exactly that map); CROWN with dense rows (the same bounds);
onnxruntime samples (every bound contains them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bounds.crown import Crown, CrownConfig
from verifier.bounds.windows import Windows, through_local_map, transposed_conv
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Node
from verifier.ops.base import REGISTRY, Op

# one single-op case per registered op with a local map: (attributes, input shape, constant shapes)
CASES: dict[str, list[tuple[dict, tuple[int, ...], list[tuple[int, ...]]]]] = {
    "Conv": [({"strides": [1, 1], "pads": [1, 1, 1, 1]}, (1, 3, 7, 6), [(4, 3, 3, 3), (4,)]),
             ({"strides": [2, 2], "pads": [1, 0, 2, 1], "dilations": [1, 2]}, (1, 2, 9, 8), [(3, 2, 4, 3)]),
             ({"strides": [2, 1], "auto_pad": "SAME_UPPER"}, (1, 2, 7, 7), [(3, 2, 2, 3), (3,)]),
             ({"strides": [3, 3]}, (1, 1, 10, 10), [(2, 1, 2, 2)]),
             ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 3, 8, 8), [(9, 3, 4, 4), (9,)])],
    "ConvTranspose": [({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 3, 4, 5), [(3, 2, 4, 4), (2,)]),
                      ({"strides": [3, 2], "pads": [0, 1, 2, 0], "output_padding": [1, 0]}, (1, 2, 3, 4),
                       [(2, 3, 3, 3)]),
                      ({"strides": [3, 3]}, (1, 2, 3, 3), [(2, 2, 2, 2), (2,)]),
                      ({"strides": [1, 1], "pads": [1, 2, 0, 1]}, (1, 2, 5, 5), [(2, 3, 3, 4)]),
                      ({"strides": [2, 2], "pads": [1, 1, 1, 1]}, (1, 4, 4, 4), [(4, 10, 4, 4)])],
    "BatchNormalization": [({"epsilon": 1e-3}, (1, 3, 4, 5), [(3,), (3,), (3,), (3,)])],
}


def _local_ops() -> list[str]:
    return sorted(name for name, op in REGISTRY.items() if type(op).local_map is not Op.local_map)


def test_every_op_with_a_local_map_has_cases() -> None:
    assert set(_local_ops()) == set(CASES), "add cases for new ops with a local map"


def _constants(rng: np.random.Generator, shapes: list[tuple[int, ...]], op_type: str) -> list[torch.Tensor]:
    out = [torch.from_numpy(rng.normal(size=s)) for s in shapes]
    if op_type == "BatchNormalization":
        out[3] = out[3].abs() + 0.5  # variances
    return out


@pytest.mark.parametrize(("op_type", "case"), [(name, i) for name in CASES for i in range(len(CASES[name]))])
def test_local_map_windows_equal_the_forward_vjp(op_type: str, case: int) -> None:
    attrs, in_shape, const_shapes = CASES[op_type][case]
    rng = np.random.default_rng(case)
    op = REGISTRY[op_type]
    names = ["x"] + [f"c{i}" for i in range(len(const_shapes))]
    node = Node(op=op_type, name="n", inputs=tuple(names), outputs=("y",), attrs=attrs)
    constants = _constants(rng, const_shapes, op_type)
    local = op.local_map(node, [None, *constants], in_shape)
    assert local is not None
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    y = op.forward(node, [x, *constants], [True] + [False] * len(constants))[0]
    out_shape = tuple(y.shape[1:])
    # random windows of random sizes and origins, some sticking out of the value
    rows, size = 7, (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    origin = torch.stack([torch.from_numpy(rng.integers(-2, out_shape[2], rows)),
                          torch.from_numpy(rng.integers(-2, out_shape[3], rows))], dim=1)
    patch = torch.from_numpy(rng.normal(size=(2, rows, out_shape[1], *size)))
    windows = Windows(patch, origin, out_shape).masked()
    dense_out = windows.dense()
    grads = [torch.autograd.grad((y * dense_out[b, r].unsqueeze(0)).sum(), x, retain_graph=True)[0][0]
             for b in range(2) for r in range(rows)]
    expected = torch.stack(grads).reshape(2, rows, *in_shape)
    got = through_local_map(windows, local, in_shape).dense()
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3, 4, 6, 9])
@pytest.mark.parametrize(("stride", "dilation"), [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((3, 2), (2, 1))])
def test_transposed_conv_equals_torch(channels: int, stride: tuple[int, int], dilation: tuple[int, int]) -> None:
    """Every path of :func:`transposed_conv` (few channels, torch's own, the matrix product)."""
    rng = np.random.default_rng(channels)
    x = torch.from_numpy(rng.normal(size=(3, channels, 5, 6)))
    weight = torch.from_numpy(rng.normal(size=(channels, 4, 3, 2)))
    expected = torch.nn.functional.conv_transpose2d(x, weight, stride=stride, dilation=dilation)
    got = transposed_conv(x, weight, stride, dilation)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def _conv_net(seed: int) -> onnx.ModelProto:
    """Conv -> Conv (both padded) -> BN -> Relu -> ConvTranspose (stride 2) -> Relu -> Conv (stride 2) -> Relu ->
    Flatten -> Gemm: the shapes of a generator and a discriminator, small."""
    rng = np.random.default_rng(seed)
    inits = []

    def const(name: str, shape: tuple[int, ...], scale: float = 0.5) -> str:
        value = rng.normal(size=shape) * scale
        if name.endswith("var"):
            value = np.abs(value) + 0.5
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    nodes = [
        helper.make_node("Conv", ["x", const("w0", (4, 2, 3, 3)), const("b0", (4,))], ["c00"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c00", const("w00", (4, 4, 3, 3)), const("b00", (4,))], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", const("s", (4,)), const("bb", (4,)), const("m", (4,)),
                                                const("var", (4,))], ["n0"]),
        helper.make_node("Relu", ["n0"], ["r0"]),
        helper.make_node("ConvTranspose", ["r0", const("w1", (4, 3, 4, 4)), const("b1", (3,))], ["c1"],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", const("w2", (3, 3, 3, 3))], ["c2"], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"]),
        helper.make_node("Gemm", ["f", const("w3", (3, 27)), const("b3", (3,))], ["y"], transB=1),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph(nodes, f"conv{seed}", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("seed", range(4))
def test_window_rows_give_the_dense_bounds_and_contain_samples(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "conv.onnx"
    onnx.save(_conv_net(seed), path)
    graph = load_model(path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(1, 1, 2, 4, 4))
    lower, upper = torch.from_numpy(centre - 0.3), torch.from_numpy(centre + 0.3)
    c = torch.from_numpy(np.vstack([np.eye(3), -np.eye(3)]))
    windowed = Crown(tgraph, [lower], [upper], CrownConfig(windows=True)).lower_bound(c)
    dense = Crown(tgraph, [lower], [upper], CrownConfig(windows=False)).lower_bound(c)
    assert torch.allclose(windowed, dense, rtol=1e-9, atol=1e-9)
    chunked = Crown(tgraph, [lower], [upper], CrownConfig(windows=True, max_rows=1))  # many passes: tables serve
    assert torch.allclose(chunked.lower_bound(c), dense, rtol=1e-9, atol=1e-9)
    assert chunked._cache.windows._tables
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    points = centre + rng.uniform(-0.3, 0.3, size=(2000, 1, 2, 4, 4))
    outs = np.stack([session.run(None, {"x": p.astype(np.float32)})[0][0] for p in points])
    low, high = windowed[0, :3].numpy(), -windowed[0, 3:].numpy()
    assert (outs >= low).all() and (outs <= high).all()
