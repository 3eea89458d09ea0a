"""Constant folding and each normalising rewrite preserve the function (oracle: onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.graph.loader import load_model
from verifier.graph.simplify import RULES, simplify_graph
from verifier.graph.torch_graph import TorchGraph
from verifier.witness import OnnxOracle

RNG = np.random.default_rng(0)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _pytorch_style_model(opset: int) -> onnx.ModelProto:
    """Shape/Gather/Unsqueeze/Concat feeding Reshape, Constant, Cast, Identity, Dropout,
    Gemm with alpha/beta, MatMul+Add, Conv+BatchNorm, a standalone BatchNorm, Sub and Pow."""
    f32 = np.float32
    inits = [
        _const("Wc", RNG.normal(size=(3, 2, 3, 3)).astype(f32)), _const("bc", RNG.normal(size=3).astype(f32)),
        _const("g", RNG.uniform(0.5, 2, 3).astype(f32)), _const("be", RNG.normal(size=3).astype(f32)),
        _const("mu", RNG.normal(size=3).astype(f32)), _const("var", RNG.uniform(0.5, 2, 3).astype(f32)),
        _const("g2", RNG.uniform(0.5, 2, 3).astype(f32)), _const("be2", RNG.normal(size=3).astype(f32)),
        _const("mu2", RNG.normal(size=3).astype(f32)), _const("var2", RNG.uniform(0.5, 2, 3).astype(f32)),
        _const("Wg", RNG.normal(size=(8, 72)).astype(f32)), _const("bg", RNG.normal(size=(1, 8)).astype(f32)),
        _const("Wm", RNG.normal(size=(8, 4)).astype(f32)), _const("bm", RNG.normal(size=4).astype(f32)),
        _const("mean", RNG.normal(size=(1, 2, 1, 1)).astype(f32)),
        _const("zero", np.array([0], np.int64)), _const("minus1", np.array([-1], np.int64)),
        _const("two", np.full(8, 2.0, f32)), _const("mixed", np.array([1, 2] * 4, f32)),
    ]
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["xs"]),
        helper.make_node("Identity", ["xs"], ["xi"]),
        helper.make_node("Conv", ["xi", "Wc", "bc"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "g2", "be2", "mu2", "var2"], ["bn2"]),
        helper.make_node("Dropout", ["bn2"], ["d"]),
        helper.make_node("Shape", ["d"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["d", "newshape"], ["flat"]),
        helper.make_node("Cast", ["flat"], ["flat32"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["flat32", "Wg", "bg"], ["gm"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["gm"], ["gr0"]),
        helper.make_node("Pow", ["gr0", "two"], ["gr1"]),  # one exponent: becomes our Power
        helper.make_node("Pow", ["gr1", "mixed"], ["gr"]),  # exponents per element: stays Pow
        helper.make_node("MatMul", ["gr", "Wm"], ["mm"]),
        helper.make_node("Add", ["bm", "mm"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "pt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [9, 11, 13, 17])
def test_folding_and_rewrites_match_onnxruntime(tmp_path: Path, opset: int) -> None:
    path = tmp_path / f"pt{opset}.onnx"
    model = _pytorch_style_model(opset)
    onnx.save(model, path)
    graph = load_model(path)
    assert graph.inputs[0].shape == (1, 2, 4, 6)  # the symbolic batch is fixed to 1
    ops = graph.op_types()
    for gone in ("Shape", "Gather", "Concat", "Identity", "Dropout", "Cast", "Gemm", "MatMul", "Add"):
        assert gone not in ops, ops
    assert ops.count("BatchNormalization") == 1  # the one after Relu cannot be folded
    assert ops.count("Power") == 1 and ops.count("Pow") == 1
    raw = load_model(path, simplify=False)
    oracle = OnnxOracle(path)
    x = RNG.normal(size=(10, 48)).astype(np.float32)
    theirs = np.stack([oracle.run(p) for p in x])
    for g in (graph, raw):
        ours = TorchGraph(g, "cpu", torch.float64).forward_flat(torch.from_numpy(x.astype(np.float64))).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_each_rule_alone_preserves_outputs(tmp_path: Path, rule: object) -> None:
    path = tmp_path / "pt.onnx"
    onnx.save(_pytorch_style_model(13), path)
    raw = load_model(path, simplify=False)
    single = simplify_graph(raw, (rule,))  # type: ignore[arg-type]
    x = torch.from_numpy(RNG.normal(size=(6, 48)))
    before = TorchGraph(raw, "cpu", torch.float64).forward_flat(x)
    after = TorchGraph(single, "cpu", torch.float64).forward_flat(x)
    # folded weights are stored in the model's float32, so allow float32-level differences
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5 * float(before.abs().max()))
