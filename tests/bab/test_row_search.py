"""Batched search for certified lower bounds of many single rows (verifier/bab/row_search.py).

Oracles: the MILP engine (HiGHS: no input of the box takes a row below its certified bound,
and a refuted row is positive on the whole box) and sampling (float32 values at random points
and corners never fall below a bound). Each is shown to fail on overstated bounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bab.test_tighten import _deep_network, _points
from verifier.bab import relu_bounding
from verifier.bab.relu_domains import splittable_layers
from verifier.bab.row_search import RowSearchStats, _RowSearch, row_lower_bounds
from verifier.bounds.crown import Crown, CrownConfig
from verifier.config import MilpConfig, TightenConfig
from verifier.deadline import Deadline
from verifier.exact.milp import milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.result import Status
from verifier.spec.types import Clause

CONFIG = TightenConfig(domains_per_bound=64)


def _layer_rows(tmp_path: Path, seed: int, depth: int) -> tuple[TorchGraph, Crown, torch.Tensor, torch.Tensor]:
    """A random deep network cut at its ``depth``-th splittable layer's pre-activations, CROWN
    over its region's box (the prior bounds), and the rows searched: ``+e_j`` and ``-e_j``
    for every neuron of the layer and two random dense rows; also float32 cut values at
    24,000 sampled points."""
    path = tmp_path / f"deep{seed}.onnx"
    region = _deep_network(seed, path)
    graph = load_model(path)
    full = TorchGraph(graph, "cpu", torch.float64)
    value = splittable_layers(full)[depth].value
    cut = TorchGraph(graph.cut_at(value), "cpu", torch.float64)
    shape = graph.inputs[0].shape
    lower = torch.from_numpy(region.lower).reshape(1, *shape)
    upper = torch.from_numpy(region.upper).reshape(1, *shape)
    crown = Crown(cut, [lower], [upper], CrownConfig())
    size = cut.graph.outputs[0].size
    eye = torch.eye(size, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    rows = torch.cat([eye, -eye, torch.from_numpy(rng.normal(size=(2, size)))])
    sampled = TorchGraph(cut.graph, "cpu", torch.float32).forward_flat(_points(region, seed)).double()
    return cut, crown, rows, sampled @ rows.T


def _search(cut: TorchGraph, crown: Crown, rows: torch.Tensor) -> torch.Tensor:
    lower, upper = crown.input_bounds[cut.graph.inputs[0].name]
    shape = cut.graph.inputs[0].shape
    bounds, _ = row_lower_bounds(cut, lower.reshape(1, *shape), upper.reshape(1, *shape), crown.bounds, rows,
                                 Deadline.after(60), CONFIG)
    return bounds


def _milp_below(crown: Crown, row: torch.Tensor, threshold: float) -> Status:
    """The MILP engine on ``row . y <= threshold`` over the cut's box."""
    clause = Clause(row.numpy().reshape(1, -1), np.array([threshold]), np.zeros(1, dtype=bool))
    return milp_check(crown.table, [clause], MilpConfig(time_limit=30)).status


def _milp_contradictions(crown: Crown, rows: torch.Tensor, bounds: torch.Tensor) -> int:
    """Rows whose bound the MILP engine refutes: a point with ``row . y`` below the bound
    (minus a relative 1e-4), or at most 0 where the row is claimed positive (bound inf)."""
    wrong = 0
    for row, bound in zip(rows, bounds.tolist(), strict=True):
        if bound == -np.inf:
            continue
        threshold = 0.0 if bound == np.inf else bound - 1e-4 * (1 + abs(bound))
        wrong += _milp_below(crown, row, threshold) is Status.SAT
    return wrong


@pytest.mark.parametrize("seed", range(4))
def test_row_bounds_agree_with_milp_and_samples(tmp_path: Path, seed: int) -> None:
    """On random deep networks cut at their third layer: no row's certified bound is
    contradicted by the MILP engine or by a sampled value; a refuted row is positive at every
    sample and the MILP engine finds no point where it is <= 0; and the search is not vacuous
    (across the rows, some refuted and some with a finite bound above CROWN's)."""
    cut, crown, rows, values = _layer_rows(tmp_path, seed, 2)
    bounds = _search(cut, crown, rows)
    assert _milp_contradictions(crown, rows, bounds) == 0
    finite = torch.isfinite(bounds)
    assert bool((values.min(dim=0).values[finite] >= bounds[finite] - 1e-9).all())
    refuted = bounds == torch.inf
    assert bool((values[:, refuted] > 0).all())
    for row in rows[refuted]:
        assert _milp_below(crown, row, 0.0) is Status.UNSAT
    plain = crown.lower_bound(rows)[0]
    assert int(refuted.sum()) + int((bounds[finite] > plain[finite] + 1e-6).sum()) > 0


def test_overstated_bounds_are_caught_by_milp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The MILP oracle can fail: every bound that beta-CROWN computes overstated by 0.5 gives
    row bounds the MILP engine contradicts."""
    honest = relu_bounding._BetaBounder.spec_rows

    def overstated(self: relu_bounding._BetaBounder, *args: object) -> torch.Tensor:
        return honest(self, *args) + 0.5  # type: ignore[arg-type]

    monkeypatch.setattr(relu_bounding._BetaBounder, "spec_rows", overstated)
    caught = 0
    for seed in range(2):
        cut, crown, rows, _ = _layer_rows(tmp_path, seed, 2)
        caught += _milp_contradictions(crown, rows, _search(cut, crown, rows))
    assert caught > 0


def test_rows_whose_roots_are_not_bounded_in_time_stay_unknown(tmp_path: Path) -> None:
    """A deadline already passed: no root is bounded, every row's bound is -inf (never +inf,
    which would claim the row positive)."""
    cut, crown, rows, _ = _layer_rows(tmp_path, 0, 2)
    lower, upper = crown.input_bounds[cut.graph.inputs[0].name]
    shape = cut.graph.inputs[0].shape
    bounds, stats = row_lower_bounds(cut, lower.reshape(1, *shape), upper.reshape(1, *shape), crown.bounds, rows,
                                     Deadline.after(0.0), CONFIG)
    assert bool((bounds == -torch.inf).all()) and stats.domains_bounded == 0


@pytest.mark.parametrize(("now", "bounds", "pays"), [
    (5.0, [-0.9, -0.9, -0.9], True),  # the window of 10 s has not passed
    (10.0, [-0.4, -0.6, -0.3], True),  # the median row's bound shrank to 0.4 of itself
    (10.0, [-0.9, -0.8, -0.7], False),  # to 0.8: stalled, nothing refuted
    (10.0, [torch.inf, torch.inf, -0.9], False),  # two refuted in 10 s: one per 5 s, fewer than one per 4 s
    (10.0, [torch.inf, torch.inf, torch.inf], True),  # three in 10 s: pays
])
def test_the_payoff_rule_weighs_refuted_rows_and_bound_progress(now: float, bounds: list[float], pays: bool) -> None:
    """A window of ``probe_seconds`` pays when it refuted a row per ``seconds_per_stable`` or
    brought the median open row's bound to ``gap_ratio`` of itself; the next window starts
    where it was checked."""
    config = TightenConfig(probe_seconds=10.0, seconds_per_stable=4.0, gap_ratio=0.5)
    search = _RowSearch(None, None, 3, config, RowSearchStats())  # type: ignore[arg-type]
    search.window = (0.0, torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64))
    search.bounds = lambda: torch.tensor(bounds, dtype=torch.float64)  # type: ignore[method-assign]
    assert search._pays(now) is pays
    assert search.window[0] == (0.0 if now < 10.0 else now)
