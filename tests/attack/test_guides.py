"""Attack starting points from certified linear bounds (verifier/attack/guides.py): the corner
of an exact bound is the row's minimum (every corner run through onnxruntime), and the corners
of CROWN's bounds find the bundled suite's planted corner detectors, which the attack alone
misses; onnxruntime confirms every point independently of our code."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.soundness.helpers import onnx_outputs, read_box
from verifier import Status, verify
from verifier.attack import AttackProgress, falsify_region
from verifier.attack.guides import distinct_points, row_corners
from verifier.bounds.crown import Crown
from verifier.config import AttackConfig
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.region_proof import RegionProof
from verifier.spec import parse_vnnlib, parse_vnnlib_text
from verifier.witness import OnnxOracle, check_witness

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "soundness"
PLANTED = ["m04_mlp-3x48_sigmoid_eps0.1_planted0", "m13_mlp-2x96_sigmoid_eps0.1_planted1",
           "m11_mlp-4x64_tanh_eps0.1_planted2", "m19_cnn-2c-pool_sigmoid_eps0.05_planted0"]


def _affine_model(path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """``y = W x + b`` as one Gemm (CROWN is exact on it)."""
    n, m = weight.shape[1], weight.shape[0]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])],
        [numpy_helper.from_array(weight.astype(np.float32), "W"),
         numpy_helper.from_array(bias.astype(np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def _crown_rows(model: Path, lower: np.ndarray, upper: np.ndarray, rows: np.ndarray
                ) -> tuple[Crown, torch.Tensor, torch.Tensor]:
    """CROWN over the box after one lower bound of ``rows`` (its input coefficients recorded)."""
    graph = load_model(model)
    tgraph = TorchGraph(graph, torch.device("cpu"), torch.float64)
    lo, hi = (torch.as_tensor(b, dtype=torch.float64).reshape(1, -1) for b in (lower, upper))
    crown = Crown(tgraph, [lo.reshape(1, *graph.inputs[0].shape)], [hi.reshape(1, *graph.inputs[0].shape)])
    with torch.no_grad():
        crown.lower_bound(torch.as_tensor(rows, dtype=torch.float64))
    return crown, lo, hi


@pytest.mark.parametrize("seed", range(4))
def test_the_corner_of_an_exact_linear_bound_is_the_rows_minimum(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 6, 3
    model = tmp_path / "affine.onnx"
    _affine_model(model, rng.normal(size=(m, n)), rng.normal(size=m))
    lower = rng.uniform(-1, 0, size=n)
    upper = lower + rng.uniform(0.1, 1, size=n)
    rows = rng.normal(size=(2, m))
    crown, lo, hi = _crown_rows(model, lower, upper, rows)
    corners = row_corners(crown, lo, hi).numpy()
    assert corners.shape == (3, n)  # one per row, then the rows' sum
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    every = np.array(list(itertools.product(*zip(lower, upper, strict=True))))
    outputs = np.stack([onnx_outputs(session, x) for x in every])
    objectives = np.concatenate([rows, rows.sum(axis=0, keepdims=True)])  # the rows, then their sum
    for corner, objective in zip(corners, objectives, strict=True):
        values = outputs @ objective
        assert float(objective @ onnx_outputs(session, corner)) == pytest.approx(values.min(), abs=1e-4)
        assert values.max() > values.min() + 1e-3  # the opposite corner would fail the check above


def test_distinct_points_keep_the_first_of_each() -> None:
    a, b, c = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0], [1.0, 2.0]]), torch.zeros(0, 2)
    assert torch.equal(distinct_points([a, b, c]), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert distinct_points([c]) is None


def _planted(name: str) -> tuple[Path, Path, np.ndarray]:
    lines = [json.loads(t) for t in (SUITE / "counterexamples.jsonl").read_text().splitlines()]
    entry = next(e for e in lines if Path(e["vnnlib"]).stem == name)
    return SUITE / entry["onnx"], SUITE / entry["vnnlib"], np.asarray(entry["x"])


@pytest.mark.parametrize("name", PLANTED)
def test_bound_corners_find_planted_corner_detectors_the_attack_misses(name: str) -> None:
    model, spec, _ = _planted(name)
    region = parse_vnnlib(spec).regions[0]
    oracle = OnnxOracle(model)
    confirm = lambda x: check_witness(oracle, region, x).valid  # noqa: E731
    attack_graph = TorchGraph(load_model(model), torch.device("cpu"), torch.float32)
    small = AttackConfig(samples=256, rounds=1, restarts=32, steps=20)
    alone, _ = falsify_region(attack_graph, region, small, Deadline.after(30), confirm, 0)
    assert alone is None  # the suite hides its corners from sampling and PGD
    proof = RegionProof(TorchGraph(load_model(model), torch.device("cpu"), torch.float64), region)
    guides = proof.take_guides()
    assert guides is not None and proof.take_guides() is None  # handed over once
    found, _ = falsify_region(attack_graph, region, small, Deadline.after(30), confirm, 0, AttackProgress(), guides)
    assert found is not None
    lower, upper, label = read_box(spec)  # independent of our parser and witness check
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    y = onnx_outputs(session, found)
    assert np.all(found >= lower) and np.all(found <= upper) and int(np.argmax(y)) != label


def test_verify_answers_a_planted_sigmoid_instance_with_a_checked_counterexample() -> None:
    model, spec, _ = _planted(PLANTED[1])
    result = verify(model, spec, timeout=30)
    assert result.status is Status.SAT and result.counterexample is not None
    lower, upper, label = read_box(spec)
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.asarray(result.counterexample.x).ravel()
    assert np.all(x >= lower) and np.all(x <= upper) and int(np.argmax(onnx_outputs(session, x))) != label


def test_no_guides_where_the_rows_reach_no_input(tmp_path: Path) -> None:
    text = "(declare-const X_0 Real)(declare-const X_1 Real)(declare-const Y_0 Real)" \
           "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))(assert (>= Y_0 2.49))"
    region = parse_vnnlib_text(text).regions[0]
    model = tmp_path / "zero.onnx"
    _affine_model(model, np.zeros((1, 2)), np.zeros(1))
    graph = load_model(model)
    lo, hi = proof_box(graph, region, torch.device("cpu"))
    crown, _, _ = _crown_rows(model, lo.numpy(), hi.numpy(), np.ones((1, 1)))
    assert torch.equal(row_corners(crown, lo, hi), hi)  # zero coefficients: the upper corner, a valid point
