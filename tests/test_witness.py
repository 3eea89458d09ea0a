"""Counterexample checks against the property's real numbers (issue 20): a candidate is snapped
into the largest float box inside the real box, and rows float64 cannot hold are evaluated in
exact rationals. Oracles: onnxruntime on a float64 model, exact rationals and z3."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
import z3
from onnx import TensorProto, helper, numpy_helper

from verifier.spec import parse_vnnlib_text
from verifier.spec.exact import round_down
from verifier.witness import OnnxOracle, check_witness, clause_holds

HEAD = ("".join(f"(declare-const X_{i} Real)\n" for i in range(2))
        + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n")


@pytest.fixture(scope="module")
def passthrough(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``y = x + 0`` in float64, so onnxruntime returns the input exactly."""
    x = helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 2])
    zero = numpy_helper.from_array(np.zeros((1, 2)), "zero")
    graph = helper.make_graph([helper.make_node("Add", ["x", "zero"], ["y"])], "passthrough", [x], [y], [zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("witness") / "passthrough.onnx"
    onnx.save(model, path)
    return path


def test_a_candidate_is_moved_inside_the_real_box(passthrough: Path) -> None:
    """``X_0 >= 0.1``: the float64 nearest below a tenth lies in the proof box (rounded outward)
    but not in the property's box; the checked counterexample must."""
    spec = parse_vnnlib_text(HEAD + "(assert (>= X_0 0.1))(assert (<= X_0 0.3))(assert (>= X_1 0))(assert (<= X_1 1))"
                             "(assert (<= Y_0 0.2))")
    (region,) = spec.regions
    outside = round_down(Fraction(1, 10))
    assert region.lower[0] == outside  # the proof box covers it
    check = check_witness(OnnxOracle(passthrough), region, np.array([outside, 0.5]))
    assert check.valid and check.x is not None
    assert Fraction(float(check.x[0])) >= Fraction(1, 10)


ROWS = "(assert (<= (+ (* 0.1 Y_0) (* 0.3 Y_1)) 0.7))"


@pytest.mark.parametrize("y", [(1.0, 2.0), (1.0, float(np.nextafter(2.0, 3.0))), (1.0, float(np.nextafter(2.0, 1.0))),
                               (7.0, 0.0), (float(np.nextafter(7.0, 8.0)), 0.0), (0.1, 2.0)])
def test_rows_float64_cannot_hold_are_checked_exactly(y: tuple[float, float]) -> None:
    """At points on and next to ``0.1 y0 + 0.3 y1 = 0.7``, the clause holds exactly when z3
    says the real constraint does."""
    spec = parse_vnnlib_text(HEAD + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= X_1 0))(assert (<= X_1 1))"
                             + ROWS)
    (clause,) = spec.regions[0].clauses
    y0, y1 = (z3.RealVal(str(Fraction(v))) for v in y)
    expected = z3.simplify(z3.RealVal("0.1") * y0 + z3.RealVal("0.3") * y1 <= z3.RealVal("0.7"))
    assert clause_holds(clause, np.array(y)) == z3.is_true(expected)
