"""CROWN and alpha-CROWN on every single-node op case of the op tests (the cases that cover
the op registry: elementwise, arithmetic, reductions, affine, convolution, pooling, resizing
and shape ops): bounds over random boxes contain the float32 outputs at sampled points.

Whatever CROWN does with an op (relax it, pass through it, or cut it at its interval bounds),
the bounds must hold; a newly registered op with a case in the op tests is covered here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))

import structural_cases as sc
import structural_helpers as sh

import tests.ops.elementwise_helpers as eh
from tests.ops.test_elementwise_ops import CASES as ELEMENTWISE
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.graph.validate import MIN_OPSET

SAMPLES = 1500


def _loadable(model: onnx.ModelProto, op: str) -> onnx.ModelProto:
    """The model at an opset the loader accepts: a case written for an older opset is moved to
    :data:`MIN_OPSET` when its op has the same signature there (e.g. Clip-6 holds until 10)."""
    entry = model.opset_import[0]
    if entry.version >= MIN_OPSET or op == "Linear":
        return model
    older, oldest = onnx.defs.get_schema(op, entry.version), onnx.defs.get_schema(op, MIN_OPSET)
    assert older.since_version == oldest.since_version, f"{op}-{entry.version} has no opset-{MIN_OPSET} form"
    entry.version = MIN_OPSET
    return model


def _models() -> list[tuple[str, onnx.ModelProto, list[tuple[float, float]]]]:
    """(id, model, value range per graph input) for every case with float inputs and outputs."""
    out = []
    for case in ELEMENTWISE:
        if case.out_type != onnx.TensorProto.FLOAT or not case.float_inputs:
            continue
        ranges = [(spec.low, spec.high) for _, spec in case.dynamic]
        out.append((f"elementwise-{case.id}", _loadable(eh.build_model(case), case.op), ranges))
    for case in sc.CASES:
        if case.op in ("Shape", "Size"):  # outputs that do not depend on the input values
            continue
        ranges = [(-2.0, 2.0) for inp in case.inputs if inp.dynamic]
        out.append((f"structural-{case}", _loadable(sh.onnx_model(case), case.op), ranges))
    return out


MODELS = _models()


@pytest.mark.parametrize(("name", "model", "ranges"), MODELS, ids=[m[0] for m in MODELS])
def test_crown_and_alpha_bounds_contain_sampled_outputs(tmp_path: Path, name: str, model: onnx.ModelProto,
                                                        ranges: list[tuple[float, float]]) -> None:
    path = tmp_path / "case.onnx"
    onnx.save(model, path)
    graph = load_model(path)
    rng = np.random.default_rng(7)
    lowers, uppers = [], []
    for info, (low, high) in zip(graph.inputs, ranges, strict=True):
        a = rng.uniform(low, high, size=(1, *info.shape))
        b = rng.uniform(low, high, size=(1, *info.shape))
        lo, hi = np.minimum(a, b).astype(np.float32), np.maximum(a, b).astype(np.float32)
        lowers.append(torch.from_numpy(lo.astype(np.float64)))
        uppers.append(torch.from_numpy(hi.astype(np.float64)))
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), lowers, uppers)
    y_lo, y_hi = crown.output_bounds()
    m = graph.output_size
    eye = torch.eye(m, dtype=torch.float64)
    both = alpha_lower_bound(crown, torch.cat([eye, -eye]), AlphaConfig(iterations=5))
    a_lo, a_hi = both[:, :m], -both[:, m:]
    assert (a_lo >= y_lo - 1e-9 * (1 + y_lo.abs())).all() and (a_hi <= y_hi + 1e-9 * (1 + y_hi.abs())).all()

    points = []
    for lo, hi in zip(lowers, uppers, strict=True):
        u = torch.from_numpy(rng.random((SAMPLES, *lo.shape[1:])))
        u[SAMPLES // 2:] = (u[SAMPLES // 2:] < 0.5).double()  # corners
        points.append((lo + (hi - lo) * u).float())
    outs = TorchGraph(graph, "cpu", torch.float32).forward(*points)
    assert y_lo.shape == (1, m) and a_lo.shape == (1, m)
    if m == 0:  # an empty output (e.g. an empty slice): nothing more to contain
        return
    y = torch.cat([o.reshape(SAMPLES, -1).double() for o in outs], dim=1)
    finite = torch.isfinite(y)
    assert ((y >= y_lo) | ~finite).all() and ((y <= y_hi) | ~finite).all(), f"{name}: CROWN bound violated"
    assert ((y >= a_lo) | ~finite).all() and ((y <= a_hi) | ~finite).all(), f"{name}: alpha-CROWN bound violated"
