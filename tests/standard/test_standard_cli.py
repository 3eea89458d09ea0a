"""The ``verifier`` command (VNN-LIB 2.0 solver interface), checked against onnxruntime.

Every ``sat`` answer is parsed back from the printed assignment; the inputs are re-run through
onnxruntime on the *separate* models (not the composed one) and the printed hidden values,
outputs and the query's constraints are checked on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from verifier.query.assignment import read_assignment
from verifier.standard.cli import capabilities, main

HEADER = "(vnnlib-version <2.0>)\n"


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.opset_import[0].version = 17
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def relu_net(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    """y = relu(x), x and y of shape [1] and element type ``elem_type``."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu",
        [helper.make_tensor_value_info("x", elem_type, [1])],
        [helper.make_tensor_value_info("y", elem_type, [1])])
    return save(helper.make_model(graph), path)


def mlp_net(path: Path) -> Path:
    """x[2] -> h = W x + b (named "pre") -> relu -> y = V relu(h) + c, y[2]."""
    w = numpy_helper.from_array(np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 1.0]], np.float32), "W")
    b = numpy_helper.from_array(np.array([0.1, -0.5, 0.2], np.float32), "b")
    v = numpy_helper.from_array(np.array([[1.0, 0.5, -1.0], [-0.5, 1.0, 0.25]], np.float32), "V")
    c = numpy_helper.from_array(np.array([0.0, 0.3], np.float32), "c")
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["pre"], transB=1),
             helper.make_node("Relu", ["pre"], ["act"]),
             helper.make_node("Gemm", ["act", "V", "c"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, b, v, c])
    return save(helper.make_model(graph), path)


def sub_net(path: Path) -> Path:
    """Two inputs a, b of shape [1]; y = a - b."""
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["y"])], "sub",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return save(helper.make_model(graph), path)


def shape_net(path: Path) -> Path:
    """y = Shape(x) (int64, a constant), x of shape [3]."""
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["y"])], "shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1])])
    return save(helper.make_model(graph), path)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def query(tmp_path: Path, text: str) -> str:
    path = tmp_path / "q.vnnlib"
    path.write_text(HEADER + text)
    return str(path)


def parse_assignment(lines: list[str]) -> dict[str, np.ndarray]:
    """The command-line assignment format back into arrays."""
    values: dict[str, np.ndarray] = {}
    i = 0
    while i < len(lines):
        name, _type, dims = lines[i].split(" ", 2)
        shape = tuple(int(d) for d in dims.strip("[]").split(",") if d)
        size = int(np.prod(shape))
        values[name] = np.array([float(v) for v in lines[i + 1 : i + 1 + size]]).reshape(shape)
        i += 1 + size
    return values


