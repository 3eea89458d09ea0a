"""``Crown.tiled``: a parent batch's table reused for sub-domains (branch-and-bound children).

Oracles: CROWN built directly on the children (the tiled bound may only be looser, by the
parents' float-error weights, and only slightly), and onnxruntime samples of each child's
domain (the box, with the split neuron's pre-activation of the child's sign).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import ROOT
from verifier.bab.relu_domains import splittable_layers
from verifier.bounds.crown import Crown, CrownConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph

MODEL = ROOT / "benchmarks" / "mnist_fc" / "onnx" / "mnist-net_256x2.onnx"


def _children(parent: Crown, layer_value: str, copies: int, rng: np.random.Generator) -> tuple[dict, list]:
    """``copies`` tiled copies of the parents' bounds of every ReLU input, each with one unstable
    neuron of ``layer_value`` clamped to one side; returns the bounds and (neuron, side) per child."""
    lo, hi = (b.reshape(parent.batch, -1) for b in parent.bounds[layer_value])
    bounds, splits = {}, []
    for name, (low, high) in parent.bounds.items():
        bounds[name] = tuple(b.reshape(parent.batch, -1).repeat(copies, 1) for b in (low, high))
    child_lo, child_hi = bounds[layer_value]
    for child in range(copies * parent.batch):
        unstable = torch.nonzero((lo[child % parent.batch] < 0) & (hi[child % parent.batch] > 0)).flatten()
        neuron, side = int(unstable[rng.integers(len(unstable))]), 1 if child % 2 else -1
        if side > 0:
            child_lo[child, neuron] = 0.0
        else:
            child_hi[child, neuron] = 0.0
        splits.append((neuron, side))
    return bounds, splits


def test_tiled_tables_bound_children_like_a_direct_pass() -> None:
    graph = load_model(MODEL)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.2, 0.8, size=(2, 784))
    shape = graph.inputs[0].shape
    lower, upper = (torch.from_numpy(centres + d).reshape(2, *shape) for d in (-0.05, 0.05))
    parent = Crown(tgraph, [lower], [upper], CrownConfig())
    layer = splittable_layers(tgraph)[-1]
    copies = 3
    bounds, splits = _children(parent, layer.value, copies, rng)
    tiled = Crown(tgraph, [lower], [upper], CrownConfig(intermediate=False), prior=parent.best).tiled(copies, bounds)
    direct = Crown(tgraph, [lower.repeat(copies, 1, 1, 1)], [upper.repeat(copies, 1, 1, 1)],
                   CrownConfig(intermediate=False), prior=bounds)
    rows = torch.from_numpy(rng.normal(size=(5, 10)))
    from_tiled, from_direct = tiled.lower_bound(rows), direct.lower_bound(rows)
    assert bool((from_tiled <= from_direct + 1e-9).all())
    assert torch.allclose(from_tiled, from_direct, rtol=1e-6, atol=1e-6)
    # samples of each child's domain: the box, with the split pre-activation on the child's side
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    torch_tgraph = TorchGraph(graph, "cpu", torch.float64)
    checked = 0
    for child, (neuron, side) in enumerate(splits):
        box = child % 2
        points = centres[box] + rng.uniform(-0.05, 0.05, size=(3000, 784))
        values = torch_tgraph.forward_all(torch.from_numpy(points).reshape(3000, *shape))
        keep = (values[layer.value].reshape(3000, -1)[:, neuron] * side >= 1e-6).numpy()  # clear of the kink
        chosen = points[keep][:300]
        if len(chosen):  # every sampled output satisfies the certified row bounds
            name = graph.inputs[0].name
            outs = np.stack([session.run(None, {name: p.reshape(1, *shape[1:]).astype(np.float32)})[0][0]
                             for p in chosen])
            assert (outs.reshape(len(chosen), -1) @ rows.numpy().T >= from_tiled[child].numpy() - 1e-9).all()
            checked += 1
    assert checked >= 2


def _parent_and_children(seed: int) -> tuple[Crown, dict, torch.Tensor]:
    """Two MNIST boxes' CROWN (no refinement), two children each split in the first layer,
    and five random objective rows."""
    graph = load_model(MODEL)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.2, 0.8, size=(2, 784))
    lower, upper = (torch.from_numpy(centres + d).reshape(2, *graph.inputs[0].shape) for d in (-0.05, 0.05))
    parent = Crown(tgraph, [lower], [upper], CrownConfig(intermediate=False))
    bounds, _ = _children(parent, splittable_layers(tgraph)[0].value, 2, rng)
    return parent, bounds, torch.from_numpy(rng.normal(size=(5, 10)))


def test_uncertified_tiled_pass_estimates_the_certified_bound_from_above() -> None:
    """``certified=False`` drops the rounding allowances only: its estimate is at least the
    certified bound and within the allowances' size of it (a branching heuristic's input)."""
    parent, bounds, rows = _parent_and_children(1)
    certified = parent.tiled(2, bounds).lower_bound(rows)
    copy = parent.tiled(2, bounds, certified=False)
    estimate = copy.lower_bound(rows)
    assert copy.table.unit == 0.0 and copy.table.estimate
    assert bool((estimate >= certified).all()) and bool((estimate > certified).any())
    assert torch.allclose(estimate, certified, rtol=1e-4, atol=1e-4)


def test_float32_estimating_copy_stays_close_and_a_certified_one_keeps_its_precision() -> None:
    parent, bounds, rows = _parent_and_children(2)
    certified = parent.tiled(2, bounds).lower_bound(rows)
    copy = parent.tiled(2, bounds, certified=False, dtype=torch.float32)
    name = parent.graph.inputs[0].name
    assert copy.tgraph.place.dtype == torch.float32 and copy.bounds[name][0].dtype == torch.float32
    estimate = copy.lower_bound(rows.float())
    assert torch.allclose(estimate.double(), certified, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError):
        parent.tiled(2, bounds, dtype=torch.float32)
