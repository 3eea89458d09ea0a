"""The pipeline's schedule (:class:`verifier.config.StepBudget`): the attacks' budgets and order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.bab.test_cross_check import write_mlp
from tests.bab.test_tighten import _deep_network, _write_spec
from tests.conftest import ROOT
from verifier.api import RegionProof, _Run, verify_problem
from verifier.bab import relu_split
from verifier.config import BabMode, MilpConfig, StepBudget, default_config
from verifier.deadline import Deadline
from verifier.exact.milp import milp_check
from verifier.problem import load_problem
from verifier.result import Status

ACAS = ROOT / "benchmarks" / "acasxu"


@pytest.mark.parametrize(("probe_steps", "quick_steps"), [(5, 20), (3, 10), (7, 7)])
def test_the_probe_and_the_quick_attack_run_their_own_pgd_steps(probe_steps: int, quick_steps: int) -> None:
    # unsat (VNN-COMP's expected verdict) and proven by the first search slice: the probe's
    # round and the quick attack's second round are the only PGD of the run
    problem = load_problem(ACAS / "onnx/ACASXU_run2a_2_2_batch_2000.onnx", ACAS / "vnnlib/prop_4.vnnlib")
    config = default_config("cpu", 0)
    budget = StepBudget(quick_rounds=2, quick_steps=quick_steps, alpha_seconds=0.0, first_search_seconds=30.0,
                        attack_per_search=0.25)
    config = replace(config, schedule=replace(config.schedule, input=budget, probe_steps=probe_steps))
    result = verify_problem(problem, 60.0, config)
    assert result.status is Status.UNSAT
    assert result.stats["pgd_steps"] == probe_steps + quick_steps


def test_the_probe_attack_runs_before_crown() -> None:
    """ACAS Xu 2_1 property 2 (sat in VNN-COMP's expected.csv): the probe's first round finds
    the counterexample, so no CROWN pass is spent (no "crown" time in the statistics)."""
    problem = load_problem(ACAS / "onnx/ACASXU_run2a_2_1_batch_2000.onnx", ACAS / "vnnlib/prop_2.vnnlib")
    result = verify_problem(problem, 60.0, default_config("cpu", 0))
    assert result.status is Status.SAT
    seconds = result.stats["seconds"]
    assert "probe attack" in seconds and "crown" not in seconds, seconds


def test_fixed_pixels_one_rounding_step_wide_do_not_count_as_free_inputs() -> None:
    """dist_shift index 3187 (unsat in VNN-COMP's expected.csv): 8 latent inputs are free and 173
    pixels are intervals about 1e-16 wide. Counted as 181 free inputs, the run went to ReLU
    splitting, which cannot finish past the network's Sigmoid (timeout at 60 s); with 8, input
    splitting proves it. Its boxes are bounded in forward mode with smear branching (the
    Sigmoid's every position would need a backward pass in every box)."""
    problem = load_problem(ROOT / "benchmarks" / "zoo" / "onnx" / "dist_shift__mnist_concat.onnx",
                           ROOT / "tests" / "data" / "dist_shift_index3187_delta0.13.vnnlib")
    result = verify_problem(problem, 60.0, default_config("cpu", 0))
    assert result.stats["bab_mode"] == "input"
    assert result.stats["bab_bounds"] == "forward, smear"
    assert result.status is Status.UNSAT


def test_a_search_that_stops_short_of_the_deadline_for_time_answers_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReLU-split search does not begin a round that would end past the deadline, so it can stop
    a little before it: the run is then out of time, answered TIMEOUT naming the search, not
    UNKNOWN (which says the methods gave up). MNIST 256x4 prop_2 at eps 0.05 (unsat in
    expected.csv, far from proven in seconds); the rule is forced to stop every call after its
    first round, so the search's last call ends well before the deadline."""
    monkeypatch.setattr(relu_split, "_fits", lambda deadline, seconds, first: first and not deadline.expired())
    mnist = ROOT / "benchmarks" / "mnist_fc"
    problem = load_problem(mnist / "onnx/mnist-net_256x4.onnx", mnist / "vnnlib/prop_2_0.05.vnnlib")
    result = verify_problem(problem, 20.0, default_config("cpu", 0))
    assert result.status is Status.TIMEOUT, result.stats
    assert result.stats["stopped_in"] == "search", result.stats


@pytest.mark.parametrize("seed", range(3))
def test_a_later_relu_slice_with_few_unstable_neurons_goes_to_the_milp_engine(tmp_path: Path, seed: int) -> None:
    """In ReLU-split mode a later search slice on a region with at most ``milp_max_unstable``
    unstable neurons runs the MILP engine (HiGHS), not the SMT one, and its verdict agrees with
    a direct MILP check of the region."""
    model, spec = tmp_path / "deep.onnx", tmp_path / "deep.vnnlib"
    _write_spec(_deep_network(seed, model), spec)
    problem = load_problem(model, spec)
    config = replace(default_config("cpu", 0), bab=BabMode.RELU, milp_max_unstable=1000)
    run = _Run(problem, config, Deadline.after(60))
    region = run.problem.spec.regions[0]
    proof = RegionProof(run.bounds_graph, region)
    assert proof.crown is not None and not proof.proven  # these seeds' regions need a search
    status = run.branch_and_bound(0, region, proof, Deadline.after(60), first=False)
    assert [record["engine"] for record in run.stats["exact"]] == ["milp-highs"]
    exact = milp_check(proof.crown.table, region.clauses, MilpConfig(time_limit=60)).status
    assert status is exact or (exact is Status.SAT and status is Status.UNKNOWN)


@pytest.mark.parametrize(("activation", "kind"), [("Relu", "relu"), ("Sigmoid", "smooth"), ("Relu,Sigmoid", "mixed"),
                                                  ("Tanh,Relu", "mixed")])
def test_the_budget_follows_the_networks_neurons(tmp_path: Path, activation: str, kind: str) -> None:
    """ReLU-like neurons only: ``relu``; none: ``smooth``; both (a network searched by ReLU
    splits, then general ones): ``mixed``, whose alpha-CROWN step tightens the intermediate
    bounds value by value first."""
    model, spec = tmp_path / "net.onnx", tmp_path / "net.vnnlib"
    write_mlp(model, [6, 12, 12, 12, 2], np.random.default_rng(4), "net", activation, gain=2.0)
    spec.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(6)) + "(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n" + "".join(f"(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n"
                                                           for i in range(6)) + "(assert (>= Y_0 Y_1))\n")
    run = _Run(load_problem(model, spec), replace(default_config("cpu", 0), bab=BabMode.RELU), Deadline.after(60))
    proof = RegionProof(run.bounds_graph, run.problem.spec.regions[0])
    assert run.budget(proof) is getattr(run.schedule, kind)
    assert (run.budget(proof).value_alpha is not None) is (kind in ("smooth", "mixed"))
