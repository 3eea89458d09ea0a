"""The checker's own bound code against onnxruntime: on random float32 chains that use every
certified op, its value bounds and row bounds must hold at sampled points and box corners (the
outputs that onnxruntime computes), and a deliberately wrong rule (a ReLU chord of half the
slope) must be caught by the same check. Its readers name what they refuse."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import verify_check.bounds as bounds
from verify_check.bounds import bound_values, interval_rows, row_bounds
from verify_check.model import ModelError, read_model
from verify_check.spec import Region, SpecError, float32_box, read_spec


def write_chain(path: Path, rng: np.random.Generator, n_in: int, widths: list[int], vector: bool = False) -> None:
    """A random float32 chain: ``x - c`` (Sub), ``* s`` (Mul), Flatten, then per hidden width a
    MatMul + Add (even layers) or a Gemm (odd layers) and a Relu, the output layer last, then
    ``/ 2`` (Div) and ``c - y`` (Sub with the constant first). ``vector``: a 1-D input and
    ``W x`` MatMuls (the weight first) for every layer, no Flatten."""
    init, nodes = [], []

    def const(name: str, value: np.ndarray) -> str:
        init.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    shape = [n_in] if vector else [1, n_in]
    nodes.append(helper.make_node("Sub", ["x", const("c0", rng.normal(size=shape))], ["s0"]))
    nodes.append(helper.make_node("Mul", ["s0", const("m0", rng.uniform(0.5, 2, size=(n_in,)))], ["s1"]))
    flat = {} if vector else {"axis": 1}
    nodes.append(helper.make_node("Identity" if vector else "Flatten", ["s1"], ["v0"], **flat))
    value, sizes = "v0", [n_in, *widths]
    for k in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
        b = rng.normal(size=sizes[k + 1]) * 0.3
        if vector:
            nodes.append(helper.make_node("MatMul", [const(f"W{k}", w), value], [f"p{k}"]))
            nodes.append(helper.make_node("Add", [f"p{k}", const(f"b{k}", b)], [f"z{k}"]))
        elif k % 2 == 0:
            nodes.append(helper.make_node("MatMul", [value, const(f"W{k}", w.T)], [f"p{k}"]))
            nodes.append(helper.make_node("Add", [f"p{k}", const(f"b{k}", b)], [f"z{k}"]))
        else:
            nodes.append(helper.make_node("Gemm", [value, const(f"W{k}", w), const(f"b{k}", b)], [f"z{k}"], transB=1))
        value = f"z{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [value], [f"a{k}"]))
            value = f"a{k}"
    nodes.append(helper.make_node("Div", [value, const("two", np.array([2.0]))], ["h"]))
    nodes.append(helper.make_node("Sub", [const("c1", rng.normal(size=(widths[-1],))), "h"], ["y"]))
    out = [widths[-1]] if vector else [1, widths[-1]]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def _samples(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, count: int) -> np.ndarray:
    x = lo + rng.random((count, lo.size)) * (hi - lo)
    corners = np.where(rng.random((64, lo.size)) < 0.5, lo, hi)
    return np.concatenate([x, corners, lo[None], hi[None]]).astype(np.float32)


def _violations(path: Path, seed: int, vector: bool = False) -> int:
    """Sampled points (onnxruntime) outside the checker's output bounds or below its row
    bounds, summed over a few boxes."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(2, 5))
    write_chain(path, rng, n_in, [int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3], vector)
    chain = read_model(str(path))
    session = ort.InferenceSession(str(path))
    C = np.array([[1.0, -1.0, 0.0], [0.0, 2.0, -0.5]])
    d = np.array([0.25, -0.125])
    bad = 0
    for radius in (1.0, 0.1, 0.0):
        centre = rng.normal(size=n_in).astype(np.float32).astype(np.float64)
        lo, hi = (centre - radius).astype(np.float32).astype(np.float64), (centre + radius).astype(np.float32)
        hi = hi.astype(np.float64)
        values = bound_values(chain, lo[None], hi[None], {})
        rows = np.maximum(row_bounds(chain, values, C, d).lower, interval_rows(values, C, d))[0]
        x = _samples(rng, lo, hi, 2000)
        y = np.stack([session.run(None, {"x": p if vector else p[None]})[0].reshape(-1) for p in x]).astype(np.float64)
        bad += int(((y < values.lo[-1]) | (y > values.hi[-1])).sum())
        bad += int(((y @ C.T - d) < rows).sum())
    return bad


@pytest.mark.parametrize("vector", [False, True], ids=["xW", "Wx"])
@pytest.mark.parametrize("seed", range(6))
def test_bounds_hold_at_sampled_points(tmp_path: Path, seed: int, vector: bool) -> None:
    assert _violations(tmp_path / "chain.onnx", seed, vector) == 0


def test_wrong_chord_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the ReLU chord's slope halved (in the backward rule and in the forms)."""
    original = bounds._relu_lines

    def halved(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, slopes: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        positive = lam >= 0
        new, term = original(lam, lo, hi, slopes)
        return np.where(positive, new, new / 2), term / 2

    monkeypatch.setattr(bounds, "_relu_lines", halved)
    monkeypatch.setattr(bounds, "MAX_INPUTS", 0, raising=False)
    import verify_check.forms as forms

    monkeypatch.setattr(forms, "MAX_INPUTS", 0)
    assert sum(_violations(tmp_path / "chain.onnx", seed) for seed in range(6)) > 0


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.eye(2, dtype=np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["z"], name="dense"),
                               helper.make_node("Sigmoid", ["z"], ["y"], name="squash")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="'squash': op Sigmoid"):
        read_model(str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("text, message", [
    ("(declare-const X_0 Real)(assert (<= X_0 1))(assert (<= Y_0 0))", "no lower or upper bound"),
    ("(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= Z_0 0))", "unknown symbol 'Z_0'"),
    ("(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= (* Y_0 Y_1) 0))", "non-linear"),
    ("(assert (>= X_0 0)", "unclosed"),
])
def test_spec_errors_name_the_token(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        read_spec(text, 1, 2)


def test_float32_box_holds_the_region() -> None:
    """Decimal bounds that are not float32 values: the box's corners are the nearest float32
    values outside them, exactly."""
    text = "(assert (>= X_0 0.1))(assert (<= X_0 0.3))(assert (>= X_1 -1e-3))(assert (<= X_1 2))" \
           "(assert (or (<= Y_0 0.7) (and (<= Y_0 Y_1) (>= Y_1 -3))))"
    (region,) = read_spec(text, 2, 2)
    lo, hi = float32_box(region)
    for value, low in zip(lo, region.lower, strict=True):
        assert Fraction(float(value)) <= low
    for value, high in zip(hi, region.upper, strict=True):
        assert Fraction(float(value)) >= high
        assert Fraction(float(np.nextafter(np.float32(value), np.float32(-np.inf)))) < high
    assert isinstance(region, Region) and len(region.C) == 2 and region.C[1].shape == (2, 2)
    assert region.d[0][0] >= 0.7 and Fraction(region.d[0][0]) >= Fraction("0.7")


def test_missing_float32_error_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: no float32 error terms. At degenerate boxes (a point) only they separate
    the bounds of the exact network from onnxruntime's float32 outputs: caught."""
    monkeypatch.setattr(bounds, "float_error", lambda *args: None)
    import verify_check.forms as forms

    monkeypatch.setattr(forms, "MAX_INPUTS", 0)
    monkeypatch.setattr(bounds, "MAX_INPUTS", 0)
    assert sum(_violations(tmp_path / "chain.onnx", seed) for seed in range(6)) > 0
