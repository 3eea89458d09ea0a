"""Interval and CROWN bounds on random DAG networks mixing many ops contain onnxruntime outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.bounds.random_dags import random_dag
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.witness import OnnxOracle, grid_box, snap_into_box


@pytest.mark.parametrize("seed", range(24))
def test_bounds_contain_onnxruntime_outputs(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"dag{seed}.onnx"
    onnx.save(random_dag(seed), path)
    graph = load_model(path)
    shape = graph.inputs[0].shape
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=size)
    radius = rng.uniform(0.01, 1.0)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))  # float32 corners
    lower, upper = (torch.from_numpy(b).unsqueeze(0) for b in box)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    i_lo, i_hi = interval_bounds(tgraph, lower, upper)
    crown = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
    c_lo, c_hi = crown.output_bounds()
    width = box[1] - box[0]
    points = np.concatenate([
        box[0] + rng.random((1500, size)) * width,
        box[0] + rng.integers(0, 2, size=(200, size)) * width,
    ])
    points = np.stack([snap_into_box(p, box[0], box[1], np.dtype(np.float32)) for p in points])
    oracle = OnnxOracle(path)
    outs = torch.from_numpy(np.stack([oracle.run(p) for p in points]))
    for lo, hi in ((i_lo, i_hi), (c_lo, c_hi)):
        assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
        assert (outs >= lo).all() and (outs <= hi).all()
    c = torch.from_numpy(rng.normal(size=(4, 3)))
    rows = crown.lower_bound(c)[0]
    assert ((outs @ c.T) >= rows).all()
