"""The pipeline on networks that compare computed values: ``h = W1 x + b1``, ``g = Where(h > 0,
h, 0.1 h)`` (a leaky ReLU written with a comparison), ``Where(g[0] < g[1], g, -g)`` mixing
two neurons, then ``y = W2 . + b2``. The comparisons and Where are cut at their 0/1 and hull
bounds; every verdict is checked against onnxruntime at 4,000 sampled inputs (``unsat``: no
sample violates) and every ``sat`` counterexample is re-run through onnxruntime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from verifier.api import verify_problem
from verifier.config import default_config
from verifier.problem import load_problem
from verifier.result import Status
from verifier.witness import OnnxOracle


def _network(path: Path, rng: np.random.Generator) -> None:
    inits = [numpy_helper.from_array(rng.normal(size=(2, 6)).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.normal(size=6) * 0.3).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(size=(6, 1)).astype(np.float32), "W2"),
             numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
             numpy_helper.from_array(np.array([0.1], np.float32), "tenth"),
             numpy_helper.from_array(np.array([0], np.int64), "i0"),
             numpy_helper.from_array(np.array([1], np.int64), "i1")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m"]), helper.make_node("Add", ["m", "b1"], ["h"]),
             helper.make_node("Greater", ["h", "zero"], ["pos"]), helper.make_node("Mul", ["h", "tenth"], ["leak"]),
             helper.make_node("Where", ["pos", "h", "leak"], ["g"]),
             helper.make_node("Gather", ["g", "i0"], ["g0"], axis=1),
             helper.make_node("Gather", ["g", "i1"], ["g1"], axis=1),
             helper.make_node("Less", ["g0", "g1"], ["lt"]), helper.make_node("Neg", ["g"], ["ng"]),
             helper.make_node("Where", ["lt", "g", "ng"], ["s"]), helper.make_node("MatMul", ["s", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "where", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _spec(centre: np.ndarray, radius: float, threshold: float) -> str:
    lines = [f"(declare-const X_{i} Real)" for i in range(2)] + ["(declare-const Y_0 Real)"]
    for i in range(2):
        lines += [f"(assert (<= X_{i} {centre[i] + radius:.6f}))", f"(assert (>= X_{i} {centre[i] - radius:.6f}))"]
    return "\n".join([*lines, f"(assert (>= Y_0 {threshold:.6f}))"]) + "\n"


def test_verdicts_agree_with_onnxruntime(tmp_path: Path) -> None:
    decided = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        model, spec = tmp_path / f"where{seed}.onnx", tmp_path / f"where{seed}.vnnlib"
        _network(model, rng)
        centre, radius = rng.normal(size=2), 0.5
        oracle = OnnxOracle(model)
        points = (centre - radius + rng.random((4000, 2)) * 2 * radius).astype(np.float32)
        worst = max(float(oracle.run(p)[0]) for p in points)
        threshold = worst + (0.05 if seed % 2 else -0.05) * (abs(worst) + 1)  # above, below the sampled max
        spec.write_text(_spec(centre, radius, threshold))
        result = verify_problem(load_problem(model, spec), 10.0, replace(default_config("cpu", seed), bab="input"))
        if result.status is Status.UNSAT:
            assert worst < threshold
        elif result.status is Status.SAT:
            assert result.counterexample is not None
            assert float(oracle.run(np.asarray(result.counterexample.x, dtype=np.float32))[0]) >= threshold
        if threshold <= worst:  # a sampled point violates: the answer must be sat
            assert result.status is Status.SAT, (seed, result.status)
        decided.append(result.status)
    assert Status.UNSAT in decided and Status.SAT in decided


def test_a_float_cast_of_a_comparison_converts_it(tmp_path: Path) -> None:
    """``Y = Cast(X == 0, float)`` on two inputs (the conformance suite's equal06): the Cast turns
    the Booleans into 0.0/1.0 (graph simplification once dropped it as a float-to-float
    pass-through, and the attack then met Boolean outputs: an internal error). ``Y_0 >= 0.5``
    with ``X_0 = 0`` is sat (witness re-run through onnxruntime); with ``X_0`` in ``[1, 2]`` unsat."""
    nodes = [helper.make_node("Equal", ["x", "zero"], ["eq"]),
             helper.make_node("Cast", ["eq"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    model = tmp_path / "cast.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), model)
    oracle = OnnxOracle(model)
    for (low, high), expected in (((0.0, 0.0), Status.SAT), ((1.0, 2.0), Status.UNSAT)):
        spec = tmp_path / f"cast{low}.vnnlib"
        spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                        "(declare-const Y_1 Real)\n"
                        f"(assert (>= X_0 {low}))\n(assert (<= X_0 {high}))\n(assert (>= X_1 1.0))\n"
                        "(assert (<= X_1 2.0))\n(assert (>= Y_0 0.5))\n")
        result = verify_problem(load_problem(model, spec), 10.0, default_config("cpu", 0))
        assert result.status is expected
        if expected is Status.SAT:
            assert result.counterexample is not None
            assert float(oracle.run(np.asarray(result.counterexample.x, dtype=np.float32))[0]) >= 0.5


def _classifier(path: Path, w: np.ndarray, b: np.ndarray, label: int) -> None:
    """``y = Cast(ArgMax(x W + b) == label)``: 1.0 where the 2-input, 3-class network picks ``label``."""
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array([[label]], np.int64), "label")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["class"], axis=1, keepdims=1),
             helper.make_node("Equal", ["class", "label"], ["right"]),
             helper.make_node("Cast", ["right"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "argmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_argmax_on_computed_logits(tmp_path: Path) -> None:
    """Misclassification (``y <= 0.5``) around a point, through ArgMax and Equal on the logits:
    every ``unsat`` holds at 4,000 onnxruntime samples and every ``sat`` is a real
    misclassification; small boxes are proven, large ones falsified."""
    said = []
    for seed, radius in [(s, r) for s in range(3) for r in (0.02, 1.5)]:
        rng = np.random.default_rng(seed)
        centre = rng.normal(size=2)
        model, spec = tmp_path / f"arg{seed}.onnx", tmp_path / f"arg{seed}_{radius}.vnnlib"
        w, b = rng.normal(size=(2, 3)).astype(np.float32), (rng.normal(size=3) * 0.3).astype(np.float32)
        _classifier(model, w, b, int(np.argmax(centre.astype(np.float32) @ w + b)))  # the centre's class
        oracle = OnnxOracle(model)
        points = (centre - radius + rng.random((4000, 2)) * 2 * radius).astype(np.float32)
        wrong = min(float(oracle.run(p)[0]) for p in points) <= 0.5
        lines = [f"(declare-const X_{i} Real)" for i in range(2)] + ["(declare-const Y_0 Real)"]
        for i in range(2):
            lines += [f"(assert (<= X_{i} {centre[i] + radius:.6f}))", f"(assert (>= X_{i} {centre[i] - radius:.6f}))"]
        spec.write_text("\n".join([*lines, "(assert (<= Y_0 0.5))"]) + "\n")
        result = verify_problem(load_problem(model, spec), 10.0, replace(default_config("cpu", seed), bab="input"))
        if result.status is Status.UNSAT:
            assert not wrong
        elif result.status is Status.SAT:
            assert result.counterexample is not None
            assert float(oracle.run(np.asarray(result.counterexample.x, dtype=np.float32))[0]) <= 0.5
        if wrong:
            assert result.status is Status.SAT
        said.append(result.status)
    assert Status.UNSAT in said and Status.SAT in said
