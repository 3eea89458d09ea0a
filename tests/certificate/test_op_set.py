"""The certificate's op set is the checker's: the registry marks exactly the ops ``verify-check``
reads (:attr:`verifier.ops.base.Op.proof_checked`), ``verifier supports`` lists them, and a
model with any other op gets every region written as uncertified, naming the op and node (the
``unsat`` answer itself unchanged), rather than a region marked certified that no checker of
the format reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from verifier.api import verify
from verifier.ops import REGISTRY
from verifier.problem import load_problem
from verifier.standard.cli import capabilities
from verify_check.cli import UNREADABLE, VALID, check
from verify_check.model import OPS


def test_registry_marks_exactly_the_ops_the_checker_reads() -> None:
    marked = {name for name, op in REGISTRY.items() if op.proof_checked}
    assert marked == set(OPS)
    assert capabilities()["--onnx-operators-unsat-proofs"] == sorted(OPS)


def _network(path: Path, activation: str) -> None:
    """A 2-8-2 network with ``activation`` in the middle (weights seeded)."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"], name="first"),
             helper.make_node(activation, ["h"], ["a"], name="middle"),
             helper.make_node("MatMul", ["a", "w1"], ["y"], name="last")]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_unchecked_op_names_the_node(tmp_path: Path) -> None:
    _unsat_spec(tmp_path / "p.vnnlib", 100.0)
    for activation in ("Relu", "Sigmoid"):
        _network(tmp_path / f"{activation}.onnx", activation)
    assert load_problem(tmp_path / "Relu.onnx", tmp_path / "p.vnnlib").unchecked_op() is None
    found = load_problem(tmp_path / "Sigmoid.onnx", tmp_path / "p.vnnlib").unchecked_op()
    assert found == "op Sigmoid (node 'middle') is not among the ops verify-check reads"


def _unsat_spec(path: Path, bound: float) -> None:
    path.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(assert (<= X_0 0.01))\n(assert (>= X_0 0.0))\n"
                    f"(assert (<= X_1 0.01))\n(assert (>= X_1 0.0))\n(assert (>= Y_0 {bound}))\n")


def test_a_model_outside_the_op_set_gets_uncertified_regions(tmp_path: Path) -> None:
    for activation in ("Relu", "Sigmoid"):
        model, spec, proof = tmp_path / f"{activation}.onnx", tmp_path / "p.vnnlib", tmp_path / f"{activation}.npz"
        _network(model, activation)
        _unsat_spec(spec, 100.0)  # far above any output on the small box: CROWN refutes it at the root
        result = verify(model, spec, timeout=20, certificate=proof)
        assert result.status.value == "unsat"
        with np.load(proof) as archive:
            header = json.loads(bytes(archive["header"]).decode("utf-8"))
        code, message = check(str(model), str(spec), str(proof))
        if activation == "Relu":
            assert header["regions"][0]["certified"] and code == VALID, message
        else:
            assert not header["regions"][0]["certified"]
            assert "op Sigmoid (node 'middle')" in header["regions"][0]["reason"]
            assert code == UNREADABLE and "Sigmoid" in message
