"""Hybrid intermediate bounds (forward-mode forms intersected with backward refinement) and the
time-limited refinement (:attr:`CrownConfig.refine_seconds`), checked against float32
evaluation at sampled points of every value and onnxruntime: over every single-input op case of
the registry, random DAGs and ACAS Xu sub-boxes, with the refinement cut after its first pass
of a few rows (the rows left keep their forms' or interval bounds). A refinement that moves
bounds inward is caught by the same check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import verifier.bounds.crown as crown_module
from tests.bounds.random_dags import random_dag
from tests.bounds.test_forward import SINGLE_INPUT, _acas_box, _sample, _violations, registry_case_box
from verifier.bounds.crown import Crown, CrownConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.witness import OnnxOracle, grid_box, snap_into_box

HYBRID = CrownConfig(intermediate_method="hybrid")
CUT = CrownConfig(intermediate_method="hybrid", refine_seconds=60.0, max_rows=3)


@pytest.fixture
def first_pass_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refinement stops after its first pass (as a spent budget would), whatever the clock."""
    monkeypatch.setattr(crown_module, "_overruns", lambda began, allowance, done, rows, earlier: done > 0)


@pytest.mark.parametrize(("name", "model", "ranges"), SINGLE_INPUT, ids=[m[0] for m in SINGLE_INPUT])
def test_cut_hybrid_bounds_of_every_value_contain_samples(tmp_path: Path, name: str, model: onnx.ModelProto,
                                                              ranges: list[tuple[float, float]],
                                                              first_pass_only: None) -> None:
    graph, lower, upper = registry_case_box(tmp_path, model, ranges, seed=13)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    crown = Crown(tgraph, [lower], [upper], CUT)  # hybrid, each refinement cut after 3 rows
    assert _violations(crown, tgraph, _sample(lower, upper, 600, 5)) == [], name


@pytest.mark.parametrize("seed", range(8))
def test_cut_refinement_contains_onnxruntime_on_random_dags(tmp_path: Path, seed: int, first_pass_only: None) -> None:
    path = tmp_path / f"dag{seed}.onnx"
    onnx.save(random_dag(seed), path)
    graph = load_model(path)
    size = graph.inputs[0].size
    rng = np.random.default_rng(seed + 100)
    centre, radius = rng.normal(size=size), rng.uniform(0.01, 1.0)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, *graph.inputs[0].shape) for b in box)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper], CUT)
    c_lo, c_hi = crown.output_bounds()
    width = box[1] - box[0]
    points = np.concatenate([box[0] + rng.random((600, size)) * width,
                             box[0] + rng.integers(0, 2, size=(200, size)) * width])
    points = np.stack([snap_into_box(p, box[0], box[1], np.dtype(np.float32)) for p in points])
    outs = torch.from_numpy(np.stack([OnnxOracle(path).run(p) for p in points]))
    assert (outs >= c_lo).all() and (outs <= c_hi).all()


@pytest.mark.parametrize("net", ["1_1", "3_3"])
@pytest.mark.parametrize("fraction", [1.0, 0.05])
def test_hybrid_bounds_of_every_value_contain_samples_on_acasxu(net: str, fraction: float) -> None:
    """Every hidden value's hybrid bounds contain sampled float32 values. (Neither forward nor
    backward mode's bounds contain them everywhere: the adaptive lower slopes follow the
    bounds, so tighter bounds upstream can give a different, not a uniformly better,
    relaxation downstream; ``benchmarks/bound_widths.py`` compares the output bounds.)"""
    tgraph, lower, upper = _acas_box(net, "prop_2", fraction, seed=int(fraction * 100) + 1)
    hybrid = Crown(tgraph, [lower], [upper], HYBRID)
    assert _violations(hybrid, tgraph, _sample(lower, upper, 4000, 7)) == []


def test_cut_refinement_keeps_the_most_unstable_rows_and_stays_sound(first_pass_only: None) -> None:
    """With the refinement cut after one pass of 3 rows, each refined value records exactly
    those rows, the 3 of largest ``min(-l, u)`` under the bounds it started from, and the
    bounds of every value still contain sampled float32 values."""
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 1.0, seed=3)
    crown = Crown(tgraph, [lower], [upper], CUT)
    assert crown.refined and all(rows.numel() <= 3 for _, rows in crown.refined.values())
    assert _violations(crown, tgraph, _sample(lower, upper, 4000, 8)) == []
    unrefined = Crown(tgraph, [lower], [upper], CrownConfig(intermediate_method="forward"))
    first = next(iter(crown.refined))  # its starting bounds are the forms' (nothing before it was refined)
    lo, hi = (b.flatten(1)[0] for b in unrefined.bounds[first])
    unstable = torch.nonzero((lo < 0) & (hi > 0)).flatten()
    score = torch.minimum(-lo[unstable], hi[unstable])
    expected = unstable[torch.argsort(-score, stable=True)[:3]]
    assert torch.equal(crown.refined[first][1], expected)


def test_no_budget_left_means_no_refinement() -> None:
    """``refine_seconds=0``: no backward pass; hybrid bounds are then the forms' exactly."""
    tgraph, lower, upper = _acas_box("3_3", "prop_2", 0.05, seed=4)
    spent = Crown(tgraph, [lower], [upper], CrownConfig(intermediate_method="hybrid", refine_seconds=0.0))
    forms = Crown(tgraph, [lower], [upper], CrownConfig(intermediate_method="forward"))
    assert all(rows.numel() == 0 for _, rows in spent.refined.values())
    for name, (lo, hi) in spent.bounds.items():
        assert torch.equal(lo, forms.bounds[name][0]) and torch.equal(hi, forms.bounds[name][1])


def test_a_refinement_that_moves_bounds_inward_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampling check above can fail: refined rows whose lower bounds are raised by 0.5
    (and upper bounds lowered alike) are reported."""
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 1.0, seed=3)
    honest = Crown._lower

    def inward(self: Crown, seeds, stop, mult, rows_of=None):  # type: ignore[no-untyped-def]
        found = honest(self, seeds, stop, mult, rows_of)
        return found + 0.5 if rows_of is not None else found

    monkeypatch.setattr(Crown, "_lower", inward)
    crown = Crown(tgraph, [lower], [upper], HYBRID)
    assert _violations(crown, tgraph, _sample(lower, upper, 4000, 8)) != []
