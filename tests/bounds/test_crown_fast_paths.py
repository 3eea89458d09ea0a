"""The hand-written backward fast paths (Linear, reshapes, adding a constant) give the same
bounds as the generic vector-Jacobian rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.bounds.random_dags import random_dag
from tests.conftest import ROOT
from verifier.bounds.crown import Crown, CrownConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib
from verifier.witness import grid_box

ACAS = ROOT / "benchmarks" / "acasxu"
MNIST = ROOT / "benchmarks" / "mnist_fc"


def _both(path: Path, lower: torch.Tensor, upper: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    graph = load_model(path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    shape = graph.inputs[0].shape
    box = [lower.reshape(-1, *shape)], [upper.reshape(-1, *shape)]
    fast = Crown(tgraph, *box, CrownConfig(fast_paths=True)).lower_bound(c)
    generic = Crown(tgraph, *box, CrownConfig(fast_paths=False)).lower_bound(c)
    return fast, generic


@pytest.mark.parametrize(("path", "spec"), [
    (ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx", ACAS / "vnnlib" / "prop_1.vnnlib"),
    (ACAS / "onnx" / "ACASXU_run2a_4_6_batch_2000.onnx", ACAS / "vnnlib" / "prop_3.vnnlib"),
    (MNIST / "onnx" / "mnist-net_256x4.onnx", MNIST / "vnnlib" / "prop_0_0.03.vnnlib"),
])
def test_fast_paths_equal_generic_rule_on_benchmark_nets(path: Path, spec: Path) -> None:
    graph = load_model(path)
    region = parse_vnnlib(spec).regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    # a batch: the whole box and two random sub-boxes
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.random((2, lower.shape[1])))
    sub_lo = lower + (upper - lower) * t * 0.5
    sub_hi = sub_lo + (upper - lower) * 0.3
    lo, hi = torch.cat([lower, sub_lo]), torch.cat([upper, sub_hi])
    c = torch.from_numpy(rng.normal(size=(6, graph.output_size)))
    fast, generic = _both(path, lo, hi, c)
    assert torch.allclose(fast, generic, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_fast_paths_equal_generic_rule_on_random_dags(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "dag.onnx"
    onnx.save(random_dag(seed), path)
    graph = load_model(path)
    rng = np.random.default_rng(seed)
    centre, radius = rng.normal(size=graph.input_size), rng.uniform(0.05, 0.5)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, -1) for b in box)
    c = torch.from_numpy(rng.normal(size=(4, graph.output_size)))
    fast, generic = _both(path, lower, upper, c)
    assert torch.allclose(fast, generic, rtol=1e-9, atol=1e-9)
