"""Intermediate-bound tightening by search on the cut network (verifier/bab/tighten.py).

Oracles: sampling (float32 pre-activations at random points and corners of the box lie within
the tightened bounds; an overstated search bound is caught), the full graph's own forward (the
cut graph computes the same value) and the MILP engine (the pipeline with tightening never
contradicts it on random deep networks).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import property_near_minimum, write_mlp
from verifier.api import RegionProof, verify_problem
from verifier.bab import tighten as tighten_module
from verifier.bab.relu_domains import splittable_layers
from verifier.bab.tighten import recomputed_bounds, tighten_bounds
from verifier.config import BabMode, MilpConfig, TightenConfig, default_config
from verifier.deadline import Deadline
from verifier.exact.milp import milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import load_problem
from verifier.result import Status
from verifier.spec.types import Region

CONFIG = TightenConfig(layers=3, domains_per_bound=64, max_unstable=64, min_layers=4)


def _deep_network(seed: int, path: Path) -> Region:
    """A random MLP: 3 inputs, four hidden ReLU layers of 8-12, two outputs; a property near
    the sampled minimum of ``y0 - y1`` on a box of radius 1."""
    rng = np.random.default_rng(1000 + seed)
    write_mlp(path, [3, *(int(rng.integers(8, 13)) for _ in range(4)), 2], rng, f"deep{seed}")
    region, _ = property_near_minimum(path, rng, 3, 1.0)
    return region


def _conv_network(seed: int, path: Path) -> Region:
    """A random CNN on a ``1x1x4x4`` input: two padded 3x3 convolutions of 2 channels and two
    dense layers of 8 and 6, each followed by a ReLU (two of the four layers are feature maps),
    two outputs; a property near the sampled minimum of ``y0 - y1`` on a box of radius 0.5."""
    rng = np.random.default_rng(2000 + seed)

    def const(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        value = rng.normal(size=shape) / np.sqrt(fan_in) if len(shape) > 1 else rng.normal(size=shape) * 0.3
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    inits: list = []
    nodes = [helper.make_node("Conv", ["x", const("k0", (2, 1, 3, 3), 9), const("c0", (2,), 1)], ["z0"], pads=[1] * 4),
             helper.make_node("Relu", ["z0"], ["a0"]),
             helper.make_node("Conv", ["a0", const("k1", (2, 2, 3, 3), 18), const("c1", (2,), 1)], ["z1"],
                              pads=[1] * 4),
             helper.make_node("Relu", ["z1"], ["a1"]),
             helper.make_node("Flatten", ["a1"], ["f"])]
    value = "f"
    for k, (n_in, n_out) in enumerate([(32, 8), (8, 6), (6, 2)]):
        nodes.append(helper.make_node("Gemm", [value, const(f"W{k}", (n_out, n_in), n_in), const(f"b{k}", (n_out,), 1)],
                                      [f"g{k}"], transB=1))
        value = f"g{k}"
        if k < 2:
            nodes.append(helper.make_node("Relu", [value], [f"r{k}"]))
            value = f"r{k}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])]
    outputs = [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, 2])]
    graph = helper.make_graph(nodes, f"cnn{seed}", inputs, outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    region, _ = property_near_minimum(path, rng, 16, 0.5)
    return region


NETWORKS = {"mlp": _deep_network, "cnn": _conv_network}


def _points(region: Region, seed: int) -> torch.Tensor:
    """20000 random points of the box and 4000 random corners, float32."""
    rng = np.random.default_rng(seed)
    lo, hi = region.lower, region.upper
    inside = lo + rng.random((20000, lo.size)) * (hi - lo)
    corners = np.where(rng.random((4000, lo.size)) < 0.5, lo, hi)
    return torch.from_numpy(np.concatenate([inside, corners])).float()


def _violations(path: Path, region: Region, seed: int) -> tuple[int, int]:
    """Sampled pre-activations outside the tightened bounds, and neurons made stable."""
    bounds_graph = TorchGraph(load_model(path), "cpu", torch.float64)
    proof = RegionProof(bounds_graph, region)
    assert proof.crown is not None
    proof.optimise(Deadline.after(10))
    before = {name: (lo.clone(), hi.clone()) for name, (lo, hi) in proof.crown.bounds.items()}
    bounds, stats = tighten_bounds(bounds_graph, proof.crown, Deadline.after(60), CONFIG)
    attack = TorchGraph(bounds_graph.graph, "cpu", torch.float32)
    values = attack.forward_all(_points(region, seed).reshape(-1, *bounds_graph.graph.inputs[0].shape))
    proof.tighten(bounds, Deadline.after(10))  # CROWN again from them (the pipeline's next step)
    assert proof.crown is not None
    outside = 0
    for layer in splittable_layers(bounds_graph):
        v = values[layer.value].double()
        for lo, hi in (bounds[layer.value], proof.crown.bounds[layer.value]):
            outside += int(((v < lo.reshape(1, *v.shape[1:])) | (v > hi.reshape(1, *v.shape[1:]))).sum())
        lo, hi = bounds[layer.value]
        old_lo, old_hi = before[layer.value]
        assert bool((lo >= old_lo).all()) and bool((hi <= old_hi).all())  # never looser
    return outside, stats.stabilised


@pytest.mark.parametrize(("kind", "seeds"), [("mlp", 2), pytest.param("mlp", 6, marks=pytest.mark.slow), ("cnn", 3)])
def test_tightened_bounds_hold_on_samples_and_stabilise_neurons(tmp_path: Path, kind: str, seeds: int) -> None:
    """Over random deep networks (MLPs; CNNs, whose first layers are feature maps): no sampled
    pre-activation outside the tightened bounds, and tightening makes some unstable neurons
    stable (the test is not vacuous)."""
    stabilised = 0
    for seed in range(seeds):
        path = tmp_path / f"{kind}{seed}.onnx"
        outside, made_stable = _violations(path, NETWORKS[kind](seed, path), seed)
        assert outside == 0, f"seed {seed}: {outside} sampled values outside the tightened bounds"
        stabilised += made_stable
    assert stabilised > 0


def test_a_search_that_claims_refutations_it_did_not_make_is_caught(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampling oracle can fail: searched bounds overstated by 1 (and so a refutation
    claimed wherever the honest bound is within 1 of zero) give bounds that sampled values
    leave on at least 2 of 3 random deep networks."""
    honest = tighten_module.row_lower_bounds

    def overstated(*args: object, **kwargs: object) -> tuple[torch.Tensor, object]:
        bounds, stats = honest(*args, **kwargs)  # type: ignore[arg-type]
        return torch.where(bounds == -torch.inf, 1.0, bounds + 1.0), stats

    monkeypatch.setattr(tighten_module, "row_lower_bounds", overstated)
    caught = 0
    for seed in range(3):
        path = tmp_path / f"deep{seed}.onnx"
        outside, _ = _violations(path, _deep_network(seed, path), seed)
        caught += outside > 0
    assert caught >= 2


