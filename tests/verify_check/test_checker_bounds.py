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


def write_chain(path: Path, rng: np.random.Generator, n_in: int, widths: list[int], vector: bool = False,
                leak: float | None = None) -> None:
    """A random float32 chain: ``x - c`` (Sub), ``* s`` (Mul), Flatten, then per hidden width a
    MatMul + Add (even layers) or a Gemm (odd layers) and a Relu (a LeakyRelu with ``leak``),
    the output layer last, then ``/ 2`` (Div) and ``c - y`` (Sub with the constant first).
    ``vector``: a 1-D input and ``W x`` MatMuls (the weight first) for every layer, no Flatten."""
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
            nodes.append(helper.make_node("Relu", [value], [f"a{k}"]) if leak is None else
                         helper.make_node("LeakyRelu", [value], [f"a{k}"], alpha=leak))
            value = f"a{k}"
    nodes.append(helper.make_node("Div", [value, const("two", np.array([2.0]))], ["h"]))
    nodes.append(helper.make_node("Sub", [const("c1", rng.normal(size=(widths[-1],))), "h"], ["y"]))
    out = [widths[-1]] if vector else [1, widths[-1]]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def write_conv(path: Path, rng: np.random.Generator, channels: int = 2, side: int = 5, leak: float | None = None,
               pool: str | None = None) -> None:
    """A random float32 convolutional chain on a ``(1, channels, side, side)`` input: a padded,
    strided 3x3 Conv with bias, a Relu (a LeakyRelu with ``leak``), with ``pool`` ``"max"`` a
    2x2 MaxPool (stride 1, padded at the end: same shape) or ``"avg"`` a Pad (one column of 0.5)
    and a 2x2 AveragePool (stride 1, padded at the end, the padding not counted), a 2x1 dilated
    Conv without bias, a Relu, Flatten and a Gemm to 3 outputs."""
    init = [numpy_helper.from_array((rng.normal(size=(3, channels, 3, 3)) / 3).astype(np.float32), "K0"),
            numpy_helper.from_array((rng.normal(size=3) * 0.3).astype(np.float32), "b0"),
            numpy_helper.from_array((rng.normal(size=(2, 3, 2, 1)) / 2).astype(np.float32), "K1")]
    first = helper.make_node("Relu", ["c0"], ["a0"]) if leak is None else \
        helper.make_node("LeakyRelu", ["c0"], ["a0"], alpha=leak)
    nodes = [helper.make_node("Conv", ["x", "K0", "b0"], ["c0"], pads=[1, 0, 1, 1], strides=[2, 1]), first]
    if pool == "max":
        nodes.append(helper.make_node("MaxPool", ["a0"], ["m0"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]))
    elif pool == "avg":
        init += [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 0, 1], dtype=np.int64), "pads"),
                 numpy_helper.from_array(np.array(0.5, dtype=np.float32), "fill")]
        nodes += [helper.make_node("Pad", ["a0", "pads", "fill"], ["q0"]),
                  helper.make_node("AveragePool", ["q0"], ["m0"], kernel_shape=[2, 2], pads=[0, 0, 1, 0])]
    nodes += [helper.make_node("Conv", ["m0" if pool else "a0", "K1"], ["c1"], dilations=[2, 1]),
             helper.make_node("Relu", ["c1"], ["a1"]), helper.make_node("Flatten", ["a1"], ["f"], axis=1)]
    flat = 2 * ((side - 1) // 2 - 1) * (side - 1)
    init.append(numpy_helper.from_array((rng.normal(size=(3, flat)) / np.sqrt(flat)).astype(np.float32), "W"))
    nodes.append(helper.make_node("Gemm", ["f", "W"], ["y"], transB=1))
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [1, channels, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


LAYOUTS = ("xW", "Wx", "leaky", "conv", "pool", "avgpool")
"""The random networks the oracle tests run on: MatMul/Gemm chains with ``x W`` and ``W x``,
with LeakyRelu, a convolutional one, one with MaxPool and one with Pad and AveragePool."""


def _write(path: Path, rng: np.random.Generator, layout: str) -> tuple[int, list[int]]:
    """A random network of ``layout`` at ``path``: its input size and shape."""
    if layout in ("conv", "pool", "avgpool"):
        write_conv(path, rng, leak=float(rng.uniform(0.01, 0.3)), pool={"pool": "max", "avgpool": "avg"}.get(layout))
        return 50, [1, 2, 5, 5]
    n_in = int(rng.integers(2, 5))
    widths = [int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3]
    write_chain(path, rng, n_in, widths, layout == "Wx", float(rng.uniform(0.01, 0.5)) if layout == "leaky" else None)
    return n_in, [n_in] if layout == "Wx" else [1, n_in]


def _samples(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, count: int) -> np.ndarray:
    x = lo + rng.random((count, lo.size)) * (hi - lo)
    corners = np.where(rng.random((64, lo.size)) < 0.5, lo, hi)
    return np.concatenate([x, corners, lo[None], hi[None]]).astype(np.float32)


def _violations(path: Path, seed: int, layout: str = "xW") -> int:
    """Sampled points (onnxruntime) outside the checker's output bounds or below its row
    bounds, summed over a few boxes."""
    rng = np.random.default_rng(seed)
    n_in, shape = _write(path, rng, layout)
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
        y = np.stack([session.run(None, {"x": p.reshape(shape)})[0].reshape(-1) for p in x]).astype(np.float64)
        bad += int(((y < values.lo[-1]) | (y > values.hi[-1])).sum())
        bad += int(((y @ C.T - d) < rows).sum())
    return bad


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", range(6))
def test_bounds_hold_at_sampled_points(tmp_path: Path, seed: int, layout: str) -> None:
    assert _violations(tmp_path / "chain.onnx", seed, layout) == 0


def test_wrong_chord_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the ReLU chord's slope halved (in the backward rule and in the forms)."""
    original = bounds._relu_lines

    def halved(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, slopes: np.ndarray | None, leak: float
               ) -> tuple[np.ndarray, np.ndarray]:
        positive = lam >= 0
        new, term = original(lam, lo, hi, slopes, leak)
        return np.where(positive, new, new / 2), term / 2

    monkeypatch.setattr(bounds, "_relu_lines", halved)
    monkeypatch.setattr(bounds, "MAX_INPUTS", 0, raising=False)
    import verify_check.forms as forms

    monkeypatch.setattr(forms, "MAX_INPUTS", 0)
    assert sum(_violations(tmp_path / "chain.onnx", seed) for seed in range(6)) > 0


def test_ignored_leak_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: LeakyRelu's lines taken as Relu's (the leak ignored)."""
    import verify_check.forms as forms

    original = bounds.relu_chord

    def as_relu(lo: np.ndarray, hi: np.ndarray, leak: float = 0.0) -> tuple[np.ndarray, ...]:
        return original(lo, hi, 0.0)

    monkeypatch.setattr(bounds, "relu_chord", as_relu)
    monkeypatch.setattr(forms, "relu_chord", as_relu)
    assert sum(_violations(tmp_path / "chain.onnx", seed, "leaky") for seed in range(6)) > 0


def test_window_line_without_intercept_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: the max layer's upper line ``s x[up]`` without its intercept."""
    import verify_check.forms as forms

    original = bounds.window_planes

    def no_intercept(index: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        low, up, s, b = original(index, lo, hi)
        return low, up, s, 0 * b

    monkeypatch.setattr(bounds, "window_planes", no_intercept)
    monkeypatch.setattr(forms, "window_planes", no_intercept)
    assert sum(_violations(tmp_path / "chain.onnx", seed, "pool") for seed in range(6)) > 0


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


ZOO_CONV = ("oval21__cifar_deep_kw", "collins_rul_cnn__NN_rul_small_window_20", "verivital__Convnet_maxpool",
            "verivital__Convnet_avgpool")


@pytest.mark.parametrize("name", ZOO_CONV)
def test_real_conv_networks_are_read_as_onnxruntime_runs_them(name: str) -> None:
    """The checker's reading of the zoo's Conv/MaxPool/AveragePool networks (dense matrices,
    windows): its
    value bounds on the point box of a random input hold onnxruntime's float32 output, within
    about the float32 error of the network (a misread matrix would miss it)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "zoo" / "onnx" / f"{name}.onnx"
    chain = read_model(str(path))
    session = ort.InferenceSession(str(path))
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in session.get_inputs()[0].shape]
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.uniform(0, 1, size=shape).astype(np.float32)
        y = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1).astype(np.float64)
        values = bound_values(chain, x.reshape(1, -1).astype(np.float64), x.reshape(1, -1).astype(np.float64), {},
                              refine=False)
        assert np.all(values.lo[-1][0] <= y) and np.all(y <= values.hi[-1][0])
        assert np.max(values.hi[-1][0] - values.lo[-1][0]) <= 1e-2 * (1 + np.abs(y).max())  # float32 error only
