"""Linearised steps from near-miss points (verifier/attack/linear_step.py): reach_prob's
robot_11 (sat; its counterexamples lie about 2e-5 inside three output constraints at once)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import ROOT
from verifier.api import verify
from verifier.attack.linear_step import linear_steps
from verifier.attack.pgd import MarginObjective
from verifier.config import AttackConfig, VerifierConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, check_witness

MODEL = ROOT / "benchmarks" / "zoo" / "onnx" / "reach_prob_density__robot.onnx"
SPEC = ROOT / "tests" / "data" / "reach_prob_density_robot_11.vnnlib"
NEAR_MISS = [-1.2000110804410098, -1.2065685576725447, 0.9204069305787437, 1.4965908581822815, 0.7019610135650096]
"""A point the input-split search reached (its box could not be refuted): every row of the
clause misses by 4e-5 or less, none is violated."""


def test_a_linearised_step_from_a_near_miss_lands_on_a_confirmed_counterexample() -> None:
    region = parse_vnnlib(SPEC).regions[0]
    tgraph = TorchGraph(load_model(MODEL), "cpu", torch.float32)
    objective = MarginObjective(region, tgraph.place.device, tgraph.place.dtype)
    start = torch.tensor([NEAR_MISS], dtype=torch.float32)
    with torch.no_grad():
        assert 0 < float(objective(tgraph.forward_flat(start))) < 1e-4
    lower, upper = torch.as_tensor(region.lower), torch.as_tensor(region.upper)
    moved = linear_steps(tgraph, objective, start, lower, upper)
    x = moved[0].double().numpy()
    assert (x >= region.lower).all() and (x <= region.upper).all()
    assert check_witness(OnnxOracle(MODEL), region, x).valid


@pytest.mark.slow  # 14-40 s (robot_11's whole search); the step itself is covered above
def test_the_input_split_search_finds_robot_11_through_its_steps() -> None:
    """With the attack off, only the search's candidates can answer sat: it does, having taken
    linearised steps (without them it ran out its time: 77,000 boxes in 60 s, no candidate)."""
    config = VerifierConfig(attack=AttackConfig(rounds=0))
    result = verify(MODEL, SPEC, timeout=60, config=config)
    assert result.status.value == "sat" and result.counterexample is not None
    assert result.stats["bab"]["linear_steps"] >= 1
    assert check_witness(OnnxOracle(MODEL), parse_vnnlib(SPEC).regions[0], np.asarray(result.counterexample.x)).valid
