"""alpha-CROWN with free slopes (:mod:`verifier.bounds.free_lines`) on random Sigmoid and Tanh
networks: much tighter than CROWN, and sound by onnxruntime on sampled inputs, in float64
and float32 passes. A relaxation whose line rule is slightly off is caught by the same check.
The joint run over several clauses (:func:`verifier.bounds.objective.joint_alpha_rows`) is
checked the same way, clause by clause.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import write_mlp
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound, open_rows
from verifier.bounds.crown import Crown
from verifier.bounds.objective import joint_alpha_rows
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops.activation import Sigmoid
from verifier.ops.base import REGISTRY
from verifier.ops.relax import Relaxation
from verifier.spec.types import Clause
from verifier.witness import OnnxOracle, grid_box, snap_into_box


def _setup(tmp_path: Path, activation: str, seed: int):
    rng = np.random.default_rng(seed)
    path = tmp_path / f"{activation}{seed}.onnx"
    write_mlp(path, [4, 16, 16, 16, 3], rng, "smooth", activation, gain=2.0)
    graph = load_model(path)
    centre = rng.normal(size=4)
    box = grid_box(centre - 0.6, centre + 0.6, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, *graph.inputs[0].shape) for b in box)
    c = torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)).double()  # exact in float32 passes too
    points = box[0] + rng.random((3000, 4)) * (box[1] - box[0])
    oracle = OnnxOracle(path)
    outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                      for p in points]))
    return graph, lower, upper, c, (outs @ c.T).amin(0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("seed", range(3))
def test_free_slopes_tighten_crown_and_stay_below_sampled_minima(tmp_path: Path, activation: str, seed: int,
                                                                 dtype: torch.dtype) -> None:
    graph, lower, upper, c, sampled = _setup(tmp_path, activation, seed)
    crown = Crown(TorchGraph(graph, "cpu", dtype), [lower], [upper])
    base = crown.lower_bound(c).detach().squeeze(0)
    optimised = alpha_lower_bound(crown, c, AlphaConfig(iterations=30)).squeeze(0)
    assert (optimised >= base).all()
    assert (optimised <= sampled).all()
    closed = (optimised - base) / (sampled - base)  # share of CROWN's gap to the sampled minimum closed
    assert float(closed.mean()) > 0.05


def test_an_unsound_line_rule_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a Sigmoid whose free-slope lower lines are lifted by 0.05
    gives bounds above sampled minima (CROWN's own lines are left correct)."""
    graph, lower, upper, c, sampled = _setup(tmp_path, "Sigmoid", 0)
    rule = Sigmoid.relaxation
    assert rule is not None and rule.line is not None
    line = rule.line

    def lifted(node, a, lo, hi, upper_side):  # type: ignore[no-untyped-def]
        bias = line(node, a, lo, hi, upper_side)
        return bias if upper_side else bias + 0.05

    class Lifted(Sigmoid):
        relaxation = dataclasses.replace(rule, line=lifted)

    assert isinstance(Lifted.relaxation, Relaxation)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64, {"Sigmoid": Lifted()}), [lower], [upper])
    wrong = alpha_lower_bound(crown, c, AlphaConfig(iterations=30)).squeeze(0)
    assert bool((wrong > sampled).any())


def test_joint_alpha_rows_are_sound_per_clause_and_a_refuted_clause_stops_pulling(tmp_path: Path) -> None:
    """All clauses in one run: every clause's rows stay below its sampled minima and at least
    CROWN's; a clause CROWN already refutes does not keep the others from tightening."""
    graph, lower, upper, c, sampled = _setup(tmp_path, "Tanh", 1)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper])
    base = crown.lower_bound(c).detach().squeeze(0)
    d = np.array([float(base[0]) - 0.5, float(sampled[1]) - 1e-3, float(sampled[2]) - 1e-3, float(sampled[3])])
    clauses = [Clause(c[i:i + 1].numpy(), d[i:i + 1], np.zeros(1, dtype=bool)) for i in range(4)]
    rows = [r.squeeze(0) for r in joint_alpha_rows(crown, clauses, alpha=AlphaConfig(iterations=30))]
    assert float(rows[0][0]) > 0  # refuted by CROWN already
    for i in range(4):
        assert float(rows[i][0]) <= float(sampled[i]) - d[i]
        assert float(rows[i][0]) >= float(base[i]) - d[i] - 1e-9
    assert sum(float(rows[i][0]) - (float(base[i]) - d[i]) for i in (1, 2, 3)) > 1e-3


