"""The SMT engine and the shared encoding: float executions satisfy the program, the float-error
terms matter, unsupported ops are named, rationals are exact, deadlines are kept.

The three-engine cross-check on random networks lives in ``test_milp.py``.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import z3
from onnx import TensorProto, helper, numpy_helper

from tests.exact.test_milp import Net, conv_residual, make_crown, random_instance, relu_mlp
from verifier.deadline import Deadline
from verifier.exact import ExactUnsupported, MilpConfig, SmtConfig, encode, milp_check, smt_check
from verifier.exact.smt import exact
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause, Region
from verifier.witness import OnnxOracle, check_witness


def leaky_maxpool(seed: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Conv -> LeakyRelu -> MaxPool -> Flatten -> Gemm -> Abs -> Gemm -> Max with a constant."""
    b = Net(seed, [1, 1, 4, 4])
    a = b.node("LeakyRelu", [b.conv("x", 1, 2)], alpha=0.2)
    p = b.node("Flatten", [b.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])])
    h = b.node("Abs", [b.dense(p, 8, 4)])
    out = b.node("Max", [b.dense(h, 4, 2), b.const(np.array([0.1, -0.2]))])
    return b.models(out, 2)


@pytest.mark.parametrize("builder", [relu_mlp, conv_residual, leaky_maxpool])
def test_float_executions_satisfy_the_program(tmp_path: Path, builder: object) -> None:
    """At float32 executions of the network (our torch evaluation in float32), the variables
    lie in their bounds, every max relation holds and the outputs lie within their bands."""
    for seed in range(3):
        instance = random_instance(tmp_path, builder(seed), seed)  # type: ignore[operator]
        enc = encode(instance.crown.table)
        tg = TorchGraph(instance.crown.graph, "cpu", torch.float32)
        x, _ = instance.samples(200, seed)
        shape = tg.graph.inputs[0].shape
        table = tg.forward_all(torch.from_numpy(x).float().reshape(len(x), *shape))
        flat = {name: t.detach().double().reshape(len(x), -1).numpy() for name, t in table.items()}
        v = np.stack([flat[name][:, i] for name, i in enc.origin], axis=1)
        assert np.all(v >= np.asarray(enc.lower)) and np.all(v <= np.asarray(enc.upper))
        for rel in enc.maxes:
            terms = v[:, rel.vars] @ rel.coefs.T + rel.consts
            gap = np.abs(rel.sign * v[:, rel.out] - terms.max(axis=1))
            assert np.all(gap <= rel.err * (1 + 1e-9) + 1e-300), rel.node
        assert enc.outputs is not None
        y = np.concatenate([flat[o.name] for o in tg.graph.outputs], axis=1)
        expr = v[:, enc.outputs.vars] @ enc.outputs.coefs.T + enc.outputs.consts
        assert np.all(np.abs(y - expr) <= enc.outputs.bands * (1 + 1e-9))


def one_plus_tiny(tmp_path: Path) -> tuple[Path, Region]:
    """``y = x0 + x1`` at the single point ``x = (1, 1e-8)`` (float32 values), property ``y <= 1 +
    1e-12``: the real network gives ``1 + 1e-8`` (no violation), float32 rounds it to ``1``,
    which violates the property: only the float-error terms let an engine see it."""
    tiny = float(np.float32(1e-8))
    w = numpy_helper.from_array(np.ones((1, 2), np.float32), "w")
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="sum", transB=1)
    graph = helper.make_graph([node], "sum", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w])
    path = tmp_path / "sum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    point = np.array([1.0, tiny])
    clause = Clause(np.ones((1, 1)), np.array([1.0 + 1e-12]), np.array([False]))
    return path, Region(point, point.copy(), (clause,))


def test_float_error_terms_find_a_float_only_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, region = one_plus_tiny(tmp_path)
    oracle = OnnxOracle(path)
    assert oracle.run(region.lower)[0] == 1.0  # float32 rounds 1 + 1e-8 to 1
    crown = make_crown(path, region)
    for outcome in (smt_check(crown.table, region.clauses, SmtConfig()),
                    milp_check(crown.table, region.clauses, MilpConfig())):
        assert outcome.status == "sat" and outcome.x is not None
        assert check_witness(oracle, region, outcome.x).valid
    # Without the float-error terms the exact engine proves the real network safe: wrong for
    # the float model, which onnxruntime shows violating the property.
    node = crown.graph.nodes[0].name
    monkeypatch.setitem(crown.errors, node, (None,))
    assert smt_check(crown.table, region.clauses, SmtConfig()).status == "unsat"


def test_unsupported_product_is_named(tmp_path: Path) -> None:
    b = Net(0, [1, 2])
    product = b.node("Mul", [b.dense("x", 2, 3), b.dense("x", 2, 3)])
    instance = random_instance(tmp_path, b.models(b.dense(product, 3, 2), 2), 0)
    mul = next(n for n in instance.crown.graph.nodes if n.op == "Mul")
    with pytest.raises(ExactUnsupported, match=f"{mul.name}.*Mul"):
        smt_check(instance.crown.table, instance.region.clauses, SmtConfig())


def test_numbers_are_exact_rationals() -> None:
    assert z3.simplify(exact(0.1) == z3.RealVal(f"{Fraction(0.1).numerator}/{Fraction(0.1).denominator}"))
    assert z3.simplify(exact(0.1) != z3.RealVal("1/10"))
    assert z3.simplify(exact(2.0**-1074) > 0)


def test_expired_deadline_gives_unknown(tmp_path: Path) -> None:
    instance = random_instance(tmp_path, relu_mlp(2), 2)
    start = time.monotonic()
    outcome = smt_check(instance.crown.table, instance.region.clauses, SmtConfig(), Deadline(time.monotonic() - 1))
    assert outcome.status == "unknown" and time.monotonic() - start < 1.0
    outcome = milp_check(instance.crown.table, instance.region.clauses, MilpConfig(), Deadline(time.monotonic() - 1))
    assert outcome.status == "unknown"


def test_sat_candidate_is_deep(tmp_path: Path) -> None:
    """The candidate violates its clause by a margin that float rounding cannot undo."""
    for seed in range(40):
        instance = random_instance(tmp_path, relu_mlp(seed), seed)
        outcome = smt_check(instance.crown.table, instance.region.clauses, SmtConfig())
        if outcome.status == "sat":
            assert float(outcome.stats["depth"]) > 1e-6
            return
    pytest.fail("no sat instance")
