"""The command line: verdicts, result files, JSON, exit codes, bad input and the timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import expected_verdicts
from verifier.cli import EXIT_BAD_INPUT, main
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, clause_holds

SPECS = Path(__file__).resolve().parents[1] / "specs"
EXPECTED = sorted(expected_verdicts(SPECS).items())
CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.mark.parametrize(("pair", "verdict"), EXPECTED, ids=[p[1] for p, _ in EXPECTED])
def test_bundled_examples_give_the_known_verdict(capsys: pytest.CaptureFixture[str], pair: tuple[str, str],
                                                 verdict: str) -> None:
    code, payload = _run_json(capsys, str(SPECS / pair[0]), str(SPECS / pair[1]), "--timeout", "20")
    assert payload["status"] == verdict
    assert code == CODES[verdict]


@pytest.mark.parametrize("method", ["milp", "smt"])
@pytest.mark.parametrize(("pair", "verdict"), EXPECTED, ids=[p[1] for p, _ in EXPECTED])
def test_exact_methods_give_the_known_verdict_or_say_why_not(capsys: pytest.CaptureFixture[str], method: str,
                                                              pair: tuple[str, str], verdict: str) -> None:
    """--method milp|smt: the known verdict on piecewise-linear models (sat re-checked by
    onnxruntime); on the Sigmoid model never a verdict the engine cannot back: unknown, with
    the unsupported node named (unless bounds alone prove it)."""
    code, payload = _run_json(capsys, str(SPECS / pair[0]), str(SPECS / pair[1]), "--timeout", "30", "--method", method)
    if "sigmoid" in pair[0] and payload["status"] != "unsat":
        assert payload["status"] == "unknown" and "Sigmoid" in payload["stats"]["exact_error"]
        return
    assert payload["status"] == verdict
    assert code == CODES[verdict]
    if verdict == "sat":
        oracle = OnnxOracle(SPECS / pair[0])
        region = parse_vnnlib(SPECS / pair[1]).regions[0]
        y = oracle.run(np.asarray(payload["counterexample"]["x"]))
        assert any(clause_holds(c, y) for c in region.clauses)


MNIST = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist_fc"


def test_relu_split_proves_an_mnist_instance_that_bounds_leave_open(capsys: pytest.CaptureFixture[str]) -> None:
    """256x2 prop_8 at eps 0.03 is unsat (expected.csv); without branch and bound the answer
    is unknown (or timeout), with ReLU splitting (the auto choice for 784 inputs) it is proven."""
    model, spec = str(MNIST / "onnx" / "mnist-net_256x2.onnx"), str(MNIST / "vnnlib" / "prop_8_0.03.vnnlib")
    # bounds and alpha-CROWN are done about 7.5 s after the start; the rest would be attack
    _, payload = _run_json(capsys, model, spec, "--timeout", "10", "--bab", "none")
    assert payload["status"] in ("unknown", "timeout")
    code, payload = _run_json(capsys, model, spec, "--timeout", "120")
    assert payload["status"] == "unsat" and code == 0
    assert payload["stats"]["bab_mode"] == "relu"
    assert payload["stats"]["bab"]["domains_bounded"] > 0


def test_sat_result_file_is_rechecked_by_onnxruntime(tmp_path: Path) -> None:
    model, spec = SPECS / "onnx/relu_net.onnx", SPECS / "vnnlib/relu_sat_or.vnnlib"
    out = tmp_path / "result.txt"
    assert main([str(model), str(spec), "--out", str(out)]) == 10
    lines = out.read_text().splitlines()
    assert lines[0] == "sat"
    values = {}
    for line in lines[1:]:
        name, value = line.strip().strip("()").split()
        values[name] = float(value)
    x = np.array([values["X_0"], values["X_1"]])
    y = np.array([values["Y_0"], values["Y_1"]])
    region = parse_vnnlib(spec).regions[0]
    assert np.all(region.lower <= x) and np.all(x <= region.upper)
    np.testing.assert_array_equal(OnnxOracle(model).run(x.astype(np.float32)), y)
    assert any(clause_holds(c, y) for c in region.clauses)


def test_missing_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, payload = _run_json(capsys, str(tmp_path / "none.onnx"), str(SPECS / "vnnlib/affine_sat.vnnlib"))
    assert code == EXIT_BAD_INPUT and payload["status"] == "error" and "none.onnx" in payload["error"]
    code, payload = _run_json(capsys, str(SPECS / "onnx/affine.onnx"), str(tmp_path / "none.vnnlib"))
    assert code == EXIT_BAD_INPUT and "none.vnnlib" in payload["error"]


def test_malformed_vnnlib_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "bad.vnnlib"
    spec.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
                    "(assert (>== Y_0 1))\n")
    code, payload = _run_json(capsys, str(SPECS / "onnx/affine.onnx"), str(spec))
    assert code == EXIT_BAD_INPUT
    assert ":8:" in payload["error"] and ">==" in payload["error"]


def test_spec_with_more_inputs_than_the_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "three.vnnlib"
    decls = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n(assert (<= X_{i} 1))\n" for i in range(3))
    spec.write_text(decls + "(declare-const Y_0 Real)\n(assert (>= Y_0 1))\n")
    code, payload = _run_json(capsys, str(SPECS / "onnx/affine.onnx"), str(spec))
    assert code == EXIT_BAD_INPUT
    assert "3 inputs" in payload["error"] and "2 values" in payload["error"]


def test_nan_weights_and_unsupported_ops(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = onnx.load(SPECS / "onnx/affine.onnx")
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight.flat[0] = np.nan
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, model.graph.initializer[0].name))
    onnx.save(model, tmp_path / "nan.onnx")
    code, payload = _run_json(capsys, str(tmp_path / "nan.onnx"), str(SPECS / "vnnlib/affine_sat.vnnlib"))
    assert code == EXIT_BAD_INPUT and "NaN" in payload["error"]
    model = onnx.load(SPECS / "onnx/affine.onnx")
    model.graph.node.append(helper.make_node("Hardmax", ["y"], ["z"], name="hm"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1]))
    onnx.save(model, tmp_path / "unsupported.onnx")
    code, payload = _run_json(capsys, str(tmp_path / "unsupported.onnx"), str(SPECS / "vnnlib/affine_sat.vnnlib"))
    assert code == EXIT_BAD_INPUT and "Hardmax (nodes: hm)" in payload["error"]


def _big_model(path: Path, width: int = 1536, depth: int = 10) -> None:
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i in range(depth):
        inits.append(numpy_helper.from_array(
            (rng.normal(size=(width if i else 64, width)) / np.sqrt(width)).astype(np.float32), f"W{i}"))
        nodes += [helper.make_node("MatMul", [last, f"W{i}"], [f"h{i}"]),
                  helper.make_node("Relu", [f"h{i}"], [f"a{i}"])]
        last = f"a{i}"
    inits.append(numpy_helper.from_array(np.ones((width, 1), np.float32), "Wout"))
    nodes.append(helper.make_node("MatMul", [last, "Wout"], ["y"]))
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.fixture(scope="module")
def big_problem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10x1536 ReLU MLP (94 MB; reading it takes about 1 s, its first CROWN pass about 11 s)
    and a property that intervals cannot refute."""
    folder = tmp_path_factory.mktemp("big")
    _big_model(folder / "big.onnx")
    spec = folder / "big.vnnlib"
    decls = "".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} -1))\n(assert (<= X_{i} 1))\n" for i in range(64))
    spec.write_text(decls + "(declare-const Y_0 Real)\n(assert (>= Y_0 1e9))\n")
    return folder / "big.onnx", spec


