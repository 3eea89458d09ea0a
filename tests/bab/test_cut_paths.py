"""Branch and bound when the spec rows' linear bounds do not reach the graph input: every path
from the output to it is cut at interval bounds (here a Softmax, which has no relaxation).
Each search mode must take such bounds (zero input coefficients), never fail with a KeyError
(ReLU splitting did), and its verdict must agree with onnxruntime on sampled points."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from verifier.api import verify_problem
from verifier.config import BAB_MODES, default_config
from verifier.problem import load_problem
from verifier.result import Status
from verifier.witness import OnnxOracle

_SPEC = """(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(declare-const Y_2 Real)
(assert (<= X_0 0.1))
(assert (>= X_0 -0.1))
(assert (<= X_1 0.1))
(assert (>= X_1 -0.1))
(assert (<= X_2 0.1))
(assert (>= X_2 -0.1))
(assert (>= Y_0 {threshold}))
"""


def _softmax_network(path: Path) -> None:
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "cut", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.parametrize("threshold", [0.30, 0.38])  # below and above the sampled maximum of Y_0 (0.3735)
@pytest.mark.parametrize("bab", BAB_MODES)
def test_every_search_mode_takes_bounds_that_do_not_reach_the_input(tmp_path: Path, bab: str,
                                                                    threshold: float) -> None:
    model, spec = tmp_path / "cut.onnx", tmp_path / "spec.vnnlib"
    _softmax_network(model)
    spec.write_text(_SPEC.format(threshold=threshold))
    config = default_config("cpu", 0)
    result = verify_problem(load_problem(model, spec), 5.0, replace(config, bab=bab))
    oracle = OnnxOracle(model)
    points = np.random.default_rng(1).uniform(-0.1, 0.1, size=(2000, 3)).astype(np.float32)
    worst = max(float(oracle.run(p)[0]) for p in points)
    if result.status is Status.UNSAT:
        assert worst < threshold
    elif result.status is Status.SAT:
        assert result.counterexample is not None
        assert float(oracle.run(np.asarray(result.counterexample.x, dtype=np.float32))[0]) >= threshold
    else:  # no verdict: the search gave up, or (on a loaded machine) the 5 s ran out first
        assert result.status in (Status.UNKNOWN, Status.TIMEOUT)
    if result.status is Status.UNKNOWN and bab != "none":  # given up with time left: the stats say why
        assert result.stats.get("search_exhausted") or result.stats.get("exact_error"), result.stats
    if threshold < worst:  # a counterexample is easy to find: every mode must report it
        assert result.status is Status.SAT
