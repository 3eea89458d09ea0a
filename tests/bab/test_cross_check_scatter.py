"""Complete methods cross-checked on random networks that pass their hidden layer through the
scatter ops: ``ScatterND`` overwrites some hidden values with a scaled copy of others and
``ScatterElements`` (``reduction="add"``) adds another layer's values into some positions,
twice into one of them. Input-split and ReLU-split branch and bound, MILP (HiGHS) and SMT (z3)
must never contradict each other or the outputs onnxruntime gives at 4,000 sampled points (so a
wrong forward of ours is seen too); every ``sat`` is re-run through onnxruntime (as in
:mod:`tests.bab.test_cross_check`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import _consistent, _verdicts, property_near_minimum
from verifier.spec.types import Region

SEEDS = range(6)


def _dense(rng: np.random.Generator, name: str, source: str, n_in: int, n_out: int,
           inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    w = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
    inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}_W"),
              numpy_helper.from_array((rng.normal(size=n_out) * 0.3).astype(np.float32), f"{name}_b")]
    return helper.make_node("Gemm", [source, f"{name}_W", f"{name}_b"], [name], transB=1)


def _network(seed: int, path: Path) -> tuple[Region, np.ndarray]:
    """3 inputs -> dense 6 + ReLU -> ScatterND (2 positions take 1.5x two others) ->
    ScatterElements add (a second dense 3 + ReLU layer added at positions p, q, p) -> dense 2;
    the property as in :func:`tests.bab.test_cross_check.property_near_minimum`."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes = [_dense(rng, "a", "x", 3, 6, inits), helper.make_node("Relu", ["a"], ["h"])]
    source, target = rng.permutation(6)[:2], rng.permutation(6)[:2]
    inits += [numpy_helper.from_array(np.array([[0, int(j)] for j in target], np.int64), "nd_idx"),
              numpy_helper.from_array(np.array(source, np.int64), "picked"),
              numpy_helper.from_array(np.float32(1.5), "scale")]
    nodes += [helper.make_node("Gather", ["h", "picked"], ["g"], axis=1),
              helper.make_node("Mul", ["g", "scale"], ["g2"]),
              helper.make_node("Reshape", ["g2", "flat"], ["upd"]),
              helper.make_node("ScatterND", ["h", "nd_idx", "upd"], ["s"])]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "flat"))
    p, q = (int(v) for v in rng.permutation(6)[:2])
    inits.append(numpy_helper.from_array(np.array([[p, q, p]], np.int64), "el_idx"))
    nodes += [_dense(rng, "b", "x", 3, 3, inits), helper.make_node("Relu", ["b"], ["bh"]),
              helper.make_node("ScatterElements", ["s", "el_idx", "bh"], ["t"], axis=1, reduction="add"),
              _dense(rng, "y", "t", 6, 2, inits)]
    graph = helper.make_graph(nodes, f"scatter{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return property_near_minimum(path, rng, 3, 1.0)


def _onnxruntime_values(path: Path, region: Region, seed: int) -> np.ndarray:
    """Per point, the largest ``C y - d`` of the region's clause (<= 0: the point violates the
    property) at 4,000 points of its box, by onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1000)
    points = region.lower + rng.random((4000, region.lower.size)) * (region.upper - region.lower)
    clause = region.clauses[0]
    outputs = np.stack([session.run(None, {"x": p.reshape(1, -1).astype(np.float32)})[0][0] for p in points])
    return (outputs.astype(np.float64) @ clause.C.T - clause.d).max(axis=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_complete_methods_agree_through_scatter_ops(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"scatter{seed}.onnx"
    region, _ = _network(seed, path)
    values = _onnxruntime_values(path, region, seed)
    verdicts = _verdicts(path, region)
    assert "unconfirmed" not in verdicts.values(), verdicts
    assert _consistent(verdicts, values), verdicts
    assert all(v in ("sat", "unsat") for v in verdicts.values()), verdicts  # small: every method decides


def test_the_seeds_give_both_answers(tmp_path: Path) -> None:
    """Not vacuous: among the networks some properties hold and some do not."""
    said = set()
    for seed in SEEDS:
        path = tmp_path / f"scatter{seed}.onnx"
        said.add(_verdicts(path, _network(seed, path)[0])["milp"])
    assert said == {"sat", "unsat"}
