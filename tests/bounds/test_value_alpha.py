"""alpha-CROWN on the intermediate bounds themselves (verifier/bounds/value_alpha.py): the bounds
it returns contain the float model's values at sampled points, are never wider than CROWN's, and
on Sigmoid networks are much tighter; a deliberately optimistic bound is caught by the check."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bounds.random_dags import saved_dag_box
from tests.conftest import ROOT
from verifier import region_proof
from verifier.bounds import value_alpha
from verifier.bounds.crown import Crown
from verifier.bounds.objective import crown_rows
from verifier.bounds.table import Bounds
from verifier.bounds.value_alpha import value_alpha_bounds
from verifier.config import AlphaConfig, ScheduleConfig
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Graph
from verifier.problem import proof_box
from verifier.region_proof import RegionProof
from verifier.spec import parse_vnnlib
from verifier.spec.types import Region

SOUNDNESS = ROOT / "benchmarks" / "soundness"
OPTIONS = AlphaConfig(iterations=10, learning_rate=0.2)


def _sampled_values(graph: Graph, lower: torch.Tensor, upper: torch.Tensor, count: int = 3000
                    ) -> dict[str, torch.Tensor]:
    """Every value of the float32 model at uniform points and random corners of the box."""
    rng = np.random.default_rng(0)
    lo, hi = lower.reshape(1, -1).double().numpy(), upper.reshape(1, -1).double().numpy()
    weights = np.concatenate([rng.random((count // 2, lo.shape[1])), rng.integers(0, 2, (count // 2, lo.shape[1]))])
    points = torch.from_numpy(lo + weights * (hi - lo)).float().reshape(-1, *lower.shape[1:])
    with torch.no_grad():
        return {name: v.double().reshape(v.shape[0], -1) for name, v in
                TorchGraph(graph, "cpu", torch.float32).forward_all(points).items()}


def _violations(bounds: dict[str, Bounds], values: dict[str, torch.Tensor], names: list[str]) -> int:
    """Sampled values outside their bounds, over the values ``names``."""
    count = 0
    for name in names:
        lo, hi = (b.reshape(1, -1) for b in bounds[name])
        v = values[name]
        count += int(((v < lo) | (v > hi)).sum())
    return count


@pytest.mark.parametrize("seed", range(1, 24, 2))
def test_value_alpha_bounds_contain_sampled_values_on_random_dags(tmp_path: Path, seed: int) -> None:
    """Random graphs mixing many op types: every tightened bound holds at sampled points and is
    never wider than CROWN's."""
    _, graph, lower, upper = saved_dag_box(tmp_path, seed)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper])
    before = {name: (lo.clone(), hi.clone()) for name, (lo, hi) in crown.bounds.items()}
    bounds, stats = value_alpha_bounds(crown, OPTIONS)
    assert stats.values == sum(1 for _, wanted in crown.refined.values() if wanted.numel())
    names = list(crown.refined)
    assert _violations(bounds, _sampled_values(graph, lower, upper), names) == 0
    for name in names:
        assert (bounds[name][0] >= before[name][0]).all() and (bounds[name][1] <= before[name][1]).all()


def _sigmoid_case(name: str) -> tuple[Graph, torch.Tensor, torch.Tensor]:
    """A Sigmoid MLP of the bundled soundness benchmark and its first region's box."""
    graph = load_model(SOUNDNESS / "onnx" / f"{name}.onnx")
    region = parse_vnnlib(SOUNDNESS / "vnnlib" / f"{name}_unplanted3.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    return graph, lower.reshape(1, *shape), upper.reshape(1, *shape)


def test_value_alpha_tightens_erans_sigmoid_network_and_its_clause_rows() -> None:
    """eran's 6x200 Sigmoid network (idx 4214, eps 0.012; unsat, hard): the refined layers'
    mean width shrinks by over a fifth, every bound still holds at sampled points, and CROWN
    from these bounds raises every clause's best row, most of them above zero (CROWN alone:
    none)."""
    graph = load_model(ROOT / "benchmarks" / "zoo" / "onnx" / "eran__ffnnSIGMOID__Point_6x200.onnx")
    region = parse_vnnlib(ROOT / "tests" / "data" / "eran_mnist_spec_idx_4214_eps_0.01200.vnnlib").regions[0]
    lower, upper = (b.reshape(1, *graph.inputs[0].shape) for b in proof_box(graph, region, torch.device("cpu")))
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    crown = Crown(tgraph, [lower], [upper])
    bounds, stats = value_alpha_bounds(crown, OPTIONS)
    assert stats.width_after < 0.8 * stats.width_before
    assert _violations(bounds, _sampled_values(graph, lower, upper, 1000), list(crown.refined)) == 0
    again = Crown(tgraph, [lower], [upper], prior={k: b for k, b in bounds.items() if k in crown.refined})
    before = [float(crown_rows(crown, clause).max()) for clause in region.clauses]
    after = [float(crown_rows(again, clause).max()) for clause in region.clauses]
    assert all(b < 0 for b in before)
    assert all(a > b for a, b in zip(after, before, strict=True))
    assert sum(a > 0 for a in after) >= 5


def test_an_optimistic_bound_is_caught_by_the_sampling_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: alpha-CROWN's row bounds raised by 0.05 (a planted bug) give
    intermediate bounds that sampled values violate."""
    graph, lower, upper = _sigmoid_case("m10_mlp-4x64_sigmoid_eps0.05")
    real = value_alpha.alpha_lower_bound
    monkeypatch.setattr(value_alpha, "alpha_lower_bound", lambda *args, **kw: real(*args, **kw) + 0.05)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper])
    bounds, _ = value_alpha_bounds(crown, OPTIONS)
    assert _violations(bounds, _sampled_values(graph, lower, upper), list(crown.refined)) > 0


def test_value_alpha_stops_at_the_deadline_keeping_the_bounds_it_has() -> None:
    """An expired deadline tightens nothing and returns CROWN's bounds unchanged."""
    graph, lower, upper = _sigmoid_case("m07_mlp-5x32_sigmoid_eps0.03")
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper])
    bounds, stats = value_alpha_bounds(crown, OPTIONS, Deadline.after(0.0))
    assert stats.values == 0
    assert all(torch.equal(bounds[n][0], crown.bounds[n][0]) and torch.equal(bounds[n][1], crown.bounds[n][1])
               for n in crown.bounds)


