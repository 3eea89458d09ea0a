"""Interval bounds contain 10,000 sampled outputs (onnxruntime and torch) on every bundled model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import one_spec_per_model
from verifier.bounds.interval import interval_bounds
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle

CASES = one_spec_per_model()


@pytest.mark.parametrize(("model", "spec"), CASES, ids=[m.name for m, _ in CASES])
def test_interval_bounds_contain_samples(model: Path, spec: Path) -> None:
    graph = load_model(model)
    bounds_graph = TorchGraph(graph, "cpu", torch.float64)
    eval_graph = TorchGraph(graph, "cpu", torch.float32)
    rng = np.random.default_rng(0)
    for region in parse_vnnlib(spec).regions[:3]:
        lower = torch.from_numpy(region.lower).unsqueeze(0)
        upper = torch.from_numpy(region.upper).unsqueeze(0)
        y_lo, y_hi = interval_bounds(bounds_graph, lower, upper)
        assert torch.isfinite(y_lo).all() and torch.isfinite(y_hi).all()
        width = region.upper - region.lower
        points = region.lower + rng.random((10_000, region.lower.size)) * width
        corners = region.lower + rng.integers(0, 2, size=(256, region.lower.size)) * width
        points = np.concatenate([points, corners]).astype(np.float32)
        outs = eval_graph.forward_flat(torch.from_numpy(points)).double()
        assert (outs >= y_lo).all() and (outs <= y_hi).all()
        oracle = OnnxOracle(model)
        for p in points[:50]:
            y = torch.from_numpy(oracle.run(p))
            assert (y >= y_lo[0]).all() and (y <= y_hi[0]).all()


@pytest.mark.parametrize(("model", "spec"), CASES, ids=[m.name for m, _ in CASES])
def test_point_intervals_contain_onnxruntime_float32_outputs(model: Path, spec: Path) -> None:
    """With lower == upper == x, the bounds only reflect the float-error model: they must
    contain onnxruntime's float32 result (any summation order, fused kernels)."""
    graph = TorchGraph(load_model(model), "cpu", torch.float64)
    oracle = OnnxOracle(model)
    region = parse_vnnlib(spec).regions[0]
    rng = np.random.default_rng(1)
    points = (region.lower + rng.random((20, region.lower.size)) * (region.upper - region.lower)).astype(np.float32)
    x = torch.from_numpy(points.astype(np.float64))
    y_lo, y_hi = interval_bounds(graph, x, x)
    theirs = torch.from_numpy(np.stack([oracle.run(p) for p in points]))
    assert (theirs >= y_lo).all() and (theirs <= y_hi).all()
