"""CROWN and alpha-CROWN through every relaxed op (and some cut ops), checked with onnxruntime.

For each registered op that declares a relaxation (``Op.relaxation``, so a newly relaxed op is
covered automatically; PRelu, whose slope is a second input, has its cases in
``test_crown_registry``), a few ops of :mod:`verifier.ops.multi_relax` and ops CROWN cuts at their
interval bounds, a network
Gemm -> OP -> Gemm is bounded over random boxes; onnxruntime's outputs at sampled points
must lie inside the bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops import REGISTRY
from verifier.witness import OnnxOracle, grid_box, snap_into_box

POSITIVE_DOMAIN = {"Log", "Sqrt", "Reciprocal"}
CUT_OPS = ["Softmax", "Mul", "Max", "Min", "ReduceMax", "ReduceMin"]
RELAXED = sorted(name for name, op in REGISTRY.items() if op.relaxation is not None and name != "PRelu")
OPSET = {"Gelu": 20, "HardSwish": 14}


def _model(op: str, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {
        "W1": rng.normal(size=(6, 3)) / 2, "b1": rng.normal(size=6) * 0.2,
        "W2": rng.normal(size=(2, 6)) / 2, "b2": rng.normal(size=2) * 0.2,
    }
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1)]
    src = "h"
    if op in POSITIVE_DOMAIN:  # keep the input inside the domain: exp(h) > 0
        nodes.append(helper.make_node("Exp", ["h"], ["hp"]))
        src = "hp"
    if op == "Clip":
        inits["lo"], inits["hi"] = np.array(-0.3), np.array(0.4)
        nodes.append(helper.make_node("Clip", [src, "lo", "hi"], ["a"]))
    elif op == "Power":  # our own op: what Pow with a constant exponent becomes
        inits["p"] = np.array(3.0)
        nodes.append(helper.make_node("Pow", [src, "p"], ["a"]))
    elif op in ("Mul", "Max", "Min"):
        nodes.append(helper.make_node(op, [src, "h"], ["a"]))
    elif op in ("ReduceMax", "ReduceMin"):
        nodes.append(helper.make_node(op, [src], ["a"], axes=[1], keepdims=1))
    else:
        nodes.append(helper.make_node(op, [src], ["a"]))
    width = 1 if op.startswith("Reduce") else 6
    if width == 1:
        inits["W2"] = rng.normal(size=(2, 1))
    nodes.append(helper.make_node("Gemm", ["a", "W2", "b2"], ["y"], transB=1))
    graph = helper.make_graph(
        nodes, f"op_{op}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET.get(op, 13))])


@pytest.mark.parametrize("op", RELAXED + CUT_OPS)
def test_crown_and_alpha_through_op(tmp_path: Path, op: str) -> None:
    path = tmp_path / f"{op}.onnx"
    onnx.save(_model(op, seed=len(op)), path)
    graph = load_model(path)
    assert op in {node.op for node in graph.nodes}
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    oracle = OnnxOracle(path)
    rng = np.random.default_rng(0)
    for radius in (0.01, 0.3, 1.5):
        centre = rng.normal(size=3)
        box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
        lower, upper = (torch.from_numpy(b).reshape(1, 1, 3) for b in box)
        crown = Crown(tgraph, [lower], [upper])
        y_lo, y_hi = crown.output_bounds()
        c = torch.from_numpy(rng.normal(size=(3, 2)))
        optimised = alpha_lower_bound(crown, c, AlphaConfig(iterations=10))
        points = box[0] + rng.random((400, 3)) * (box[1] - box[0])
        corners = box[0] + rng.integers(0, 2, size=(16, 3)) * (box[1] - box[0])
        outs = torch.from_numpy(np.stack([
            oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
            for p in np.concatenate([points, corners])
        ]))
        assert (outs >= y_lo).all() and (outs <= y_hi).all(), op
        assert ((outs @ c.T) >= optimised).all(), op