def ort_run(model: Path, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
    m = onnx.load(model)
    if outputs:
        for name in outputs:
            if name not in [o.name for o in m.graph.output]:
                m.graph.output.append(helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


def test_two_networks_unsat_and_sat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n1, n2 = relu_net(tmp_path / "a.onnx"), relu_net(tmp_path / "b.onnx")
    decls = """(declare-network N1 (declare-input X float32 [1]) (declare-output Y float32 [1]))
(declare-network N2 (declare-input X2 float32 [1]) (declare-output Y2 float32 [1]))
(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X2[0] 2.0)) (assert (<= X2[0] 3.0))
"""
    nets = ["--network", f"N1={n1}", "--network", f"N2={n2}"]
    code, out, _ = run(["verify", query(tmp_path, decls + "(assert (<= Y2[0] Y[0]))\n"), *nets], capsys)
    assert (code, out) == (0, ["unsat"])
    code, out, _ = run(["verify", query(tmp_path, decls + "(assert (>= (- Y2[0] Y[0]) 2.5))\n"), *nets], capsys)
    assert code == 0 and out[0] == "sat"
    got = parse_assignment(out[1:])
    assert list(got) == ["X", "Y", "X2", "Y2"]
    for model, x, y in ((n1, "X", "Y"), (n2, "X2", "Y2")):
        (ref,) = ort_run(model, {"x": got[x].astype(np.float32)}, ["y"])
        np.testing.assert_array_equal(ref, got[y].astype(np.float32))
    assert 0.0 <= got["X"][0] <= 1.0 and 2.0 <= got["X2"][0] <= 3.0
    assert got["Y2"][0] - got["Y"][0] >= 2.5


def test_equal_to_network_takes_no_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n1 = relu_net(tmp_path / "a.onnx")
    text = query(tmp_path, """(declare-network N1 (declare-input X float32 [1]) (declare-output Y float32 [1]))
(declare-network N2 (equal-to N1) (declare-input X2 float32 [1]) (declare-output Y2 float32 [1]))
(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X2[0] 2.0)) (assert (<= X2[0] 3.0))
(assert (<= Y2[0] Y[0]))
""")
    assert run(["verify", text, "--network", f"N1={n1}"], capsys)[:2] == (0, ["unsat"])
    code, out, err = run(["verify", text, "--network", f"N1={n1}", "--network", f"N2={n1}"], capsys)
    assert (code, out) == (3, []) and "equal-to N1" in err


def test_isomorphic_network_with_its_own_element_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``isomorphic-to`` fixes shapes only, so N2 may be declared float64 beside a float32 N1.
    With N2's float64 model the query is refused by a documented limit (one input element type
    per query), with its float32 model by the standard's rule (declared and model types differ);
    with both networks float64 it is decided."""
    n1, n2 = relu_net(tmp_path / "a.onnx"), relu_net(tmp_path / "b.onnx", TensorProto.DOUBLE)
    text = query(tmp_path, """(declare-network N1 (declare-input X float32 [1]) (declare-output Y float32 [1]))
(declare-network N2 (isomorphic-to N1) (declare-input X2 float64 [1]) (declare-output Y2 float64 [1]))
(assert (>= X[0] 0.0)) (assert (<= X[0] 1.0)) (assert (>= X2[0] 2.0)) (assert (<= X2[0] 3.0))
""")
    unsat = text.replace(".vnnlib", "_u.vnnlib")
    Path(unsat).write_text(Path(text).read_text() + "(assert (<= Y2[0] 0.5))\n")
    code, out, err = run(["verify", unsat, "--network", f"N1={n1}", "--network", f"N2={n2}"], capsys)
    assert (code, out) == (3, []) and "different element types (X float32, X2 float64)" in err
    code, out, err = run(["verify", unsat, "--network", f"N1={n1}", "--network", f"N2={n1}"], capsys)
    assert (code, out) == (3, []) and "declared float64 but the model's value is float32" in err
    both64 = tmp_path / "both64.vnnlib"
    both64.write_text(Path(unsat).read_text().replace("float32", "float64"))
    code, out, err = run(["verify", str(both64), "--network", f"N1={n2}", "--network", f"N2={n2}"], capsys)
    assert (code, out) == (0, ["unsat"])


def test_hidden_values_are_constrained_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = mlp_net(tmp_path / "mlp.onnx")
    decls = """(declare-network f (declare-input X float32 [1,2]) (declare-hidden H float32 [1,3] "pre")
                (declare-output Y float32 [1,2]))
(assert (>= X[0,0] -1)) (assert (<= X[0,0] 1)) (assert (>= X[0,1] -1)) (assert (<= X[0,1] 1))
"""
    # pre[1] = 0.5 x0 + 2 x1 - 0.5 lies in [-3, 2]
    code, out, _ = run(["verify", query(tmp_path, decls + "(assert (>= H[0,1] 2.1))\n"), "--network", f"f={model}"],
                       capsys)
    assert (code, out) == (0, ["unsat"])
    code, out, _ = run(["verify", query(tmp_path, decls + "(assert (>= H[0,1] 1.5))\n(assert (>= Y[0,1] 0))\n"),
                        "--network", f"f={model}"], capsys)
    assert out[0] == "sat"
    got = parse_assignment(out[1:])
    pre, y = ort_run(model, {"x": got["X"].astype(np.float32)}, ["pre", "y"])
    np.testing.assert_array_equal(pre, got["H"].astype(np.float32))
    np.testing.assert_array_equal(y, got["Y"].astype(np.float32))
    assert got["H"][0, 1] >= 1.5 and got["Y"][0, 1] >= 0


def test_inputs_bound_by_onnx_name_and_linear_input_constraints(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = sub_net(tmp_path / "sub.onnx")
    # declared in the opposite order of the ONNX inputs, bound by name: Y = A - B
    decls = """(declare-network f (declare-input B float32 [1] "b") (declare-input A float32 [1] "a")
                (declare-output Y float32 [1] "y"))
(assert (>= A[0] 0)) (assert (<= A[0] 1)) (assert (>= B[0] 0)) (assert (<= B[0] 1))
(assert (>= (+ A[0] B[0]) 1.5))
"""
    net = ["--network", f"f={model}"]
    assert run(["verify", query(tmp_path, decls + "(assert (>= Y[0] 0.9))\n"), *net], capsys)[1] == ["unsat"]
    _, out, _ = run(["verify", query(tmp_path, decls + "(assert (>= Y[0] 0.4))\n"), *net], capsys)
    assert out[0] == "sat"
    got = parse_assignment(out[1:])
    assert list(got) == ["B", "A", "Y"]
    (y,) = ort_run(model, {"a": got["A"].astype(np.float32), "b": got["B"].astype(np.float32)}, ["y"])
    np.testing.assert_array_equal(y, got["Y"].astype(np.float32))
    assert got["A"][0] + got["B"][0] >= 1.5 and got["Y"][0] >= 0.4


def test_strict_and_not_equal_input_constraints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = relu_net(tmp_path / "relu.onnx")
    decls = "(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n" \
            "(assert (>= X[0] -1)) (assert (<= X[0] 1))\n"
    net = ["--network", f"f={model}"]
    assert run(["verify", query(tmp_path, decls + "(assert (< X[0] 0.2)) (assert (>= Y[0] 0.5))\n"), *net],
               capsys)[1] == ["unsat"]
    _, out, _ = run(["verify", query(tmp_path, decls + "(assert (!= X[0] 0.95)) (assert (>= Y[0] 0.9))\n"),
                        *net], capsys)
    assert out[0] == "sat"
    got = parse_assignment(out[1:])
    assert got["X"][0] != np.float32(0.95) and got["Y"][0] >= 0.9


def test_constant_int64_output_is_folded_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = shape_net(tmp_path / "shape.onnx")
    decls = "(declare-network f (declare-input X float32 [3]) (declare-output Y int64 [1]))\n" + "".join(
        f"(assert (>= X[{i}] 0)) (assert (<= X[{i}] 1))\n" for i in range(3))
    net = ["--network", f"f={model}"]
    assert run(["verify", query(tmp_path, decls + "(assert (>= Y[0] 4))\n"), *net], capsys)[1] == ["unsat"]
    _, out, _ = run(["verify", query(tmp_path, decls + "(assert (== Y[0] 3))\n"), *net], capsys)
    assert out[0] == "sat" and parse_assignment(out[1:])["Y"].tolist() == [3.0]
    assert out[-2:] == ["Y int64 [1]", "3"]


def test_serialised_assignment_matches_the_printed_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = mlp_net(tmp_path / "mlp.onnx")
    text = query(tmp_path, """(declare-network f (declare-input X float32 [1,2]) (declare-output Y float32 [1,2]))
(assert (>= X[0,0] -1)) (assert (<= X[0,0] 1)) (assert (>= X[0,1] -1)) (assert (<= X[0,1] 1))
(assert (>= Y[0,0] 1.0))
""")
    _, printed, _ = run(["verify", text, "--network", f"f={model}"], capsys)
    folder = tmp_path / "assignment"
    _, out, _ = run(["verify", text, "--network", f"f={model}", "--serialise-assignments", str(folder)], capsys)
    assert printed[0] == "sat" and out == ["sat"]
    x, y = read_assignment(folder / "X.pb"), read_assignment(folder / "Y.pb")
    assert x.dtype == np.float32 and x.shape == (1, 2) and y.shape == (1, 2)
    (ref,) = ort_run(model, {"x": x}, ["y"])
    np.testing.assert_array_equal(ref, y)
    assert y[0, 0] >= 1.0


BAD = [
    ("(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
     "(assert (>= X[0] 0)) (assert (<= X[0] 1)) (assert (>= (* X[0] Y[0]) 1))\n", {"f"}, "polynomial"),
    ("(declare-network f (declare-input X float64 [1]) (declare-output Y float32 [1]))\n"
     "(assert (>= X[0] 0)) (assert (<= X[0] 1))\n", {"f"}, "declared float64 but the model's value is float32"),
    ("(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [1]))\n"
     "(assert (>= X[0] 0)) (assert (<= X[0] 1))\n", {"f"}, "has shape [1]"),
    ("(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
     "(assert (>= X[0] 0)) (assert (<= X[0] 1))\n", {"g"}, "declares no network g"),
    ("(declare-network f (declare-input X float32 [1]) (declare-hidden H float32 [1] \"nope\") "
     "(declare-output Y float32 [1]))\n(assert (>= X[0] 0)) (assert (<= X[0] 1))\n", {"f"}, "'nope'"),
]


@pytest.mark.parametrize(("text", "names", "message"), BAD)
def test_bad_input_is_an_error_never_a_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                               names: set[str], message: str) -> None:
    model = relu_net(tmp_path / "relu.onnx")
    nets = [a for n in sorted(names) for a in ("--network", f"{n}={model}")]
    code, out, err = run(["verify", query(tmp_path, text), *nets], capsys)
    assert code == 3 and out == [] and message in err


def test_unbounded_input_gives_sat_or_unknown_never_unsat(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    model = relu_net(tmp_path / "relu.onnx")
    decls = "(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n(assert (<= X[0] 1))\n"
    net = ["--network", f"f={model}"]
    # relu(X) <= 1 on X <= 1: "Y >= 2" has no solution, but the proof covers a finite part only
    assert run(["verify", query(tmp_path, decls + "(assert (>= Y[0] 2))\n"), *net], capsys)[1] == ["unknown"]
    _, out, _ = run(["verify", query(tmp_path, decls + "(assert (<= Y[0] 0))\n"), *net], capsys)
    assert out[0] == "sat" and parse_assignment(out[1:])["X"][0] <= 0


def test_boundary_counterexample_is_checked_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = relu_net(tmp_path / "relu.onnx")
    # the only solution is X = 1 exactly (the box corner): accepted by the exact rational re-check
    text = query(tmp_path, "(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n"
                           "(assert (>= X[0] -1)) (assert (<= X[0] 1)) (assert (>= Y[0] 1))\n")
    _, out, _ = run(["verify", text, "--network", f"f={model}"], capsys)
    assert out[0] == "sat" and parse_assignment(out[1:])["Y"][0] == 1.0


def test_missing_model_and_malformed_network_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = query(tmp_path, "(declare-network f (declare-input X float32 [1]) (declare-output Y float32 [1]))\n")
    code, out, err = run(["verify", text], capsys)
    assert (code, out) == (3, []) and "no model given for network f" in err
    code, out, err = run(["verify", text, "--network", "f"], capsys)
    assert code == 3 and "NAME=MODEL" in err
    code, out, err = run(["verify", text, "--network", f"f={tmp_path / 'missing.onnx'}"], capsys)
    assert code == 3 and "no such ONNX file" in err


def test_vnnlib_1_query_with_one_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = relu_net(tmp_path / "relu.onnx")
    path = tmp_path / "old.vnnlib"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"
                    "(assert (>= Y_0 0.5))\n")
    _, out, _ = run(["verify", str(path), "--network", f"anything={model}"], capsys)
    assert out[0] == "sat" and out[1] == "X_0 Real []" and float(out[2]) >= 0.5


def test_unsat_certificate_of_a_vnnlib_1_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``verify --certificate``: the proof of an unsat answer, which ``verify-check`` accepts;
    ``supports`` lists the certified ops, each of which the checker reads."""
    from verify_check.cli import VALID, check

    model = relu_net(tmp_path / "relu.onnx")
    path, proof = tmp_path / "old.vnnlib", tmp_path / "proof.npz"
    path.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (>= X_0 -1))\n(assert (<= X_0 1))\n"
                    "(assert (>= Y_0 50))\n")
    _, out, _ = run(["verify", str(path), "--network", f"n={model}", "--certificate", str(proof)], capsys)
    assert out == ["unsat"]
    assert check(str(model), str(path), str(proof))[0] == VALID
    assert run(["supports", "--unsat-proofs"], capsys)[1] == ["true"]
    assert {"Gemm", "MatMul", "Relu"} <= set(run(["supports", "--onnx-operators-unsat-proofs"], capsys)[1])


