"""Domain clipping: a clipped box keeps every point where an open clause can hold (checked by
sampling through onnxruntime), equals the LP bounding box when CROWN is exact (a linear
network; HiGHS through pulp), and refutes a clause whose rows cannot hold together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pulp
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bab.input_split import _Bounder
from verifier.config import InputSplitConfig
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause


def _mlp(path: Path, weights: list[tuple[np.ndarray, np.ndarray]], relu: bool = True) -> None:
    nodes, inits, value = [], [], "x"
    for k, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        value = f"z{k}"
        if relu and k < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [value], [f"a{k}"]))
            value = f"a{k}"
    n_in, n_out = weights[0][0].shape[1], weights[-1][0].shape[0]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n_in])],
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, n_out])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _bound(path: Path, clauses: tuple[Clause, ...], lower: np.ndarray, upper: np.ndarray):  # type: ignore[no-untyped-def]
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    lo, hi = torch.from_numpy(lower), torch.from_numpy(upper)
    bound = _Bounder(tgraph, clauses, (hi - lo).amax(dim=0), InputSplitConfig())
    open_ = torch.ones(lo.shape[0], len(clauses), dtype=torch.bool)
    unknown = torch.full((lo.shape[0], bound.k, bound.r), -torch.inf, dtype=torch.float64)
    return bound(lo, hi, open_, {}, unknown)


def _outputs(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": row[None].astype(np.float32)})[0] for row in x])


def test_clipped_boxes_keep_every_sampled_point_where_an_open_clause_holds(tmp_path: Path) -> None:
    shrunk = refuted = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        sizes = [3, 8, 8, 3]
        weights = [(rng.normal(size=(sizes[k + 1], sizes[k])) / np.sqrt(sizes[k]), rng.normal(size=sizes[k + 1]) * 0.3)
                   for k in range(3)]
        path = tmp_path / f"net{seed}.onnx"
        _mlp(path, weights)
        # two clauses of two rows each: "y_i - y_j <= t" pairs with thresholds near the sampled range
        probe = _outputs(path, rng.uniform(-1, 1, size=(400, 3)))
        clauses = []
        for i, j in ((0, 1), (2, 1)):
            diff = probe[:, i] - probe[:, j]
            c = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
            c[0, i], c[0, j] = 1.0, -1.0
            c[1, 2 - i] = -1.0
            d = np.array([np.quantile(diff, 0.2), -np.quantile(probe[:, 2 - i], 0.5)])
            clauses.append(Clause(c, d, np.zeros(2, dtype=bool)))
        # four sub-boxes of [-1, 1]^3, bounded together
        centres = rng.uniform(-0.6, 0.6, size=(4, 3))
        lower, upper = centres - 0.4, centres + 0.4
        done = _bound(path, tuple(clauses), lower, upper)
        new_lo, new_hi, still_open = done.lower.numpy(), done.upper.numpy(), done.open.numpy()
        assert (new_lo >= lower).all() and (new_hi <= upper).all()
        for b in range(4):
            x = lower[b] + rng.random((3000, 3)) * (upper[b] - lower[b])
            y = _outputs(path, x).astype(np.float64)
            for k, clause in enumerate(clauses):
                holds = ((y @ clause.C.T - clause.d) <= 0).all(axis=1)
                if not still_open[b, k]:
                    assert not holds.any(), (seed, b, k)
                    refuted += 1
                    continue
                inside = ((x >= new_lo[b]) & (x <= new_hi[b])).all(axis=1)
                assert inside[holds].all(), (seed, b, k)
            shrunk += int(((new_hi[b] - new_lo[b]) < 0.99 * (upper[b] - lower[b])).any())
    assert shrunk > 5  # the check is not vacuous: many boxes were clipped
    assert refuted > 0


def test_clipping_a_linear_network_gives_the_lp_bounding_box(tmp_path: Path) -> None:
    """CROWN is exact on a linear network, so the clipped box of one halfspace is the exact
    bounding box of box ∩ halfspace, computed here by HiGHS one LP per end."""
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(2, 4)), rng.normal(size=2)
    path = tmp_path / "linear.onnx"
    _mlp(path, [(w, b)], relu=False)
    w32, b32 = w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    lower, upper = -np.ones((1, 4)), np.ones((1, 4))
    c = np.array([[1.0, -1.0]])
    d = np.array([(c @ b32)[0] - 0.5 * np.abs(c @ w32).sum()])  # cuts the box roughly in half
    clause = Clause(c, d, np.zeros(1, dtype=bool))
    done = _bound(path, (clause,), lower, upper)
    assert bool(done.open[0, 0])
    for j in range(4):
        for sense in (pulp.LpMinimize, pulp.LpMaximize):
            lp = pulp.LpProblem("end", sense)
            x = [pulp.LpVariable(f"x{i}", -1, 1) for i in range(4)]
            lp += x[j]
            row = (c @ w32)[0]
            lp += pulp.lpSum(float(row[i]) * x[i] for i in range(4)) + float((c @ b32)[0]) <= float(d[0])
            lp.solve(pulp.HiGHS(msg=False))
            end = x[j].value()
            got = float(done.lower[0, j] if sense == pulp.LpMinimize else done.upper[0, j])
            # sound (never inside the LP's end) and tight up to float32 evaluation margins
            if sense == pulp.LpMinimize:
                assert got <= end + 1e-7
            else:
                assert got >= end - 1e-7
            assert abs(got - end) < 1e-4, (j, sense, got, end)


def test_a_clause_whose_rows_cannot_hold_together_is_refuted(tmp_path: Path) -> None:
    """``y <= 0.2`` and ``y >= 0.3`` (``y = x_0``) each hold somewhere on the box, never
    together: their clipped boxes do not meet."""
    path = tmp_path / "identity.onnx"
    _mlp(path, [(np.array([[1.0, 0.0]]), np.array([0.0]))], relu=False)
    clause = Clause(np.array([[1.0], [-1.0]]), np.array([0.2, -0.3]), np.zeros(2, dtype=bool))
    done = _bound(path, (clause,), np.zeros((1, 2)), np.ones((1, 2)))
    assert (done.rows[0, 0] < 0).all()  # neither row alone refutes it
    assert not bool(done.open[0, 0])