def _timed_run(problem: tuple[Path, Path], timeout: str) -> tuple[dict[str, Any], int, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "verifier.cli", str(problem[0]), str(problem[1]),
                           "--timeout", timeout, "--json"], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.returncode, time.monotonic() - start


@pytest.mark.slow  # load-sensitive: under the parallel run on a slow host the watchdog (0.5 s grace) answered
def test_timeout_is_honoured(big_problem: tuple[Path, Path]) -> None:
    # imports, reading and setting up take 3-5 s (more under load); a full first CROWN pass
    # would take about 11 s, so its refinement stops at a fifth of the time left and the later
    # steps (attack, alpha-CROWN, search) run into the deadline
    payload, code, wall = _timed_run(big_problem, "8")
    assert payload["status"] == "timeout", payload
    assert code == 30
    # the step running at the deadline stops and names itself: an answer with statistics, not
    # the watchdog's
    stats = payload["stats"]
    assert "watchdog" not in stats and "regions" in stats and stats.get("stopped_in"), payload
    assert payload["time"] <= 9.0
    assert wall < 20


def test_the_watchdog_answers_when_reading_the_model_overruns_the_limit(big_problem: tuple[Path, Path]) -> None:
    payload, code, wall = _timed_run(big_problem, "0.3")
    assert payload["status"] == "timeout" and payload["stats"] == {"watchdog": True}, payload
    assert code == 30
    assert payload["time"] <= 1.3
    assert wall < 20


@pytest.mark.parametrize("method", ["ibp", "crown", "alpha-crown"])
def test_bounds_json_contains_onnxruntime_outputs(capsys: pytest.CaptureFixture[str], method: str) -> None:
    model, spec = SPECS / "onnx/relu_net.onnx", SPECS / "vnnlib/relu_sat_or.vnnlib"
    assert main(["bounds", str(model), str(spec), "--method", method, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == method and len(payload["regions"]) == 1
    bounds = payload["regions"][0]
    region = parse_vnnlib(spec).regions[0]
    oracle = OnnxOracle(model)
    rng = np.random.default_rng(0)
    lo, hi = np.array(bounds["output_lower"]), np.array(bounds["output_upper"])
    for _ in range(200):
        x = region.lower + rng.random(2) * (region.upper - region.lower)
        y = oracle.run(x.astype(np.float32))
        assert np.all(lo <= y) and np.all(y <= hi)
        for clause, rows in zip(region.clauses, bounds["clause_lower"], strict=True):
            assert np.all(np.array(rows) <= clause.C @ y - clause.d)


def test_watchdog_is_cancelled_after_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    before = {t for t in threading.enumerate() if isinstance(t, threading.Timer)}
    main([str(SPECS / "onnx/affine.onnx"), str(SPECS / "vnnlib/affine_sat.vnnlib"), "--timeout", "5"])
    capsys.readouterr()
    alive = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t not in before]
    for timer in alive:
        timer.join(1.0)
    assert not any(t.is_alive() for t in alive)
