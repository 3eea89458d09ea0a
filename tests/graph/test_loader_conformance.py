"""Every bundled model evaluates like onnxruntime, with and without simplification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import one_spec_per_model
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle

CASES = one_spec_per_model()


def _points(spec_path: Path, count: int, seed: int) -> np.ndarray:
    spec = parse_vnnlib(spec_path)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        region = spec.regions[rng.integers(len(spec.regions))]
        rows.append(region.lower + rng.random(region.lower.shape) * (region.upper - region.lower))
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("simplify", [True, False], ids=["simplified", "raw"])
@pytest.mark.parametrize(("model", "spec"), CASES, ids=[m.name for m, _ in CASES])
def test_evaluation_matches_onnxruntime(model: Path, spec: Path, simplify: bool) -> None:
    graph = load_model(model, simplify=simplify)
    oracle = OnnxOracle(model)
    points = _points(spec, 16, seed=1)
    ours = TorchGraph(graph, "cpu", torch.float32).forward_flat(torch.from_numpy(points)).numpy()
    theirs = np.stack([oracle.run(p) for p in points])
    # float32 results differ by summation order; intermediate values can exceed the outputs
    # by orders of magnitude, hence an absolute tolerance relative to the output scale.
    scale = np.abs(theirs).max() + 1e-6
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=5e-5 * scale)


def test_simplification_merges_affine_ops(root: Path) -> None:
    graph = load_model(root / "benchmarks/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx")
    assert "MatMul" not in graph.op_types() and "Add" not in graph.op_types()
    assert [n.op for n in graph.nodes].count("Linear") == 7
    conv = load_model(root / "specs/onnx/conv_net.onnx")
    assert "BatchNormalization" not in conv.op_types()
    assert "Gemm" not in conv.op_types()
