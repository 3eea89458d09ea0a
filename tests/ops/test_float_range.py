"""``Op.float_range``: the claimed range holds for onnxruntime's own float evaluation.

Bound propagation clamps an op's widened bounds to its ``float_range``, so the claim must hold
for every input, rounding included. The oracle is onnxruntime (float32 and float64) on inputs
chosen to stress the rounding: huge spreads, long axes, ties and one dominant element.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from verifier.bounds.interval import interval_bounds
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops import REGISTRY

RANGED = {"Softmax": (0.0, 1.0)}  # every op type whose float_range is claimed, with the claim


def _model(op: str, dtype: int, shape: tuple[int | str, ...], axis: int) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"], axis=axis)], "ranged",
                              [helper.make_tensor_value_info("x", dtype, list(shape))],
                              [helper.make_tensor_value_info("y", dtype, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _stress_inputs(rng: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    top = float(np.finfo(dtype).max) / 4
    rows = [
        rng.uniform(-1e4, 1e4, n),  # exp underflows for most terms
        np.full(n, 3.0),  # ties: every output is fl(1/n)
        np.where(np.arange(n) == 0, 50.0, rng.uniform(-1, 1, n)),  # one dominant term
        rng.uniform(-1, 1, n) * 1e-7,  # nearly equal terms: rounding of the sum matters
        np.where(np.arange(n) % 2 == 0, top, -top),  # extreme magnitudes
        rng.normal(0, 30, n),
    ]
    return np.stack(rows).astype(dtype)


def test_every_claimed_range_is_listed_here() -> None:
    claims = {}
    for op_type, op in REGISTRY.items():
        node = type("N", (), {"op": op_type, "name": "n", "attrs": {}})()
        found = op.float_range(node)  # type: ignore[arg-type]
        if found is not None:
            claims[op_type] = found
    assert claims == RANGED


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 4096])
@pytest.mark.parametrize(("onnx_type", "np_type"), [(TensorProto.FLOAT, np.float32),
                                                     (TensorProto.DOUBLE, np.float64)])
def test_onnxruntime_outputs_stay_in_the_claimed_range(n: int, onnx_type: int, np_type: type) -> None:
    rng = np.random.default_rng(n)
    x = _stress_inputs(rng, n, np_type)
    for op, (low, high) in RANGED.items():
        for axis in (-1, 0):
            session = ort.InferenceSession(_model(op, onnx_type, x.shape, axis).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
            (y,) = session.run(None, {"x": x})
            assert np.all((y >= low) & (y <= high)), f"{op} axis {axis}: {y.min()} .. {y.max()}"
            ours = torch.softmax(torch.from_numpy(x), dim=axis)  # the attack's own evaluation
            assert bool(((ours >= low) & (ours <= high)).all())


def test_clamped_interval_bounds_contain_onnxruntime(tmp_path: object) -> None:
    """The bounds after clamping, over wide boxes, still contain onnxruntime's outputs."""
    path = f"{tmp_path}/softmax.onnx"
    onnx.save(_model("Softmax", TensorProto.FLOAT, (1, 6), -1), path)
    graph = load_model(path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    batched = _model("Softmax", TensorProto.FLOAT, ("N", 6), -1)  # the same node, any batch
    session = ort.InferenceSession(batched.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for width in (1e-3, 1.0, 100.0, 2000.0):
        centre = rng.uniform(-50, 50, (1, 6))
        lower, upper = torch.from_numpy(centre - width / 2), torch.from_numpy(centre + width / 2)
        y_lo, y_hi = interval_bounds(tgraph, lower, upper)
        assert bool((y_lo >= 0).all() and (y_hi <= 1).all())
        points = (centre - width / 2) + rng.random((3000, 6)) * width
        points = np.concatenate([points, np.where(rng.random((64, 6)) < 0.5, centre - width / 2,
                                                  centre + width / 2)]).astype(np.float32)
        (y,) = session.run(None, {"x": points.reshape(-1, 6)})
        y64 = torch.from_numpy(y.astype(np.float64))
        assert bool(((y64 >= y_lo) & (y64 <= y_hi)).all())
