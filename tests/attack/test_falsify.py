"""Falsification finds planted counterexamples; the witness check rejects forged ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier import Status, verify
from verifier.attack import AttackProgress, falsify_region
from verifier.config import AttackConfig
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib, parse_vnnlib_text
from verifier.witness import OnnxOracle, check_witness, grid_box, snap_into_box

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_pgd_finds_a_narrow_counterexample() -> None:
    # y = 2 x0 - x1 + 0.5 >= 2.49 needs x0 > 0.995 and x1 < 0.01: a corner of the box.
    text = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)" \
           "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (>= Y_0 2.49))"
    region = parse_vnnlib_text(text).regions[0]
    model = SPECS / "onnx/affine.onnx"
    graph = TorchGraph(load_model(model), "cpu", torch.float32)
    oracle = OnnxOracle(model)
    cfg = AttackConfig(samples=8, restarts=8, steps=100, rounds=1)
    found, stats = falsify_region(graph, region, cfg, Deadline.after(30),
                                  lambda x: check_witness(oracle, region, x).valid, 0)
    assert found is not None and stats.candidates_checked >= 1
    assert 2 * found[0] - found[1] + 0.5 >= 2.49


def test_no_false_counterexample_on_unsat_property() -> None:
    model = SPECS / "onnx/affine.onnx"
    region = parse_vnnlib(SPECS / "vnnlib/affine_unsat.vnnlib").regions[0]
    graph = TorchGraph(load_model(model), "cpu", torch.float32)
    oracle = OnnxOracle(model)
    found, stats = falsify_region(graph, region, AttackConfig(rounds=1), Deadline.after(30),
                                  lambda x: check_witness(oracle, region, x).valid, 0)
    assert found is None and stats.best_margin > 0


def test_witness_check_rejects_forgeries() -> None:
    model = SPECS / "onnx/affine.onnx"
    oracle = OnnxOracle(model)
    region = parse_vnnlib(SPECS / "vnnlib/affine_sat.vnnlib").regions[0]
    assert check_witness(oracle, region, np.array([1.0, 0.0])).valid
    assert not check_witness(oracle, region, np.array([0.5, 0.5])).valid  # y = 1.0 < 2
    # A point outside the box is snapped into it, never accepted as is.
    snapped = check_witness(oracle, region, np.array([1.5, -0.2]))
    assert snapped.x is not None and np.all(snapped.x <= 1.0) and np.all(snapped.x >= 0.0)


def test_snap_into_box_rounds_inwards() -> None:
    lower, upper = np.array([0.1]), np.array([0.2])
    cast = snap_into_box(np.array([0.1]), lower, upper, np.dtype(np.float32))
    assert 0.1 <= float(cast[0]) <= 0.2
    # [0.1, 0.1] holds no float32: the nearest float32 is what the model receives.
    degenerate = snap_into_box(np.array([0.1]), np.array([0.1]), np.array([0.1]), np.dtype(np.float32))
    assert degenerate[0] == np.float32(0.1)
    lo, hi = grid_box(np.array([0.1]), np.array([0.1]), np.dtype(np.float32))
    assert lo[0] <= float(np.float32(0.1)) <= hi[0] and lo[0] < hi[0]


def test_a_round_cut_by_its_time_limit_resumes_where_it_stopped() -> None:
    # an unsat property: every round draws its whole sample; the first call is cut short
    model = SPECS / "onnx/affine.onnx"
    region = parse_vnnlib(SPECS / "vnnlib/affine_unsat.vnnlib").regions[0]
    graph = TorchGraph(load_model(model), "cpu", torch.float32)
    oracle = OnnxOracle(model)
    count, restarts = 2_000_000, 8
    cut = AttackConfig(samples=count, rounds=1, restarts=restarts, steps=1, max_batch=1024, time_limit=0.05)
    progress = AttackProgress()
    found, _ = falsify_region(graph, region, cut, Deadline.after(30),
                                  lambda x: check_witness(oracle, region, x).valid, 0, progress)
    assert found is None and progress.round == 0  # the round goes on at the next call
    drawn = progress.drawn
    assert 0 < drawn < count and progress.best_x is not None and progress.best_x.shape == (restarts, 2)
    rest = AttackConfig(samples=count, rounds=1, restarts=restarts, steps=1, max_batch=65536, time_limit=300)
    found, second = falsify_region(graph, region, rest, Deadline.after(300),
                                   lambda x: check_witness(oracle, region, x).valid, 0, progress)
    assert found is None and progress.round == 1
    # the rest of the sample, then one PGD step and the final check from the best points
    assert second.evaluated == (count - drawn) + 2 * restarts


MNIST = Path(__file__).resolve().parents[2] / "benchmarks" / "mnist_fc"


def _mnist_probe(step_fractions: tuple[float, ...], steps: int) -> tuple[np.ndarray | None, float]:
    """One round (4096 samples, ``steps`` PGD steps) on MNIST 256x4 prop 8 at eps 0.05,
    a known-sat instance whose counterexample lies across the 784-dimensional box."""
    model = MNIST / "onnx" / "mnist-net_256x4.onnx"
    from verifier.problem import load_problem

    region = load_problem(model, MNIST / "vnnlib" / "prop_8_0.05.vnnlib").spec.regions[0]
    graph = TorchGraph(load_model(model), "cpu", torch.float32)
    oracle = OnnxOracle(model)
    cfg = AttackConfig(rounds=1, steps=steps, step_fractions=step_fractions)
    found, stats = falsify_region(graph, region, cfg, Deadline.after(30),
                                  lambda x: check_witness(oracle, region, x).valid, 0)
    return found, stats.best_margin


@pytest.mark.parametrize("steps", [10, 100])
def test_large_pgd_steps_reach_an_image_counterexample_small_ones_miss(steps: int) -> None:
    """The default step portfolio crosses the box, also in the probe's 10 steps (onnxruntime
    confirms the point); 2 % of the width alone, the old default, travels too little in a round
    and misses it."""
    found, margin = _mnist_probe(AttackConfig().step_fractions, steps)
    assert found is not None and margin <= 0
    missed, small_margin = _mnist_probe((0.02,), steps)
    assert missed is None and small_margin > 0


@pytest.mark.parametrize("bad", [(), (0.0,), (0.5, 1.5)])
def test_attack_step_fractions_are_checked(bad: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="step fractions"):
        AttackConfig(step_fractions=bad)


def _robot_attack(adam_rates: tuple[float, ...]) -> tuple[np.ndarray | None, float]:
    """The attack alone on reach_prob_density's robot_0 (bundled in the zoo): a counterexample
    must satisfy five output rows at once inside a thin slab of the box."""
    zoo = Path(__file__).resolve().parents[2] / "benchmarks" / "zoo"
    model = zoo / "onnx" / "reach_prob_density__robot.onnx"
    region = parse_vnnlib(zoo / "vnnlib" / "reach_prob_density__robot_0.vnnlib").regions[0]
    graph = TorchGraph(load_model(model), "cpu", torch.float32)
    oracle = OnnxOracle(model)
    cfg = AttackConfig(rounds=3, adam_rates=adam_rates, time_limit=600.0)  # bound by steps, not by time
    found, stats = falsify_region(graph, region, cfg, Deadline.after(600),
                                  lambda x: check_witness(oracle, region, x).valid, 0)
    return found, stats.best_margin


def test_adam_steps_on_summed_violations_reach_a_thin_slab_signed_steps_miss() -> None:
    """The default portfolio (signed steps and Adam on the summed violations) finds robot_0's
    counterexample, confirmed by onnxruntime; the signed steps alone, the old portfolio, end
    with a positive margin in the same rounds."""
    found, margin = _robot_attack(AttackConfig().adam_rates)
    assert found is not None and margin <= 0
    missed, signed_margin = _robot_attack(())
    assert missed is None and signed_margin > 0


def _step_corner_model(path: Path, n: int = 20) -> str:
    """``y = sum_i Sign(s_i (x_i - t_i))`` on ``[0, 1]^n``, ``y >= n - 0.5`` only where every
    ``x_i`` is beyond its threshold (``> 0.9`` for the first half, ``< 0.1`` for the rest): one
    corner's tenth-wide slab, which sampling never hits (0.1**n) and whose Sign layer has a zero
    gradient everywhere. Returns the property's VNN-LIB text."""
    half = n // 2
    signs = np.array([1.0] * half + [-1.0] * (n - half), dtype=np.float32)
    bias = np.array([-0.9] * half + [0.1] * (n - half), dtype=np.float32)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["z"], transB=1), helper.make_node("Sign", ["z"], ["s"]),
             helper.make_node("Gemm", ["s", "ones"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "step_corner", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
                              [numpy_helper.from_array(np.diag(signs), "W"), numpy_helper.from_array(bias, "b"),
                               numpy_helper.from_array(np.ones((1, n), dtype=np.float32), "ones")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    box = "".join(f"(declare-const X_{i} Real)" for i in range(n)) + "(declare-const Y_0 Real)"
    box += "".join(f"(assert (>= X_{i} 0))(assert (<= X_{i} 1))" for i in range(n))
    return box + f"(assert (>= Y_0 {n - 0.5}))"


@pytest.mark.parametrize(("straight_through", "walk"), [(True, False), (False, False), (False, True)])
def test_straight_through_gradients_or_a_walk_cross_a_sign_layer(tmp_path: Path, straight_through: bool,
                                                                   walk: bool) -> None:
    """Sign's gradient is zero: PGD alone stays where sampling put it; straight-through
    gradients, or the gradient-free walk members (:attr:`AttackConfig.walk_rates`), reach the
    corner slab, confirmed by onnxruntime."""
    model = tmp_path / "step.onnx"
    region = parse_vnnlib_text(_step_corner_model(model)).regions[0]
    oracle = OnnxOracle(model)
    graph = TorchGraph(load_model(model), "cpu", torch.float32, straight_through=straight_through)
    cfg = AttackConfig(samples=256, restarts=32, steps=100, rounds=3, walk_rates=(0.1,) if walk else ())
    confirm = lambda x: check_witness(oracle, region, x).valid  # noqa: E731
    found, _ = falsify_region(graph, region, cfg, Deadline.after(30), confirm, 0)
    if not (straight_through or walk):
        assert found is None
        return
    assert found is not None
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": found.astype(np.float32).reshape(1, -1)})
    assert float(y.ravel()[0]) >= 19.5 and np.all((found >= 0) & (found <= 1))


def test_verify_finds_the_sign_networks_counterexample(tmp_path: Path) -> None:
    model, spec = tmp_path / "step.onnx", tmp_path / "step.vnnlib"
    spec.write_text(_step_corner_model(model))
    result = verify(model, spec, timeout=30)
    assert result.status is Status.SAT and result.counterexample is not None
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.asarray(result.counterexample.x, dtype=np.float32).reshape(1, -1)})
    assert float(y.ravel()[0]) >= 19.5