def _outside(bounds_graph: TorchGraph, bounds: dict, region: Region, seed: int) -> int:
    """Sampled float32 pre-activations of the splittable layers outside ``bounds``."""
    attack = TorchGraph(bounds_graph.graph, "cpu", torch.float32)
    values = attack.forward_all(_points(region, seed).reshape(-1, *bounds_graph.graph.inputs[0].shape))
    outside = 0
    for layer in splittable_layers(bounds_graph):
        v = values[layer.value].double()
        lo, hi = (b.reshape(1, *v.shape[1:]) for b in bounds[layer.value])
        outside += int(((v < lo) | (v > hi)).sum())
    return outside


def _optimised_root(tmp_path: Path, seed: int) -> tuple[Region, TorchGraph, RegionProof]:
    """A random deep network's region, its float64 bound graph and its root proof after
    alpha-CROWN (at most 10 s)."""
    path = tmp_path / f"deep{seed}.onnx"
    region = _deep_network(seed, path)
    bounds_graph = TorchGraph(load_model(path), "cpu", torch.float64)
    proof = RegionProof(bounds_graph, region)
    proof.optimise(Deadline.after(10))
    return region, bounds_graph, proof


def test_recomputed_bounds_narrow_later_layers_and_hold_on_samples(tmp_path: Path) -> None:
    """After the second layer is tightened, one CROWN pass from the tightened bounds
    (``recomputed_bounds``) narrows later layers on some random deep network, never widens
    one, and no sampled value leaves the bounds."""
    narrowed = 0
    for seed in range(6):
        region, bounds_graph, proof = _optimised_root(tmp_path, seed)
        assert proof.crown is not None
        first_two, _ = tighten_bounds(bounds_graph, proof.crown, Deadline.after(60), replace(CONFIG, layers=1))
        again = recomputed_bounds(bounds_graph, proof.crown, first_two, Deadline.after(60))
        assert _outside(bounds_graph, again, region, seed) == 0
        for layer in splittable_layers(bounds_graph)[2:]:
            (lo, hi), (old_lo, old_hi) = again[layer.value], first_two[layer.value]
            assert bool((lo >= old_lo).all()) and bool((hi <= old_hi).all())
            narrowed += int(((hi - lo) < (old_hi - old_lo) - 1e-9).sum())
    assert narrowed > 0


def test_a_check_that_proves_the_region_stops_tightening(tmp_path: Path) -> None:
    """``proves`` is asked after each layer that gained a stable neuron; True ends the
    tightening there (a later layer is left as it was), and the bounds so far still hold on
    samples."""
    for seed in range(6):
        region, bounds_graph, proof = _optimised_root(tmp_path, seed)
        assert proof.crown is not None
        asked: list[int] = []

        def proves(bounds: dict, asked: list[int] = asked) -> bool:
            asked.append(len(bounds))
            return True

        bounds, stats = tighten_bounds(bounds_graph, proof.crown, Deadline.after(60), CONFIG, proves)
        assert _outside(bounds_graph, bounds, region, seed) == 0
        if stats.stabilised:
            assert stats.proved and len(asked) == 1
            last = stats.per_layer[-1]["value"]
            later = [layer.value for layer in splittable_layers(bounds_graph)]
            for value in later[later.index(str(last)) + 1:]:
                assert torch.equal(bounds[value][0], proof.crown.bounds[value][0])
            return
    raise AssertionError("no random network had a neuron made stable")