def test_supports_answers_every_capability(capsys: pytest.CaptureFixture[str]) -> None:
    for capability, expected in capabilities().items():
        code, out, _ = run(["supports", capability], capsys)
        assert (code, out) == (0, expected)
    assert run(["supports", "--vnnlib-versions"], capsys)[1] == ["1.0", "2.0"]
    ops = run(["supports", "--onnx-operators"], capsys)[1]
    assert {"Relu", "Gemm", "Conv", "Constant", "Shape", "Cast float32 float64"} <= set(ops)
    assert {"Equal", "Greater", "Not", "ArgMax", "Where float32 float64"} <= set(ops)  # on input-dependent values
    assert not {"Linear", "Power"} & set(ops)  # our own ops, not ONNX operators
    assert run(["supports", "--no-such-thing"], capsys)[0] == 2
    assert run(["--name"], capsys)[1][0].startswith("verifier")
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out[0].count(".") >= 1


def softmax_net(path: Path) -> Path:
    """y = softmax(x), x and y of shape [2]."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=0)], "softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return save(helper.make_model(graph), path)


def test_input_splitting_when_the_bounds_do_not_reach_the_input(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # softmax is bounded by intervals (no input coefficients): Y0 >= 0.85 and Y1 >= 0.2 cannot
    # both hold (Y0 + Y1 = 1), but each row alone can, so the proof needs input splitting
    model = softmax_net(tmp_path / "softmax.onnx")
    text = query(tmp_path, "(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
                           "(assert (>= X[0] -1)) (assert (<= X[0] 1)) (assert (>= X[1] -1)) (assert (<= X[1] 1))\n"
                           "(assert (>= Y[0] 0.85)) (assert (>= Y[1] 0.2))\n")
    code, out, err = run(["verify", text, "--network", f"f={model}", "--timeout", "60"], capsys)
    assert code == 0 and out[0] in ("unsat", "unknown", "timed-out") and "internal error" not in err


@pytest.mark.parametrize(("clause", "expected"), [
    ("(< Y[0] 0.0)", "unsat"),  # float softmax never goes below 0 ...
    ("(> Y[0] 1.0)", "unsat"),  # ... nor above 1
    ("(<= Y[0] 0.0)", "sat"),  # but reaches 0 exactly: exp(-2000) underflows
    ("(>= Y[0] 1.0)", "sat"),  # and 1 exactly
])
def test_softmax_range_with_strict_and_boundary_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      clause: str, expected: str) -> None:
    """Strict rows are refuted by bounds that touch their constant (``Y >= 0`` refutes
    ``Y < 0``); the non-strict rows are satisfiable only at the boundary, and onnxruntime
    confirms the printed counterexample reaches it."""
    model = softmax_net(tmp_path / "softmax.onnx")
    text = query(tmp_path, "(declare-network f (declare-input X float32 [2]) (declare-output Y float32 [2]))\n"
                           "(assert (and (<= X[0] 1000.0) (>= X[0] -1000.0)))\n"
                           "(assert (and (<= X[1] 1000.0) (>= X[1] -1000.0)))\n"
                           f"(assert {clause})\n")
    code, out, _ = run(["verify", text, "--network", f"f={model}", "--timeout", "60"], capsys)
    assert code == 0 and out[0] == expected
    if expected == "sat":
        got = parse_assignment(out[1:])
        (y,) = ort_run(model, {"x": got["X"].astype(np.float32)}, ["y"])
        assert y[0] == (0.0 if "<=" in clause else 1.0)
        assert np.all(np.abs(got["X"]) <= 1000.0)


def test_supports_into_a_closed_pipe_is_quiet() -> None:
    """``verifier supports ... | head -1``: the reader goes away; no traceback, exit 0."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "verifier.standard.cli", "supports", "--onnx-operators"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and "Traceback" not in errors, errors
