"""Bounding several boxes in one batch is at least as tight as bounding each alone.

(A batch refines the union of the neurons that are unstable in any of its boxes, so a box
can get more refined intermediate bounds than it would alone; intervals are identical.)"""

from __future__ import annotations

import torch

from tests.conftest import ROOT
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph


def test_batched_boxes_match_single_boxes() -> None:
    graph = load_model(ROOT / "benchmarks/acasxu/onnx/ACASXU_run2a_2_4_batch_2000.onnx")
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    gen = torch.Generator().manual_seed(0)
    centres = torch.rand((4, 5), generator=gen, dtype=torch.float64) - 0.5
    radii = torch.rand((4, 1), generator=gen, dtype=torch.float64) * 0.2
    lower, upper = centres - radii, centres + radii
    shape = graph.inputs[0].shape
    c = torch.randn((3, 5), generator=gen, dtype=torch.float64)
    together = Crown(tgraph, [lower.reshape(4, *shape)], [upper.reshape(4, *shape)])
    rows = together.lower_bound(c)
    out_lo, out_hi = together.output_bounds()
    i_lo, i_hi = interval_bounds(tgraph, lower, upper)
    for k in range(4):
        alone = Crown(tgraph, [lower[k : k + 1].reshape(1, *shape)], [upper[k : k + 1].reshape(1, *shape)])
        single = alone.lower_bound(c)
        assert (rows[k : k + 1] >= single - 1e-9).all()
        assert (rows[k : k + 1] - single).abs().max() < 1e-2 * (1 + single.abs().max())
        lo, hi = alone.output_bounds()
        assert (out_lo[k : k + 1] >= lo - 1e-9).all() and (out_hi[k : k + 1] <= hi + 1e-9).all()
        s_lo, s_hi = interval_bounds(tgraph, lower[k : k + 1], upper[k : k + 1])
        torch.testing.assert_close(i_lo[k : k + 1], s_lo)
        torch.testing.assert_close(i_hi[k : k + 1], s_hi)
