"""Refining passes that end at exact forward forms (``CrownConfig.form_end_inputs``,
:func:`verifier.bounds.forward.rows_through_form`) against independent oracles: onnxruntime
and float32 evaluation at sampled points, on random DAGs, small convolutional networks (rows
kept as windows reach the forms), ACAS Xu sub-boxes and boxes with fixed inputs (dist_shift's
shape). The bounds must also match the passes that walk on to the inputs up to rounding
margins (also where branches from the input meet again: the ended parts are concretised
together). A form ending that takes the forms at ``t = 0`` is caught by the sampling check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import verifier.bounds.backward as backward_module
from tests.bounds.random_dags import saved_dag_box
from tests.bounds.test_forward import _acas_box, _sample, _violations
from tests.bounds.test_windows import _conv_net
from verifier.bounds.crown import Crown, CrownConfig
from verifier.bounds.forward import Form, make_form, rows_through_form
from verifier.bounds.windows import Windows
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.witness import OnnxOracle, snap_into_box

WALK = CrownConfig(form_end_inputs=0)


def _outputs_contained(path: Path, lower: torch.Tensor, upper: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor],
                       seed: int) -> bool:
    """Whether onnxruntime's outputs at sampled points and corners of the box lie in ``bounds``."""
    rng = np.random.default_rng(seed)
    lo, hi = lower.reshape(-1).numpy(), upper.reshape(-1).numpy()
    points = np.concatenate([lo + rng.random((600, lo.size)) * (hi - lo),
                             lo + rng.integers(0, 2, size=(200, lo.size)) * (hi - lo)])
    points = np.stack([snap_into_box(p, lo, hi, np.dtype(np.float32)) for p in points])
    oracle = OnnxOracle(path)
    outs = torch.from_numpy(np.stack([oracle.run(p) for p in points]))
    return bool(((outs >= bounds[0]) & (outs <= bounds[1])).all())


def _close(ended: tuple[torch.Tensor, torch.Tensor], walked: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """The two bounds agree up to float margins (the forms widen each node by its float32
    error where the walk subtracts it per row: relative 3e-5 of their magnitude)."""
    scale = 1.0 + torch.maximum(walked[0].abs(), walked[1].abs())
    return all(bool(((e - w).abs() <= 3e-5 * scale).all()) for e, w in zip(ended, walked, strict=True))


@pytest.mark.parametrize("seed", range(24))
def test_ended_passes_contain_onnxruntime_on_random_dags(tmp_path: Path, seed: int) -> None:
    path, graph, lower, upper = saved_dag_box(tmp_path, seed)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    ended = Crown(tgraph, [lower], [upper])
    bounds = ended.output_bounds()
    assert _outputs_contained(path, lower, upper, bounds, seed)
    assert _close(bounds, Crown(tgraph, [lower], [upper], WALK).output_bounds())


@pytest.mark.parametrize("seed", range(4))
def test_window_rows_end_at_forms_and_contain_samples(tmp_path: Path, seed: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Conv -> Conv -> BN before the first ReLU: rows seeded on later feature maps arrive at
    the batch normalisation's output as windows and end there."""
    path = tmp_path / "conv.onnx"
    onnx.save(_conv_net(seed), path)
    graph = load_model(path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    centre = np.random.default_rng(seed).normal(size=(1, 1, 2, 4, 4))
    lower, upper = (torch.from_numpy(b.astype(np.float32).astype(np.float64)) for b in (centre - 0.3, centre + 0.3))
    kinds: list[str] = []
    honest = backward_module.rows_through_form

    def noting(rows: torch.Tensor | Windows, form: Form, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        kinds.append(type(rows).__name__)
        return honest(rows, form, parts)

    monkeypatch.setattr(backward_module, "rows_through_form", noting)
    crown = Crown(tgraph, [lower], [upper], CrownConfig(windows=True))
    assert {"x", "c00", "n0"} <= set(crown.ends) and "r0" not in crown.ends and "Windows" in kinds
    bounds = crown.output_bounds()
    assert _outputs_contained(path, lower, upper, bounds, seed)
    assert _close(bounds, Crown(tgraph, [lower], [upper], WALK).output_bounds())
    assert _violations(crown, tgraph, _sample(lower, upper, 600, seed)) == []


@pytest.mark.parametrize("net", ["1_1", "3_3"])
@pytest.mark.parametrize("fixed", [False, True])
def test_ended_intermediate_bounds_hold_on_acasxu(net: str, fixed: bool) -> None:
    """Every value's bounds contain its float32 evaluation at sampled points; ``fixed``: three
    of the five inputs fixed to a point (the forms keep two columns)."""
    tgraph, lower, upper = _acas_box(net, "prop_2", 0.1, seed=3)
    if fixed:
        upper = upper.clone()
        upper[..., :3] = lower[..., :3]
    crown = Crown(tgraph, [lower], [upper])
    assert crown.ends and crown.prefix is not None and crown.prefix.n == (2 if fixed else 5)
    assert _violations(crown, tgraph, _sample(lower, upper, 4000, 9)) == []
    walked = Crown(tgraph, [lower], [upper], WALK)
    assert not walked.ends
    for name, (lo, hi) in crown.bounds.items():
        assert _close((lo, hi), walked.bounds[name]), name


def test_many_free_inputs_keep_walking() -> None:
    """Above ``form_end_inputs`` free positions no forms are built: the passes walk on."""
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 0.1, seed=3)
    assert not Crown(tgraph, [lower], [upper], CrownConfig(form_end_inputs=4)).ends


def test_an_ending_at_the_forms_centre_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampling check can fail: an ending that takes each form at ``t = 0`` (no
    coefficients on ``t``) gives intermediate bounds that sampled evaluations leave."""
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 0.5, seed=1)
    honest = backward_module.rows_through_form

    def centre_only(rows: torch.Tensor | Windows, form: Form, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
        columns, bias = honest(rows, form, parts)
        return torch.zeros_like(columns), bias

    monkeypatch.setattr(backward_module, "rows_through_form", centre_only)
    crown = Crown(tgraph, [lower], [upper])
    assert _violations(crown, tgraph, _sample(lower, upper, 4000, 9)) != []


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 7)])
def test_window_rows_through_a_form_equal_dense_rows(size: tuple[int, int]) -> None:
    """Windows small enough are read at their windows, large ones go dense: either way the same
    coefficients, bias and margin as the dense rows, also for windows sticking out of the map."""
    gen = torch.Generator().manual_seed(size[0])
    shape, rows, n = (1, 3, 9, 8), 11, 2
    m = 3 * 9 * 8
    coefficients = torch.randn(2, n, m, generator=gen, dtype=torch.float64)
    low = torch.randn(2, m, generator=gen, dtype=torch.float64)
    form = make_form(coefficients, low, coefficients, low + torch.rand(2, m, generator=gen, dtype=torch.float64))
    origin = torch.stack([torch.randint(1 - size[0], 9, (rows,), generator=gen),
                          torch.randint(1 - size[1], 8, (rows,), generator=gen)], dim=1)
    windows = Windows(torch.randn(2, rows, 3, *size, generator=gen, dtype=torch.float64), origin, shape).masked()
    got, expected = rows_through_form(windows, form, 1), rows_through_form(windows.dense(), form, 1)
    for g, e in zip(got, expected, strict=True):
        assert torch.allclose(g, e, rtol=1e-12, atol=1e-12)
