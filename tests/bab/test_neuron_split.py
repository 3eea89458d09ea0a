"""Neuron-interval branch and bound (:mod:`verifier.bab.neuron_split`) on random small Sigmoid
and Tanh networks: every ``unsat`` is checked against dense sampling (float32 evaluation);
on the Sigmoid ones the splits prove properties that the root domain leaves open; and a
deliberately unsound split (the upper child dropped) is caught by the same check. The corners
of the domains' linear bounds find the bundled soundness suite's planted counterexamples,
each confirmed by onnxruntime on a box read from the file's text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from tests.bab.test_cross_check import property_near_minimum, write_mlp
from tests.soundness.helpers import onnx_outputs, read_box
from verifier.bab import neuron_split as ns
from verifier.bab.neuron_split import Candidates, NeuronSplitSearch, smooth_layers
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.region_proof import RegionProof
from verifier.result import Status
from verifier.spec import parse_vnnlib
from verifier.spec.types import Region

SEEDS = range(12)
SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "soundness"


def _search(path: Path, region: Region, seconds: float) -> tuple[str, bool]:
    """The search's verdict on the region, and whether CROWN, or the search's root domain
    (its slopes optimised, no split), proved it."""
    graph = load_model(path)
    bounds = TorchGraph(graph, "cpu", torch.float64)
    proof = RegionProof(bounds, region)
    if proof.proven:
        return "unsat", True
    assert proof.crown is not None and smooth_layers(bounds)
    search = NeuronSplitSearch(bounds, proof.lower, proof.upper, proof.open, proof.crown)
    outcome = search.run(Deadline.after(seconds))
    return outcome.status.value, outcome.stats.rounds <= 1


def _cases(activation: str, tmp_path: Path) -> list[tuple[str, bool, np.ndarray]]:
    cases = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        path = tmp_path / f"{activation}{seed}.onnx"
        n_in = int(rng.integers(2, 4))
        sizes = [n_in, int(rng.integers(3, 7)), int(rng.integers(3, 7)), 2]
        write_mlp(path, sizes, rng, "smooth", activation, gain=2.0)
        region, values = property_near_minimum(path, rng, n_in, 1.0)
        status, by_crown = _search(path, region, 3.0)
        cases.append((status, by_crown, values))
    return cases


@pytest.mark.parametrize("activation", ["Sigmoid",
                                        pytest.param("Relu,Sigmoid", marks=pytest.mark.slow),  # the two in turn
                                        pytest.param("Tanh", marks=pytest.mark.slow)])  # Tanh: 27 s
def test_verdicts_agree_with_sampling_and_splits_prove_what_crown_leaves_open(tmp_path: Path, activation: str) -> None:
    """On the mixed networks the search splits both kinds of neurons (the ReLU-split search
    alone, which cannot split a Sigmoid, proved 1 of these 12 in 3 s each, the mixed one 5)."""
    cases = _cases(activation, tmp_path)
    for status, _, values in cases:  # (status, proven without a split, sampled row values)
        assert status in ("unsat", "timeout", "unknown")  # the search never claims sat
        if status == "unsat":
            assert not (values <= -1e-4).any()  # no sampled point violates a proven property
    if activation != "Tanh":  # (on these Tanh networks 3 s of splitting proves no more than the root)
        assert any(status == "unsat" and not by_root for status, by_root, _ in cases)


def test_relu_like_neurons_of_a_mixed_network_are_split_at_zero(tmp_path: Path) -> None:
    """Both kinds of layers are searched, in graph order; a ReLU neuron whose interval holds 0
    is split there, its children covering the parent's interval."""
    path = tmp_path / "mixed.onnx"
    write_mlp(path, [3, 5, 5, 2], np.random.default_rng(4), "mixed", "Relu,Sigmoid", gain=2.0)
    region, _ = property_near_minimum(path, np.random.default_rng(4), 3, 1.0)
    bounds = TorchGraph(load_model(path), "cpu", torch.float64)
    assert [layer.kink for layer in ns.split_layers(bounds)] == [True, False]
    proof = RegionProof(bounds, region)
    assert proof.crown is not None
    search = NeuronSplitSearch(bounds, proof.lower, proof.upper, proof.open, proof.crown)
    root = search._bound(search.root, 2, Deadline.after(10.0), ns.BabStats())
    relu = search.layers[0]
    lo, hi = root.bounds[relu.value]
    unstable = torch.nonzero((lo[0] < 0) & (hi[0] > 0)).flatten()
    assert unstable.numel()
    scores = torch.zeros_like(root.scores)
    scores[0, unstable[0]] = 1.0  # the first ReLU neuron holding 0 inside: the best score
    children = search._split(ns._Domains(root.bounds, root.slopes, root.rows, scores))
    (c_lo, c_hi), j = children.bounds[relu.value], int(unstable[0])
    assert float(c_hi[0, j]) == 0.0 and float(c_lo[1, j]) == 0.0
    assert float(c_lo[0, j]) == float(lo[0, j]) and float(c_hi[1, j]) == float(hi[0, j])


def test_an_unsound_split_is_caught_by_the_sampling_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping the upper child of every split (so the children no longer cover the parent)
    makes the search answer unsat where sampled points violate the property."""
    original = NeuronSplitSearch._split

    def lower_half_only(self: NeuronSplitSearch, parents: ns._Domains) -> ns._Domains:
        children = original(self, parents)
        return children.take(torch.arange(children.size // 2))

    monkeypatch.setattr(NeuronSplitSearch, "_split", lower_half_only)
    cases = _cases("Sigmoid", tmp_path)
    assert any(status == "unsat" and (values <= -1e-4).any() for status, _, values in cases)


@pytest.mark.parametrize("name", ["m01_mlp-2x32_sigmoid_eps0.05_planted0", "m17_cnn-1c_tanh_eps0.05_planted0"])
def test_domain_corners_find_a_planted_counterexample(name: str) -> None:
    entry = next(e for e in map(json.loads, (SUITE / "counterexamples.jsonl").read_text().splitlines())
                 if Path(e["vnnlib"]).stem == name)
    model, spec = SUITE / entry["onnx"], SUITE / entry["vnnlib"]
    region = parse_vnnlib(spec).regions[0]
    lower, upper, label = read_box(spec)  # from the text, not our parser
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    confirmed: list[np.ndarray] = []

    def confirm(x: np.ndarray) -> bool:  # onnxruntime alone decides, on the point moved into the text's box
        x = np.clip(x, lower, upper)  # (corners of the proof box, widened outward to float32 numbers)
        ok = bool(np.argmax(onnx_outputs(session, x)) != label)
        confirmed.extend([x] if ok else [])
        return ok

    bounds = TorchGraph(load_model(model), "cpu", torch.float64)
    proof = RegionProof(bounds, region)
    assert proof.crown is not None and not proof.proven
    plain = NeuronSplitSearch(bounds, proof.lower, proof.upper, proof.open, proof.crown)
    assert plain.run(Deadline.after(2.0)).status is not Status.SAT  # without candidates: never sat
    candidates = Candidates(TorchGraph(load_model(model), "cpu", torch.float32), region, confirm)
    search = NeuronSplitSearch(bounds, proof.lower, proof.upper, proof.open, proof.crown, candidates=candidates)
    assert search.run(Deadline.after(20.0)).status is Status.SAT and confirmed