def testopen_rows_follow_the_groups() -> None:
    best = torch.tensor([[0.5, -1.0, -2.0, -0.1], [-1.0, -1.0, 3.0, -1.0]])
    groups = torch.tensor([0, 0, 1, 2])
    still = open_rows(best, 0.0, 0.0, groups)
    assert still.tolist() == [[False, False, True, True], [True, True, False, True]]
    assert open_rows(best, 0.0, 0.0, None).tolist() == [[False] * 4, [False] * 4]
    assert open_rows(best, 0.0, None, groups).all()


def _chain_net(path: Path, chain: list[str], rng: np.random.Generator, opset: int = 13) -> None:
    """``x (4) -> Gemm (12) -> chain -> Gemm (12) -> chain -> Gemm (3)``, the ops of ``chain``
    in turn (``Add`` adds 0.5, ``Pow`` cubes)."""
    nodes, value = [], "x"
    inits = [numpy_helper.from_array(np.array([0.5], dtype=np.float32), "half"),
             numpy_helper.from_array(np.array(3.0, dtype=np.float32), "three")]
    sizes = [4, 12, 12, 3]
    for k in range(3):
        w = rng.normal(size=(sizes[k + 1], sizes[k])) * 2.0 / np.sqrt(sizes[k])
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array((rng.normal(size=sizes[k + 1]) * 0.3).astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        value = f"z{k}"
        for j, op in enumerate(chain if k < 2 else []):
            second = {"Add": ["half"], "Pow": ["three"]}.get(op, [])
            nodes.append(helper.make_node(op, [value, *second], [f"c{k}_{j}"]))
            value = f"c{k}_{j}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)


CHAINS = {"Log": ["Softplus", "Add", "Log"], "Sqrt": ["Softplus", "Add", "Sqrt"],
          "Reciprocal": ["Softplus", "Add", "Reciprocal"], "Sin": ["Sin"], "Cos": ["Cos"], "Gelu": ["Gelu"],
          "Power": ["Pow"]}


@pytest.mark.parametrize("op", list(CHAINS))
def test_free_slopes_of_domain_and_box_dependent_curves(tmp_path: Path, op: str) -> None:
    """Log, Sqrt and Reciprocal (free slopes on the boxes inside their domain: Softplus + 0.5
    before them keeps the values there), Sin, Cos and Gelu (critical points found per box),
    Power (Pow with a constant exponent, here x ** 3):
    alpha-CROWN's bounds stay below the onnxruntime minima of 3000 sampled inputs and rise
    above those of the same optimisation with the op's slopes fixed (its rule's lines)."""
    rng = np.random.default_rng(7)
    path = tmp_path / f"{op}.onnx"
    _chain_net(path, CHAINS[op], rng, 20 if op == "Gelu" else 13)
    graph = load_model(path)
    assert op in {node.op for node in graph.nodes}
    centre = rng.normal(size=4)
    box = grid_box(centre - 0.25, centre + 0.25, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, *graph.inputs[0].shape) for b in box)
    points = box[0] + rng.random((3000, 4)) * (box[1] - box[0])
    oracle = OnnxOracle(path)
    c = torch.from_numpy(rng.normal(size=(4, 3)).astype(np.float32)).double()
    outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                      for p in points]))
    sampled = (outs @ c.T).amin(0)
    rule = REGISTRY[op].relaxation
    assert rule is not None and rule.free_slopes

    class Fixed(type(REGISTRY[op])):  # type: ignore[misc]  # the op with its rule's lines only
        relaxation = Relaxation(rule.rule, rule.domain)

    bounds = {}
    for label, override in (("free", {}), ("fixed", {op: Fixed()})):
        crown = Crown(TorchGraph(graph, "cpu", torch.float64, override), [lower], [upper])
        bounds[label] = alpha_lower_bound(crown, c, AlphaConfig(iterations=30)).squeeze(0)
    assert (bounds["free"] <= sampled).all()
    assert float((bounds["free"] - bounds["fixed"]).sum()) > 1e-3