def test_a_layer_that_does_not_pay_is_left_after_its_probe(tmp_path: Path) -> None:
    """With a window of no time, an unreachable rate and no bound progress enough, a layer's
    search that has made no neuron stable stops after the round that follows its roots (at
    most two rounds on these small layers); the bounds still hold on samples, and some layer was left with domains open
    (the rule acted)."""
    config = replace(CONFIG, probe_seconds=0.0, seconds_per_stable=1e9, gap_ratio=0.0)
    left = 0
    for seed in range(3):
        region, bounds_graph, proof = _optimised_root(tmp_path, seed)
        assert proof.crown is not None
        bounds, stats = tighten_bounds(bounds_graph, proof.crown, Deadline.after(60), config)
        assert _outside(bounds_graph, bounds, region, seed) == 0
        assert all(int(layer["rounds"]) <= 2 for layer in stats.per_layer if not int(layer["stabilised"]))
        left += sum(bool(layer["left_early"]) for layer in stats.per_layer)
    assert left > 0


def test_an_overstated_recomputation_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampling oracle sees the recomputed bounds: a recomputation that narrows every
    later interval by a quarter of its width on each side gives bounds sampled values leave."""
    honest = tighten_module.recomputed_bounds

    def overstated(tgraph: TorchGraph, root: object, bounds: dict, deadline: Deadline) -> dict:
        fresh = honest(tgraph, root, bounds, deadline)  # type: ignore[arg-type]
        later = {layer.value for layer in splittable_layers(tgraph)[2:]}
        return {name: (lo + (hi - lo) / 4, hi - (hi - lo) / 4) if name in later else (lo, hi)
                for name, (lo, hi) in fresh.items()}

    monkeypatch.setattr(tighten_module, "recomputed_bounds", overstated)
    caught = 0
    for seed in range(3):
        path = tmp_path / f"deep{seed}.onnx"
        outside, _ = _violations(path, _deep_network(seed, path), seed)
        caught += outside > 0
    assert caught >= 2


def test_cut_at_computes_the_value_it_cuts_at(tmp_path: Path) -> None:
    path = tmp_path / "deep.onnx"
    region = _deep_network(0, path)
    graph = load_model(path)
    full = TorchGraph(graph, "cpu", torch.float32)
    x = _points(region, 0)[:100].reshape(-1, *graph.inputs[0].shape)
    values = full.forward_all(x)
    for layer in splittable_layers(full):
        cut = TorchGraph(graph.cut_at(layer.value), "cpu", torch.float32)
        assert torch.equal(cut.forward(x)[0], values[layer.value])


def _write_spec(region: Region, path: Path) -> None:
    """The region as VNN-LIB: its box (float64 bounds written exactly) and ``y0 - y1 <= d``."""
    clause = region.clauses[0]
    n = region.lower.size
    lines = [f"(declare-const X_{i} Real)" for i in range(n)] + ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i in range(n):
        lines += [f"(assert (>= X_{i} {float(region.lower[i])!r}))", f"(assert (<= X_{i} {float(region.upper[i])!r}))"]
    lines.append(f"(assert (<= (- Y_0 Y_1) {float(clause.d[0])!r}))")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("kind", "seed"), [("mlp", seed) for seed in range(6)] + [("cnn", seed) for seed in range(3)])
def test_pipeline_with_tightening_agrees_with_milp(tmp_path: Path, kind: str, seed: int) -> None:
    """ReLU-split pipeline with tightening on random deep networks: its verdict never
    contradicts the MILP engine's, and every sat it gives is confirmed by onnxruntime (the
    pipeline re-checks it before answering)."""
    model, spec = tmp_path / "deep.onnx", tmp_path / "deep.vnnlib"
    _write_spec(NETWORKS[kind](seed, model), spec)
    problem = load_problem(model, spec)
    config = replace(default_config("cpu", 0), bab=BabMode.RELU, tighten=CONFIG, milp_max_unstable=0)
    result = verify_problem(problem, 60, config)
    region = problem.spec.regions[0]
    proof = RegionProof(TorchGraph(problem.graph, "cpu", torch.float64), region)
    exact = Status.UNSAT if proof.crown is None else \
        milp_check(proof.crown.table, region.clauses, MilpConfig(time_limit=60)).status
    assert result.status in (Status.SAT, Status.UNSAT)
    if exact is Status.UNSAT:
        assert result.status is Status.UNSAT
    elif exact is Status.SAT:  # a MILP point is a candidate; the pipeline's own sat is confirmed
        assert result.status is Status.SAT
