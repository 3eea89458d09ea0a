"""ReLU-split branch and bound with beta-CROWN.

Oracles: sampling (the bounds of a split domain hold on every sampled input whose float
pre-activations satisfy the splits), onnxruntime (every sat is confirmed) and expected.csv of
the bundled MNIST benchmark. The random-network cross-check against MILP and SMT is in
test_cross_check.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bab.test_cross_check import _network
from tests.conftest import ROOT, recording_confirm
from verifier.api import RegionProof
from verifier.bab import ReluSplitSearch, relu_split_search
from verifier.bab import relu_split as rs
from verifier.config import ReluBranching, ReluSplitConfig
from verifier.deadline import Deadline
from verifier.exact.milp import MilpConfig, milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness

MNIST = ROOT / "benchmarks" / "mnist_fc"


def _setup(path: Path, region: Region) -> tuple[TorchGraph, RegionProof]:
    bounds = TorchGraph(load_model(path), "cpu", torch.float64)
    return bounds, RegionProof(bounds, region)


@pytest.mark.parametrize("seed", range(8))
def test_beta_bounds_of_split_domains_hold_on_samples_satisfying_the_splits(tmp_path: Path, seed: int) -> None:
    """Splits of random unstable neurons (on the side of a random point); alpha and beta optimised;
    every sampled input whose float32 pre-activations satisfy the splits has spec rows above the
    certified bound."""
    path = tmp_path / "net.onnx"
    region, _ = _network(seed, path)
    bounds, proof = _setup(path, region)
    assert proof.crown is not None  # intervals leave every one of these seeds open
    layers = rs.splittable_layers(bounds)
    clause = region.clauses[0]
    lo, hi = proof.crown.input_bounds[bounds.graph.inputs[0].name]
    bounder = rs._BetaBounder(bounds, layers, lo.reshape(1, -1), hi.reshape(1, -1), [clause], ReluSplitConfig())
    domains = rs._root(bounds, layers, proof.crown, 1, clause.num_rows)
    rng = np.random.default_rng(seed)
    coefficients: dict[str, torch.Tensor] = {}
    # split sides from the pre-activations of a random point, so the domain is not empty
    attack = TorchGraph(bounds.graph, "cpu", torch.float32)
    x0 = torch.from_numpy(region.lower + rng.random(region.lower.size) * (region.upper - region.lower)).float()
    at_x0 = attack.forward_all(x0.reshape(1, *bounds.graph.inputs[0].shape))
    sides = torch.cat([at_x0[layer.value].reshape(-1) for layer in layers])
    for _ in range(3):  # three random splits of unstable neurons, random sides
        unstable = torch.nonzero(torch.cat([
            ((domains.bounds[x.value][0] < 0) & (domains.bounds[x.value][1] > 0) & (domains.split[x.node] == 0))[0]
            for x in layers])).flatten()
        if unstable.numel() == 0:
            break
        neuron = unstable[int(rng.integers(unstable.numel()))].reshape(1)
        domains = rs._apply_split(domains, layers, neuron, 1 if float(sides[neuron]) >= 0 else -1, coefficients)
        bounded = bounder(domains, 30, Deadline(None))
        coefficients = bounded.coefficients
        domains = rs._Domains(bounded.bounds, domains.split, bounded.alpha, bounded.beta, domains.open,
                              domains.hardness)
    bound = bounder(domains, 30, Deadline(None)).rows[0, 0, : clause.num_rows]
    # sample, keep the inputs on the split side of every split neuron (float32 execution)
    x = torch.from_numpy(region.lower + rng.random((40000, region.lower.size)) * (region.upper - region.lower)).float()
    values = attack.forward_all(x.reshape(-1, *bounds.graph.inputs[0].shape))
    inside = torch.ones(x.shape[0], dtype=torch.bool)
    for layer in layers:
        sign = domains.split[layer.node][0].float()
        pre = values[layer.value].reshape(x.shape[0], -1)
        inside &= ((sign * pre) >= 0).all(dim=1)
    y = values[bounds.graph.outputs[0].name].reshape(x.shape[0], -1).double()[inside]
    rows = y @ torch.as_tensor(clause.C).T - torch.as_tensor(clause.d)
    assert rows.shape[0] >= 20  # the split domain is not (nearly) empty: the check has teeth
    assert bool((rows.min(dim=0).values >= bound - 1e-6).all()), (rows.min(dim=0).values, bound)
    # the multipliers only ever help: the bound with them is no worse than with beta = 0
    zero = rs._Domains(domains.bounds, domains.split, domains.alpha,
                       {k: torch.zeros_like(v) for k, v in domains.beta.items()}, domains.open, domains.hardness)
    assert bool((bound >= bounder.quick(zero)[0, 0, : clause.num_rows] - 1e-9).all())


def _mnist(net: str, prop: str, seconds: float, config: ReluSplitConfig) -> tuple[str, list[np.ndarray], bool]:
    path = MNIST / "onnx" / f"mnist-net_{net}.onnx"
    region = parse_vnnlib(MNIST / "vnnlib" / f"{prop}.vnnlib").regions[0]
    bounds, proof = _setup(path, region)
    attack = TorchGraph(bounds.graph, "cpu", torch.float32)
    optimised = proof.optimise(Deadline.after(2.0))
    confirm, confirmed = recording_confirm(path, region)

    assert proof.crown is not None
    outcome = relu_split_search(bounds, attack, region, proof.open, proof.crown, confirm,
                                Deadline.after(seconds), config)
    return outcome.status, confirmed, optimised


@pytest.mark.parametrize("branching", ["fsb", "babsr"])
def test_proves_mnist_instance_that_alpha_crown_leaves_open(branching: str) -> None:
    """256x2 prop_8 at eps 0.03 is unsat in expected.csv and alpha-CROWN alone leaves it open."""
    status, confirmed, optimised = _mnist("256x2", "prop_8_0.03", 120, ReluSplitConfig(branching=branching))
    assert not optimised
    assert status == "unsat" and not confirmed


def test_a_search_run_in_short_slices_resumes_and_proves(monkeypatch: pytest.MonkeyPatch) -> None:
    """256x2 prop_8 at eps 0.03 (unsat in expected.csv) searched in slices of 0.2 s: every
    slice but the last times out, each open clause's root domain is bounded once in all (later
    slices continue with the domains left, they do not start again) and the slices together
    prove it."""
    path = MNIST / "onnx" / "mnist-net_256x2.onnx"
    region = parse_vnnlib(MNIST / "vnnlib" / "prop_8_0.03.vnnlib").regions[0]
    bounds, proof = _setup(path, region)
    attack = TorchGraph(bounds.graph, "cpu", torch.float32)
    proof.optimise(Deadline.after(2.0))
    assert proof.crown is not None and proof.open
    roots = []
    original = rs._root
    monkeypatch.setattr(rs, "_root", lambda *args: roots.append(1) or original(*args))
    confirm, confirmed = recording_confirm(path, region)
    search = ReluSplitSearch(bounds, attack, region, proof.open, proof.crown, confirm, ReluSplitConfig())
    statuses = []
    rounds = 0
    for _ in range(600):
        outcome = search.run(Deadline.after(0.05))
        statuses.append(outcome.status)
        rounds += outcome.stats.rounds
        if outcome.status != "timeout":
            break
    assert statuses[-1] == "unsat" and not confirmed
    assert len(statuses) > 1 and rounds > 0  # it did take several slices
    assert len(roots) == len(proof.open)
    assert search.run(Deadline.after(1.0)).status == "unsat"  # a decided search stays decided



def test_a_round_that_would_end_past_the_deadline_is_not_begun(monkeypatch: pytest.MonkeyPatch) -> None:
    """A round of bounding and a branching step are not interrupted, so once a call has run a
    round, one whose last duration exceeds the time left is not begun: the call returns with
    the domains kept (the search's bound still covers them), and a later call goes on. The
    round and the branching step are slowed by sleeps of known length here."""
    path = MNIST / "onnx" / "mnist-net_256x4.onnx"  # 9 clauses open after alpha-CROWN
    region = parse_vnnlib(MNIST / "vnnlib" / "prop_8_0.03.vnnlib").regions[0]
    bounds, proof = _setup(path, region)
    attack = TorchGraph(bounds.graph, "cpu", torch.float32)
    proof.optimise(Deadline.after(2.0))
    assert proof.crown is not None and proof.open
    confirm, _ = recording_confirm(path, region)
    config = ReluSplitConfig(batch=1, iterations=2)  # short rounds of two domains: far from proving a clause
    search = ReluSplitSearch(bounds, attack, region, proof.open, proof.crown, confirm, config)
    search.run(Deadline.after(0.05))  # the first clause's root is bounded
    bound = rs._bound
    monkeypatch.setattr(rs, "_bound", lambda *args: (time.sleep(4.0), bound(*args))[1])
    outcome = search.run(Deadline.after(6.0))  # a round takes 4 s and more: a second would overrun
    clause = search.searches[0]
    assert outcome.status == "timeout" and outcome.stats.rounds == 1
    assert clause.lower_bound() > -float("inf")  # the domains bounded in that round are kept
    monkeypatch.setattr(rs, "_bound", bound)
    choose = clause.brancher.choose
    monkeypatch.setattr(clause.brancher, "choose", lambda *args: (time.sleep(2.0), choose(*args))[1])
    deadline = Deadline.after(5.0)
    search.run(deadline)  # rounds and splits (2 s each) until a split would end past the deadline
    assert not deadline.expired()  # it returned in time: without the rule the last split overruns
    assert clause.pending is not None and clause.pending.size > 0  # bounded, not split, kept
    monkeypatch.setattr(clause.brancher, "choose", choose)
    assert search.run(Deadline.after(10.0)).stats.rounds > 1  # the next call goes on round after round


def _capped(config: ReluSplitConfig, prop: str = "prop_8_0.03") -> tuple[str, dict[str, object], bool]:
    path = MNIST / "onnx" / "mnist-net_256x2.onnx"
    region = parse_vnnlib(MNIST / "vnnlib" / f"{prop}.vnnlib").regions[0]
    bounds, proof = _setup(path, region)
    attack = TorchGraph(bounds.graph, "cpu", torch.float32)
    proof.optimise(Deadline.after(2.0))
    confirm, confirmed = recording_confirm(path, region)
    assert proof.crown is not None and proof.open
    outcome = relu_split_search(bounds, attack, region, proof.open, proof.crown, confirm, Deadline.after(120), config)
    return outcome.status, outcome.stats.extra, bool(confirmed)


def test_a_store_past_its_cap_drains_and_still_proves() -> None:
    """256x2 prop_10 at eps 0.05 (unsat in expected.csv) with a store cap below what best-first
    search keeps (16 domains, 8 popped per round): past the cap the domains nearest to refuted
    go first, the store drains, and the search still proves the instance instead of giving up.
    BaBSR branching: filtered smart branching keeps this tree too thin to pass the cap."""
    config = ReluSplitConfig(batch=4, max_domains=16, branching=ReluBranching.BABSR)
    status, extra, confirmed = _capped(config, "prop_10_0.05")
    assert status == "unsat" and not confirmed
    assert int(extra.get("draining_rounds", 0)) > 0 and "gave_up_queue" not in extra


def test_a_store_past_twice_its_memory_cap_gives_up() -> None:
    """``queue_memory`` caps the store by its bytes: with room for no domain at all, the first
    children already exceed twice the cap and the search answers unknown."""
    status, extra, confirmed = _capped(ReluSplitConfig(queue_memory=1))
    assert status == "unknown" and not confirmed and int(extra["gave_up_queue"]) > 0

def test_never_proves_a_sat_mnist_instance() -> None:
    """256x2 prop_1 at eps 0.03 is sat (expected.csv): the search must not prove it; any sat it
    reports carries a confirmed point."""
    status, confirmed, _ = _mnist("256x2", "prop_1_0.03", 20, ReluSplitConfig(pgd_every=0))
    assert status in ("sat", "timeout", "unknown")
    assert (status == "sat") == bool(confirmed)


def test_leaves_go_to_the_exact_engine_with_their_splits(tmp_path: Path) -> None:
    """With no optimisation at all (zero iterations: beta stays at its warm start) the search
    still decides small networks, through the linear programs of its fully split leaves; its
    verdict matches MILP on the whole box."""
    decided = 0
    for seed in range(12):
        path = tmp_path / f"net{seed}.onnx"
        region, _ = _network(seed, path)
        bounds, proof = _setup(path, region)
        if proof.proven or proof.crown is None:
            continue
        oracle = OnnxOracle(path)

        def confirm(x: np.ndarray, region: Region = region, oracle: OnnxOracle = oracle) -> bool:
            return check_witness(oracle, region, x).valid

        attack = TorchGraph(bounds.graph, "cpu", torch.float32)
        config = ReluSplitConfig(iterations=1, root_iterations=1, pgd_every=0, candidates_per_round=0)
        outcome = relu_split_search(bounds, attack, region, proof.open, proof.crown, confirm,
                                    Deadline.after(30), config)
        reference = milp_check(proof.crown.table, proof.open, MilpConfig(time_limit=30))
        if outcome.status in ("sat", "unsat"):
            decided += 1
            assert outcome.status == reference.status, (seed, outcome.status, reference.status)
    assert decided >= 6


def test_unstable_count_and_splittable_layers() -> None:
    path = MNIST / "onnx" / "mnist-net_256x2.onnx"
    region = parse_vnnlib(MNIST / "vnnlib" / "prop_8_0.03.vnnlib").regions[0]
    bounds, proof = _setup(path, region)
    layers = rs.splittable_layers(bounds)
    assert [layer.size for layer in layers] == [256, 256]
    assert layers[1].offset == 256
    assert proof.crown is not None
    unstable = rs.count_unstable(proof.crown.bounds, bounds)
    assert 0 < unstable < 512


@pytest.mark.parametrize("seed", range(4))
def test_estimated_steps_report_the_certified_pass_of_the_kept_iterate(tmp_path: Path, seed: int) -> None:
    """With float32 estimated steps the rows returned are a fresh certified float64 pass with
    the slopes and multipliers returned (not the float32 estimates, which differ by ~1e-7)."""
    path = tmp_path / "net.onnx"
    region, _ = _network(seed, path)
    bounds, proof = _setup(path, region)
    assert proof.crown is not None
    layers = rs.splittable_layers(bounds)
    clause = region.clauses[0]
    lo, hi = proof.crown.input_bounds[bounds.graph.inputs[0].name]
    bounder = rs._BetaBounder(bounds, layers, lo.reshape(1, -1), hi.reshape(1, -1), [clause],
                              ReluSplitConfig(estimated_steps=True))
    domains = rs._root(bounds, layers, proof.crown, 1, clause.num_rows)
    bounded = bounder(domains, 10, Deadline(None))
    kept = rs._Domains(domains.bounds, domains.split, bounded.alpha, bounded.beta, domains.open, domains.hardness)
    assert torch.allclose(bounded.rows, bounder.quick(kept), rtol=0.0, atol=1e-12)
