"""Complete methods cross-checked on random networks with a LayerNormalization layer: 3 inputs
-> dense 6 -> LayerNormalization (random scale and bias) -> ReLU -> dense 2. Input-split and
ReLU-split branch and bound must never contradict each other or the outputs onnxruntime gives
at 4,000 sampled points (every ``sat`` is re-run through onnxruntime); the exact engines refuse
the network, naming the node (LayerNormalization is neither affine nor piecewise linear). Bound
methods cut the node at its interval bounds, so a search may run out of time near a tight
property; most seeds are decided."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import property_near_minimum
from tests.bab.test_cross_check_scatter import _dense, _onnxruntime_values
from verifier.bab.input_split import input_split_search
from verifier.bab.relu_split import relu_split_search
from verifier.bounds.crown import Crown
from verifier.config import InputSplitConfig, MilpConfig, ReluSplitConfig
from verifier.deadline import Deadline
from verifier.exact import ExactUnsupported
from verifier.exact.milp import milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.region_proof import RegionProof
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness

QUICK_SEEDS = (0, 3, 4)
"""Decided by input splitting in 1-4 s (unsat, sat, unsat); all six seeds: ``-m slow``."""


def _network(seed: int, path: Path) -> Region:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array((1 + rng.normal(size=6) * 0.5).astype(np.float32), "ln_scale"),
        numpy_helper.from_array((rng.normal(size=6) * 0.3).astype(np.float32), "ln_bias")]
    nodes = [_dense(rng, "a", "x", 3, 6, inits),
             helper.make_node("LayerNormalization", ["a", "ln_scale", "ln_bias"], ["n"], axis=-1, epsilon=1e-3,
                              name="the_layernorm"),
             helper.make_node("Relu", ["n"], ["h"]), _dense(rng, "y", "h", 6, 2, inits)]
    graph = helper.make_graph(nodes, f"ln{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return property_near_minimum(path, rng, 3, 1.0)[0]


def _searches(path: Path, region: Region) -> dict[str, str]:
    """The verdicts of input-split and ReLU-split search (sat confirmed by onnxruntime)."""
    oracle = OnnxOracle(path)
    bounds = TorchGraph(load_model(path), "cpu", torch.float64)
    attack = TorchGraph(load_model(path), "cpu", torch.float32)
    proof = RegionProof(bounds, region)
    if proof.proven:
        return {"input": "unsat", "relu": "unsat"}
    assert proof.crown is not None

    def confirm(x: np.ndarray) -> bool:
        return check_witness(oracle, region, x).valid

    inputs = input_split_search(bounds, attack, region, proof.open, proof.lower, proof.upper, confirm,
                                Deadline.after(10), InputSplitConfig(pgd_every=0))
    relu = relu_split_search(bounds, attack, region, proof.open, proof.crown, confirm, Deadline.after(10),
                             ReluSplitConfig(pgd_every=0))
    return {"input": inputs.status, "relu": relu.status}


@pytest.mark.parametrize("seeds", [QUICK_SEEDS, pytest.param(range(6), marks=pytest.mark.slow)], ids=["quick", "all"])
def test_searches_agree_with_onnxruntime_and_the_exact_engines_refuse(tmp_path: Path, seeds: Sequence[int]) -> None:
    decided = []
    for seed in seeds:
        path = tmp_path / f"ln{seed}.onnx"
        region = _network(seed, path)
        values = _onnxruntime_values(path, region, seed)
        verdicts = _searches(path, region)
        said = {str(v.value) if hasattr(v, "value") else str(v) for v in verdicts.values()}
        assert not ("unsat" in said and "sat" in said), verdicts
        if "unsat" in said:
            assert not (values <= -1e-4).any(), verdicts  # no sampled point violates a proven property
        decided += list(said & {"sat", "unsat"})  # one verdict per seed at most
    # not vacuous: seeds 0, 3 and 4 are decided by input splitting in 1-4 s; 2 and 5 need about
    # 10 s (decided or not, by the machine's speed); 1 is not decided in 60 s. ReLU splitting
    # exhausts the 6 ReLU neurons with leaves open (the cut node's intervals): unknown.
    assert {"sat", "unsat"} <= set(decided) and len(decided) >= 3
    bounds = TorchGraph(load_model(path), "cpu", torch.float64)
    lower, upper = (torch.as_tensor(b).reshape(1, -1) for b in (region.lower, region.upper))
    with pytest.raises(ExactUnsupported, match="the_layernorm"):
        milp_check(Crown(bounds, [lower], [upper]).table, region.clauses, MilpConfig(time_limit=5))
