"""CROWN with per-domain refinement rows: on a batch of boxes, each box's bounds equal those
of the box bounded alone (where the union rows and each box's own rows coincide), and the
output bounds contain sampled outputs of the float32 model."""

from __future__ import annotations

import torch

from tests.conftest import ROOT
from verifier.bounds.crown import Crown, CrownConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph


def test_per_domain_rows_match_each_box_alone_and_contain_samples() -> None:
    graph = load_model(ROOT / "benchmarks/acasxu/onnx/ACASXU_run2a_3_5_batch_2000.onnx")
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    model = TorchGraph(graph, "cpu", torch.float32)
    gen = torch.Generator().manual_seed(0)
    boxes = 6
    centres = torch.rand((boxes, 5), generator=gen, dtype=torch.float64) - 0.5
    radii = torch.rand((boxes, 5), generator=gen, dtype=torch.float64) * torch.tensor([0.3, 0.1, 0.03, 0.01, 0.0])
    lower, upper = centres - radii, centres + radii
    shape = graph.inputs[0].shape
    c = torch.randn((3, 5), generator=gen, dtype=torch.float64)
    config = CrownConfig(per_domain_rows=True)
    together = Crown(tgraph, [lower.reshape(boxes, *shape)], [upper.reshape(boxes, *shape)], config)
    rows = together.lower_bound(c)
    out_lo, out_hi = together.output_bounds()
    for k in range(boxes):
        alone = Crown(tgraph, [lower[k : k + 1].reshape(1, *shape)], [upper[k : k + 1].reshape(1, *shape)])
        torch.testing.assert_close(rows[k : k + 1], alone.lower_bound(c), rtol=1e-9, atol=1e-9)
        for name, (lo, hi) in alone.best.items():
            torch.testing.assert_close(together.best[name][0][k : k + 1], lo, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(together.best[name][1][k : k + 1], hi, rtol=1e-9, atol=1e-9)
        x = lower[k] + torch.rand((4000, 5), generator=gen, dtype=torch.float64) * (upper[k] - lower[k])
        y = model.forward_flat(x.float()).double()
        assert (y >= out_lo[k]).all() and (y <= out_hi[k]).all()
        assert (y @ c.T >= rows[k]).all()
