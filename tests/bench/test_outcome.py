"""Result files and witness checking: the VNN-COMP layouts are read, garbage is an error, and
a witness is accepted only when onnxruntime confirms it (a forged one is rejected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bench.helpers import make_benchmark
from verifier.bench.outcome import ToolAnswer, check_answer_witness, parse_result_text
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle


@pytest.mark.parametrize("text, status", [("unsat\n", "unsat"), ("holds", "unsat"), ("violated\n((X_0 1))", "sat"),
                                          ("timeout", "timeout"), ("timed-out\n", "timeout"), ("unknown", "unknown"),
                                          ("error", "error"), ("", "error"), ("SAT-ish", "error")])
def test_verdict_line(text: str, status: str) -> None:
    assert parse_result_text(text).status == status


def test_assignment_in_any_layout() -> None:
    answer = parse_result_text("sat\n((X_1 2.5e-1)(X_0 -1)\n   (Y_0 3))")
    assert answer.x is not None and answer.y is not None
    assert answer.x.tolist() == [-1.0, 0.25] and answer.y.tolist() == [3.0]
    assert parse_result_text("sat\n((X_0 1) (X_2 1))").problem == "the assignment skips indices"
    assert parse_result_text("sat\n").problem == "sat without an assignment"
    assert "not a number" in parse_result_text("sat\n((X_0 abc))").problem


@pytest.fixture
def relu_case(tmp_path: Path) -> tuple[OnnxOracle, object]:
    bench = make_benchmark(tmp_path / "b", ["sat_valid"])
    return OnnxOracle(bench / "onnx" / "relu.onnx"), parse_vnnlib(bench / "vnnlib" / "sat_valid.vnnlib")


def _answer(x: list[float], y: list[float] | None = None) -> ToolAnswer:
    return ToolAnswer("sat", np.array(x), None if y is None else np.array(y))


def test_a_true_counterexample_is_accepted(relu_case) -> None:  # type: ignore[no-untyped-def]
    oracle, spec = relu_case
    assert check_answer_witness(oracle, spec, _answer([0.8], [0.8])) == (True, "ok")
    assert check_answer_witness(oracle, spec, _answer([0.8])) == (True, "ok")  # Y is optional
    assert check_answer_witness(oracle, spec, _answer([1.00005], [1.00005]))[0]  # within the 1e-4 box tolerance
    assert check_answer_witness(oracle, spec, _answer([0.5 - 5e-5]))[0]  # within the 1e-4 spec tolerance


@pytest.mark.parametrize("x, y, reason", [
    ([0.2], [0.9], "differ"),            # forged outputs
    ([0.2], [0.2], "no clause holds"),   # honest outputs, but no violation
    ([1.5], [1.5], "outside"),           # outside the box
    ([0.8, 0.1], None, "input values"),  # wrong size
    ([float("nan")], None, "non-finite"),
])
def test_a_forged_or_wrong_witness_is_rejected(relu_case, x: list[float], y: list[float] | None,  # type: ignore[no-untyped-def]
                                               reason: str) -> None:
    oracle, spec = relu_case
    ok, why = check_answer_witness(oracle, spec, _answer(x, y))
    assert not ok and reason in why
