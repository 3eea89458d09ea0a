"""CROWN bounds: sound by sampling and onnxruntime on every bundled model, tighter than intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, one_spec_per_model
from verifier.bounds.crown import Crown, CrownConfig, refines_every_position
from verifier.bounds.interval import interval_bounds
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle

CASES = one_spec_per_model()
ACAS = ROOT / "benchmarks" / "acasxu"


def _crown(graph_path: Path, lower: torch.Tensor, upper: torch.Tensor,
           mode: str = "adaptive") -> tuple[Crown, TorchGraph]:
    graph = load_model(graph_path)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    shape = graph.inputs[0].shape
    crown = Crown(tgraph, [lower.reshape(-1, *shape)], [upper.reshape(-1, *shape)], CrownConfig(relu_mode=mode))
    return crown, tgraph


@pytest.mark.parametrize(("model", "spec"), CASES, ids=[m.name for m, _ in CASES])
def test_crown_bounds_contain_samples_and_spec_rows(model: Path, spec: Path) -> None:
    graph = load_model(model)
    region = parse_vnnlib(spec).regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    crown, _ = _crown(model, lower, upper)
    y_lo, y_hi = crown.output_bounds()
    assert torch.isfinite(y_lo).all() and torch.isfinite(y_hi).all()
    rng = np.random.default_rng(0)
    width = region.upper - region.lower
    points = np.concatenate([
        region.lower + rng.random((5000, width.size)) * width,
        region.lower + rng.integers(0, 2, size=(500, width.size)) * width,
    ]).astype(np.float32)
    outs = TorchGraph(graph, "cpu", torch.float32).forward_flat(torch.from_numpy(points)).double()
    assert (outs >= y_lo).all() and (outs <= y_hi).all()
    for clause in region.clauses:
        rows = crown.lower_bound(torch.from_numpy(clause.C))[0] - torch.from_numpy(clause.d)
        values = outs @ torch.from_numpy(clause.C).T - torch.from_numpy(clause.d)
        assert (values >= rows).all()


@pytest.mark.parametrize(("model", "spec"), CASES, ids=[m.name for m, _ in CASES])
def test_crown_point_bounds_contain_onnxruntime_float32(model: Path, spec: Path) -> None:
    """lower == upper == x: only the float-error terms separate the bounds; onnxruntime's
    float32 outputs must lie between them."""
    region = parse_vnnlib(spec).regions[0]
    rng = np.random.default_rng(2)
    points = (region.lower + rng.random((8, region.lower.size)) * (region.upper - region.lower)).astype(np.float32)
    x = torch.from_numpy(points.astype(np.float64))
    crown, _ = _crown(model, x, x)
    y_lo, y_hi = crown.output_bounds()
    oracle = OnnxOracle(model)
    theirs = torch.from_numpy(np.stack([oracle.run(p) for p in points]))
    assert (theirs >= y_lo).all() and (theirs <= y_hi).all()


@pytest.mark.parametrize("net", ["1_1", "2_3", "5_9"])
@pytest.mark.parametrize("prop", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["adaptive", "zero", "one"])
def test_crown_on_acasxu_is_sound_and_tighter_than_intervals(net: str, prop: int, mode: str) -> None:
    model = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    region = parse_vnnlib(ACAS / "vnnlib" / f"prop_{prop}.vnnlib").regions[0]
    lower, upper = proof_box(load_model(model), region, torch.device("cpu"))
    crown, tgraph = _crown(model, lower, upper, mode)
    c_lo, c_hi = crown.output_bounds()
    rng = np.random.default_rng(3)
    x = region.lower + rng.random((20000, 5)) * (region.upper - region.lower)
    y = TorchGraph(load_model(model), "cpu", torch.float32).forward_flat(torch.from_numpy(x).float()).double()
    assert (y >= c_lo).all() and (y <= c_hi).all()
    if mode == "adaptive":  # the CROWN choice; the fixed slopes need not beat intervals
        i_lo, i_hi = interval_bounds(tgraph, lower, upper)
        assert (c_lo >= i_lo - 1e-9).all() and (c_hi <= i_hi + 1e-9).all()
        assert (c_hi - c_lo).sum() < 0.5 * (i_hi - i_lo).sum()


def test_prior_bounds_from_a_parent_box_keep_sub_box_bounds_sound() -> None:
    """Bounds of a parent box are valid priors for its sub-boxes: chained halvings with priors
    still contain sampled float32 values of every intermediate value and of the outputs."""
    model = ACAS / "onnx" / "ACASXU_run2a_2_4_batch_2000.onnx"
    graph = load_model(model)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_3.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    rng = np.random.default_rng(3)
    crown = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
    evaluate = TorchGraph(graph, "cpu", torch.float32)
    for _ in range(6):
        d = int(rng.integers(0, lower.shape[1]))
        mid = (lower[0, d] + upper[0, d]) / 2
        lower, upper = lower.clone(), upper.clone()
        if rng.random() < 0.5:
            upper[0, d] = mid
        else:
            lower[0, d] = mid
        crown = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)], prior=crown.best)
        x = lower + (upper - lower) * torch.from_numpy(rng.random((4000, lower.shape[1])))
        values = evaluate.forward_all(x.float().reshape(-1, *shape))
        for name, (lo, hi) in crown.bounds.items():
            v = values[name].double()
            assert (v >= lo).all() and (v <= hi).all(), name


def test_a_passed_deadline_stops_every_pass_and_an_open_one_changes_nothing() -> None:
    """The deadline is checked inside the passes (construction, later ``lower_bound``); one
    that has not passed leaves the bounds exactly as without it."""
    model = ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_1.vnnlib").regions[0]
    graph = load_model(model)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    box = [lower.reshape(1, *graph.inputs[0].shape)], [upper.reshape(1, *graph.inputs[0].shape)]
    with pytest.raises(DeadlineExceeded):
        Crown(tgraph, *box, deadline=Deadline.after(0.0))
    timed, free = Crown(tgraph, *box, deadline=Deadline.after(600.0)), Crown(tgraph, *box)
    assert all(torch.equal(timed.bounds[n][0], free.bounds[n][0]) and torch.equal(timed.bounds[n][1], free.bounds[n][1])
               for n in free.bounds)
    rows = torch.eye(graph.output_size, dtype=torch.float64)
    assert torch.equal(timed.lower_bound(rows), free.lower_bound(rows))
    timed.deadline = Deadline.after(0.0)
    with pytest.raises(DeadlineExceeded):
        timed.lower_bound(rows)


@pytest.mark.parametrize(("model", "everywhere"), [
    ("dist_shift__mnist_concat.onnx", True), ("eran__ffnnSIGMOID__Point_6x200.onnx", True),
    ("eran__mnist_relu_9_200.onnx", False), ("verivital__Convnet_maxpool.onnx", False),
    ("reach_prob_density__robot.onnx", False),
])
def test_refines_every_position_names_the_networks_with_non_relu_like_relaxed_ops(model: str, everywhere: bool) -> None:
    """Sigmoid networks need a backward pass per sigmoid neuron in every box; ReLU networks
    (max pooling included: it is not elementwise) only through their unstable neurons."""
    graph = load_model(ROOT / "benchmarks" / "zoo" / "onnx" / model)
    assert refines_every_position(TorchGraph(graph, "cpu", torch.float64)) is everywhere


def test_flattened_boxes_are_reshaped_and_wrong_sizes_refused(tmp_path: Path) -> None:
    """An input of shape (1, 10) bounded from flattened (N, 10) boxes gives the same bounds as
    from (N, 1, 10) ones, alpha-CROWN's free slopes included (before: a broadcast error in the
    free-slope step); a box of another size is refused naming the input."""
    from tests.bab.test_cross_check import write_mlp
    from verifier.bounds.alpha import alpha_lower_bound
    from verifier.config import AlphaConfig

    path = tmp_path / "sig.onnx"
    write_mlp(path, [10, 16, 16, 3], np.random.default_rng(0), "sig", "Sigmoid", gain=2.0)
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    lower = torch.full((2, 10), -0.3, dtype=torch.float64)
    lower[1] += 0.1
    upper = lower + 0.6
    flat = alpha_lower_bound(Crown(tgraph, [lower], [upper]), torch.eye(3), AlphaConfig(iterations=3))
    shaped = alpha_lower_bound(Crown(tgraph, [lower.reshape(2, 1, 10)], [upper.reshape(2, 1, 10)]), torch.eye(3),
                               AlphaConfig(iterations=3))
    assert torch.equal(flat, shaped)
    with pytest.raises(ValueError, match="input x"):
        Crown(tgraph, [lower[:, :9]], [upper[:, :9]])