def _eran_4214_region() -> Region:
    return parse_vnnlib(ROOT / "tests" / "data" / "eran_mnist_spec_idx_4214_eps_0.01200.vnnlib").regions[0]


def _eran_4214_proof() -> RegionProof:
    graph = load_model(ROOT / "benchmarks" / "zoo" / "onnx" / "eran__ffnnSIGMOID__Point_6x200.onnx")
    return RegionProof(TorchGraph(graph, "cpu", torch.float64), _eran_4214_region())


def test_value_rounds_double_their_steps_until_their_share_of_the_time_is_spent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With bounds that never prove the region (the rounds' own tightening replaced by CROWN's
    bounds as they are), each round asks for twice the last one's steps, and no round begins
    that would not end within the value share of the alpha time."""
    asked: list[int] = []

    def unchanged(crown: Crown, config: AlphaConfig, deadline: object = None,
                  record: object = None) -> tuple[dict[str, Bounds], object]:
        asked.append(config.iterations)
        time.sleep(0.05 * config.iterations / 15)  # a round's time grows with its steps
        return dict(crown.bounds), value_alpha.ValueAlphaStats()

    monkeypatch.setattr(region_proof, "value_alpha_bounds", unchanged)
    proof = _eran_4214_proof()
    monkeypatch.setattr(proof, "_still_open", lambda *args: proof.open)  # the final-row alpha: nothing more
    budget = replace(ScheduleConfig().smooth, value_alpha_share=0.5, joint_alpha=None)
    began = time.monotonic()
    proof.optimise(Deadline.after(16.0), budget, {})
    assert not proof.proven
    assert len(asked) >= 3 and asked == [15 * 2**i for i in range(len(asked))]
    assert time.monotonic() - began < 8.0 + 1.0  # the rounds kept to their share (half of 16 s)


def test_without_a_deadline_one_round_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No deadline (``verify`` without ``--timeout``): one round, not doubling rounds without
    end (each round twice as long as the last, none ever past an infinite share)."""
    asked: list[int] = []

    def unchanged(crown: Crown, config: AlphaConfig, deadline: object = None,
                  record: object = None) -> tuple[dict[str, Bounds], object]:
        asked.append(config.iterations)
        assert len(asked) < 4, "value-alpha rounds without end"
        return dict(crown.bounds), value_alpha.ValueAlphaStats()

    monkeypatch.setattr(region_proof, "value_alpha_bounds", unchanged)
    proof = _eran_4214_proof()
    monkeypatch.setattr(proof, "_still_open", lambda *args: proof.open)
    proof.optimise(Deadline.after(None), replace(ScheduleConfig().smooth, joint_alpha=None), {})
    assert asked == [15]


def test_value_rounds_stop_at_the_round_that_proves_the_region() -> None:
    """eran's Sigmoid idx 4214 (unsat, hard): proven by the rounds and final-row alpha alone
    (CROWN's rows are all negative), after at most two rounds although the share allows more."""
    proof = _eran_4214_proof()
    assert not proof.proven
    stats: dict[str, list[dict[str, float]]] = {}
    assert proof.optimise(Deadline.after(300.0), ScheduleConfig().smooth, stats)
    rounds = stats["value_alpha"]
    assert 1 <= len(rounds) <= 2
    assert all(r["values"] == r["refined"] == 6 for r in rounds)  # every layer tightened each round
    assert rounds[-1]["width_after"] < 0.8 * rounds[0]["width_before"]
    # the proof agrees with the float32 model: no sampled point of the box violates the property
    graph, region = proof.ladder.tgraph.graph, _eran_4214_region()
    lower, upper = (b.reshape(1, *graph.inputs[0].shape) for b in proof_box(graph, region, torch.device("cpu")))
    y = _sampled_values(graph, lower, upper, 2000)[graph.outputs[0].name]
    for clause in region.clauses:
        rows = y @ torch.as_tensor(clause.C).T - torch.as_tensor(clause.d)
        assert bool((rows > 0).any(dim=1).all())
