"""Our CROWN against a small, independent dense CROWN for plain ReLU MLPs (numpy, float64).

The reference reads the weights straight from the ONNX initializers (ACAS Xu: Sub of the mean
image, Flatten, then MatMul/Add/Relu layers) and runs the textbook algorithm with explicit
matrices: for each hidden layer, the pre-activation bounds are interval bounds from the layer
before, tightened by a backward CROWN pass over all earlier layers (on the neurons the
intervals leave unstable, as ours does); unstable ReLUs get the chord as upper line and the
adaptive lower slope (1 when ``u >= -l``, else 0). The objective is each spec row.

With ``real_arithmetic`` (no float-error terms) ours must equal the reference to 1e-5
relative. With the float-error terms (the default, sound for the float32 model) ours may only
be looser, by the error bounds: a few float32 ulps of the magnitudes involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from tests.conftest import ROOT
from verifier.bounds.crown import Crown, CrownConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib

ACAS = ROOT / "benchmarks" / "acasxu"
Layer = tuple[np.ndarray, np.ndarray]  # (W (out, in), b)


def _mlp(path: Path) -> tuple[np.ndarray, list[Layer]]:
    """(mean image to subtract, affine layers) of an ACAS Xu style ONNX file."""
    model = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    mean = np.zeros(1)
    layers: list[Layer] = []
    pending: np.ndarray | None = None
    for node in model.graph.node:
        if node.op_type == "Sub":
            mean = inits[node.input[1]].reshape(-1)
        elif node.op_type == "MatMul":
            pending = inits[node.input[1]].T
        elif node.op_type == "Add":
            assert pending is not None
            layers.append((pending, inits[node.input[1]].reshape(-1)))
            pending = None
        else:
            assert node.op_type in ("Flatten", "Relu"), node.op_type
    return mean, layers


def _backward(c: np.ndarray, layers: list[Layer], pre: list[tuple[np.ndarray, np.ndarray]],
              x_lo: np.ndarray, x_hi: np.ndarray) -> np.ndarray:
    """Lower bounds of ``c @ z_k`` where ``z_k`` is the pre-activation of ``layers[k-1]``,
    ``k = len(layers)``, given pre-activation bounds ``pre`` of the hidden layers before it."""
    a = c.copy()
    bias = a @ layers[-1][1]
    a = a @ layers[-1][0]
    for k in range(len(layers) - 2, -1, -1):
        lo, hi = pre[k]
        unstable = (lo < 0) & (hi > 0)
        upper_slope = np.where(hi <= 0, 0.0, np.where(lo >= 0, 1.0, hi / np.where(unstable, hi - lo, 1.0)))
        upper_bias = np.where(unstable, -upper_slope * lo, 0.0)
        lower_slope = np.where(hi <= 0, 0.0, np.where(lo >= 0, 1.0, (hi >= -lo).astype(float)))
        pos, neg = np.maximum(a, 0), np.minimum(a, 0)
        bias = bias + neg @ upper_bias
        a = pos * lower_slope + neg * upper_slope
        w, b = layers[k]
        bias = bias + a @ b
        a = a @ w
    return bias + np.maximum(a, 0) @ x_lo + np.minimum(a, 0) @ x_hi


def reference_crown(c: np.ndarray, layers: list[Layer], x_lo: np.ndarray, x_hi: np.ndarray) -> np.ndarray:
    """Lower bounds of ``c @ y`` over the box for the MLP ``layers`` (ReLU between them)."""
    pre: list[tuple[np.ndarray, np.ndarray]] = []
    post_lo, post_hi = x_lo, x_hi
    for k in range(len(layers) - 1):
        w, b = layers[k]
        lo = np.maximum(w, 0) @ post_lo + np.minimum(w, 0) @ post_hi + b
        hi = np.maximum(w, 0) @ post_hi + np.minimum(w, 0) @ post_lo + b
        if k > 0:
            rows = np.flatnonzero((lo < 0) & (hi > 0))
            eye = np.eye(len(b))[rows]
            lo[rows] = np.maximum(lo[rows], _backward(eye, layers[: k + 1], pre, x_lo, x_hi))
            hi[rows] = np.minimum(hi[rows], -_backward(-eye, layers[: k + 1], pre, x_lo, x_hi))
        pre.append((lo, hi))
        post_lo, post_hi = np.maximum(lo, 0), np.maximum(hi, 0)
    return _backward(c, layers, pre, x_lo, x_hi)


NETS = ["1_1", "1_9", "2_3", "3_3", "4_5", "5_9"]
PROPS = ["prop_1", "prop_2", "prop_3", "prop_4"]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("prop", PROPS)
def test_crown_equals_dense_reference_on_acasxu(net: str, prop: str) -> None:
    path = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    graph = load_model(path)
    region = parse_vnnlib(ACAS / "vnnlib" / f"{prop}.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    mean, layers = _mlp(path)
    c = np.concatenate([np.eye(5), -np.eye(5), region.clauses[0].C])
    expected = reference_crown(c, layers, lower.numpy().ravel() - mean, upper.numpy().ravel() - mean)

    shape = graph.inputs[0].shape
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    box = [lower.reshape(1, *shape)], [upper.reshape(1, *shape)]
    real = Crown(tgraph, *box, CrownConfig(real_arithmetic=True)).lower_bound(torch.from_numpy(c))[0].numpy()
    scale = 1.0 + np.abs(expected)
    assert np.all(np.abs(real - expected) <= 1e-5 * scale)

    float32 = Crown(tgraph, *box).lower_bound(torch.from_numpy(c))[0].numpy()
    assert np.all(float32 <= real + 1e-12 * scale)
    assert np.all(expected - float32 <= 1e-2 * scale)
