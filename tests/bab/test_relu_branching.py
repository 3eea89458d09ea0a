"""Branching of ReLU-split search: the pre-activation biases behind the BaBSR score and the
choice of filtered smart branching.

Oracles: the ONNX initialisers (read with onnx's numpy_helper) for the biases; CROWN built
directly on each candidate's two children (certified, not the tiled estimate the choice uses)
for the choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import write_mlp
from verifier.bab import relu_split as rs
from verifier.bab.relu_branching import _apply_split, _Brancher, pre_activation_biases
from verifier.bounds.crown import Crown, CrownConfig
from verifier.config import ReluBranching, ReluSplitConfig
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause


def test_biases_of_dense_layers_are_the_gemm_biases(tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    write_mlp(path, [3, 5, 4, 2], np.random.default_rng(0), "mlp")
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    layers = rs.splittable_layers(tgraph)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    biases = pre_activation_biases(tgraph, layers)
    for layer, name in zip(layers, ["b0", "b1"], strict=True):
        assert biases[layer.node].numpy() == pytest.approx(inits[name].astype(np.float64), rel=1e-6)


def _conv_net(path: Path, rng: np.random.Generator) -> None:
    """Conv(bias) -> Relu -> Conv(bias) -> Relu -> Flatten -> Gemm on a 1x2x6x6 input."""
    inits = [numpy_helper.from_array(rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "c1"),
             numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "c2"),
             numpy_helper.from_array(rng.normal(size=(2, 16)).astype(np.float32), "w3")]
    nodes = [helper.make_node("Conv", ["x", "w1", "c1"], ["z1"]), helper.make_node("Relu", ["z1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2", "c2"], ["z2"]), helper.make_node("Relu", ["z2"], ["a2"]),
             helper.make_node("Flatten", ["a2"], ["f"]), helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_biases_of_convolutions_are_their_channel_biases_everywhere(tmp_path: Path) -> None:
    """The second convolution reads the first ReLU's output: with that output zero, its
    pre-activation is its bias in every pixel of each channel (the first one's too, with the
    input zero)."""
    path = tmp_path / "conv.onnx"
    _conv_net(path, np.random.default_rng(0))
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    layers = rs.splittable_layers(tgraph)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    biases = pre_activation_biases(tgraph, layers)
    for layer, name in zip(layers, ["c1", "c2"], strict=True):
        shape = tgraph.graph.shapes[layer.value]
        expected = np.broadcast_to(inits[name].reshape(-1, 1, 1), shape).reshape(-1).astype(np.float64)
        assert biases[layer.node].numpy() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_fsb_picks_the_candidate_whose_better_child_is_best(tmp_path: Path, seed: int) -> None:
    """For each domain, among the candidates, the chosen neuron's better child (by certified
    CROWN on that child alone) is within rounding of the best candidate's."""
    path = tmp_path / "mlp.onnx"
    rng = np.random.default_rng(seed)
    write_mlp(path, [4, 12, 12, 2], rng, "mlp")
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    layers = rs.splittable_layers(tgraph)
    centre = rng.normal(size=4)
    lo, hi = torch.from_numpy(centre - 1.0).reshape(1, 4), torch.from_numpy(centre + 1.0).reshape(1, 4)
    root = Crown(tgraph, [lo], [hi], CrownConfig())
    clause = Clause(C=np.array([[1.0, -1.0]]), d=np.array([0.0]), strict=np.array([False]))
    config = ReluSplitConfig(branching=ReluBranching.FSB, candidates=3)
    bounder = rs._BetaBounder(tgraph, layers, lo, hi, [clause], config)
    domains = rs._root(tgraph, layers, root, 1, 1)
    bounded = bounder(domains, 5, Deadline(None))
    domains = rs._Domains(bounded.bounds, domains.split, bounded.alpha, bounded.beta, domains.open, domains.hardness)
    brancher = _Brancher(layers, bounder, config)
    row = torch.zeros(1, dtype=torch.long)
    chosen = int(brancher.choose(domains, bounded.coefficients, row)[0])
    scores = brancher.scores(domains, bounded.coefficients, row)
    candidates = {int(c) for score in (scores.babsr, scores.upper) for c in score.topk(3, dim=1).indices[0]}
    candidates = {c for c in candidates if bool(scores.intercept[0, c] > -torch.inf)}
    assert chosen in candidates

    def better_child(neuron: int) -> float:
        values = []
        for side in (1, -1):
            child = _apply_split(domains, layers, torch.tensor([neuron]), side, bounded.coefficients)
            values.append(float(bounder.quick(child)[0, 0, 0]))
        return max(values)

    scores = {c: better_child(c) for c in candidates}
    assert scores[chosen] >= max(scores.values()) - 1e-4, (chosen, scores)
