"""Elementwise arithmetic, activations and reductions against onnxruntime and by sampling.

For every case: ``forward`` matches onnxruntime (float32); ``fp_error`` with the float32 unit
bounds the gap between onnxruntime's float32 output and our float64 forward; ``interval`` holds
every sampled point (and every box corner when there are few) of random boxes, is finite where
the op is bounded and tight on degenerate boxes; constant folding (every argument batched)
agrees with the mixed call.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.ops.elementwise_helpers import Case, Dyn, args_for, our_node, run_ort, sample, to_torch
from verifier.errors import ModelError

F = np.float32
BOOL, INT64 = TensorProto.BOOL, TensorProto.INT64
X = Dyn((2, 3, 4))
SMALL = Dyn((3, 4))
POS = Dyn((3, 4), 0.05, 5.0)


def _unary(op: str, spec: Dyn = SMALL, **kw: object) -> Case:
    return Case(op, (spec,), **kw)  # type: ignore[arg-type]


UNARY = [
    _unary("Relu"),
    _unary("LeakyRelu", attrs={"alpha": 0.1}),
    _unary("LeakyRelu", attrs={"alpha": -0.5}, label="negslope"),
    _unary("Sigmoid", Dyn((3, 4), -12, 12)),
    _unary("Tanh", Dyn((3, 4), -6, 6)),
    _unary("Exp", Dyn((3, 4), -10, 10)),
    _unary("Erf"),
    _unary("Softplus", Dyn((3, 4), -25, 25)),
    _unary("Softsign", Dyn((3, 4), -20, 20)),
    _unary("Sqrt", Dyn((3, 4), 0, 50)),
    _unary("Log", POS),
    _unary("Abs"),
    _unary("Neg"),
    _unary("Reciprocal", POS),
    _unary("Reciprocal", Dyn((3, 4), -5, -0.1), label="neg"),
    _unary("Reciprocal", bounded=False, label="straddle"),
    _unary("Sin", Dyn((3, 4), -12, 12)),
    _unary("Cos", Dyn((3, 4), -12, 12)),
    _unary("Elu", attrs={"alpha": 1.3}),
    _unary("Elu", attrs={"alpha": -0.7}, label="negalpha"),
    _unary("Selu"),
    _unary("HardSigmoid", Dyn((3, 4), -6, 6)),
    _unary("HardSigmoid", Dyn((3, 4), -6, 6), attrs={"alpha": -0.3, "beta": 0.4}, label="neg"),
    _unary("HardSwish", Dyn((3, 4), -6, 6)),
    _unary("Gelu", opset=20),
    _unary("Gelu", opset=20, attrs={"approximate": "tanh"}, label="tanh"),
    _unary("Power", attrs={"exponent": 2.0}, label="square"),
    _unary("Power", attrs={"exponent": 3.0}, label="cube"),
    _unary("Power", POS, attrs={"exponent": 0.5}, label="root"),
    _unary("Power", POS, attrs={"exponent": 2.5}, label="frac"),
    _unary("Power", POS, attrs={"exponent": -0.5}, label="negfrac"),
    _unary("Power", POS, attrs={"exponent": -1.0}, label="inverse"),
    _unary("Power", Dyn((3, 4), -5, -0.1), attrs={"exponent": -2.0}, label="negsquare"),
    _unary("Power", attrs={"exponent": -1.0}, bounded=False, label="straddle"),
    _unary("Floor"),
    _unary("Ceil"),
    _unary("Round", Dyn((3, 4), -4, 4, integral=False)),
    _unary("Sign"),
    _unary("Clip", opset=6, attrs={"min": -1.0, "max": 2.0}),
    Case("Clip", (SMALL, F(-1.5), F(0.5)), opset=11),
    Case("Clip", (SMALL, F(0.25)), opset=13, label="minonly"),
    Case("Clip", (SMALL, None, F(0.25)), opset=13, label="maxonly"),
    Case("PRelu", (X, np.array([0.2, -0.3, 1.5, 0.0], F))),
    Case("PRelu", (X, np.array([[0.2], [-0.7], [0.05]], F)), opset=9, label="bcast"),
    _unary("Softmax", X, opset=13, attrs={"axis": 1}),
    _unary("Softmax", Dyn((2, 3, 4), -20, 20), opset=13, label="wide"),
    _unary("Softmax", X, opset=11, attrs={"axis": 1}, label="flatten"),
    _unary("Softmax", X, opset=11, label="flatten-default"),
    _unary("LogSoftmax", X, opset=13),
    _unary("LogSoftmax", X, opset=11, attrs={"axis": 2}, label="flatten"),
    _unary("Softmax", X, opset=11, attrs={"axis": -2}, label="flatten-neg"),
    _unary("LogSoftmax", X, opset=1, attrs={"axis": -1}, label="flatten-neg"),
    _unary("Softmax", Dyn((5,)), opset=13, attrs={"axis": 0}, label="corners"),
]

D2 = Dyn((3, 1))
D3 = Dyn((4,))
ARITH = [
    Case("Add", (X, np.linspace(-1, 1, 4).astype(F))),
    Case("Add", (D2, D3), label="dyn"),
    Case("Sub", (np.linspace(-1, 1, 4).astype(F), X)),
    Case("Sub", (D2, D3), label="dyn"),
    Case("Mul", (X, np.array([-2.0, 0.0, 0.5, 3.0], F))),
    Case("Mul", (D2, D3), label="dyn"),
    Case("Mul", (Dyn((3, 4), 0.0, 2.0), Dyn((3, 4), -3.0, -1.0)), label="signs"),
    Case("Div", (X, np.array([-2.0, 0.25, 0.5, 3.0], F))),
    Case("Div", (np.array([-2.0, 0.25, 0.5, 3.0], F), Dyn((3, 4), 0.5, 4.0)), label="recip"),
    Case("Div", (D2, Dyn((4,), 0.5, 3.0)), label="dynpos"),
    Case("Div", (D2, Dyn((4,), -3.0, -0.5)), label="dynneg"),
    Case("Div", (D2, D3), bounded=False, label="dynzero"),
    Case("Div", (Dyn((3,), -50, 50, "int64"), np.array([3, -4, 7], np.int64)), out_type=INT64, label="int"),
    Case("Pow", (SMALL, F(2.0)), label="sq"),
    Case("Pow", (SMALL, F(3.0)), label="cube"),
    Case("Pow", (SMALL, np.int64(2)), label="intexp"),
    Case("Pow", (POS, F(-1.0)), label="inv"),
    Case("Pow", (SMALL, F(-2.0)), bounded=False, label="invsq"),
    Case("Pow", (SMALL, F(-3.0)), bounded=False, label="invcube"),
    Case("Pow", (Dyn((3, 4), 0, 5), F(0.5)), label="sqrt"),
    Case("Pow", (POS, np.array([2.0, 3.0, 0.5, -1.5], F)), label="vec"),
    Case("Pow", (Dyn((4,), -3, 3), np.array([2.0, 3.0, 0.0, 4.0], F)), label="vecint"),
    Case("Pow", (Dyn((3, 4), 0.1, 3), Dyn((3, 4), -2, 2)), label="dynexp"),
    Case("Pow", (F(2.0), SMALL), label="constbase"),
    Case("Pow", (F(0.5), Dyn((2,))), label="constbase-corners"),
    Case("Max", (X, D3, np.array([[0.5], [-0.5], [0.0]], F))),
    Case("Min", (X, D3, np.array([[0.5], [-0.5], [0.0]], F))),
    Case("Max", (SMALL,), label="single"),
    Case("Sum", (X, D3, np.array([[0.5], [-0.5], [0.0]], F))),
    Case("Mean", (X, D3, np.array([[0.5], [-0.5], [0.0]], F))),
    Case("Where", (np.array([True, False, True, False]), X, np.float32(1.5))),
    Case("Where", (Dyn((3, 4), dtype="bool"), SMALL, D3), label="dyncond"),
    Case("Equal", (Dyn((4,), -2, 2, integral=True), np.array([0, 1, 0, 1], F)), out_type=BOOL),
    Case("Less", (SMALL, D3), out_type=BOOL),
    Case("Greater", (SMALL, np.float32(0)), out_type=BOOL),
    Case("LessOrEqual", (SMALL, D3), out_type=BOOL),
    Case("GreaterOrEqual", (SMALL, D3), out_type=BOOL),
    Case("Not", (Dyn((4,), dtype="bool"),), out_type=BOOL),
    Case("And", (Dyn((4,), dtype="bool"), np.array([True, False, True, True])), out_type=BOOL),
    Case("Or", (Dyn((4,), dtype="bool"), Dyn((4,), dtype="bool")), out_type=BOOL),
]


def _reduce(op: str, opset: int, axes: tuple[int, ...] | None, spec: Dyn = X, **attrs: int) -> Case:
    """A reduction with ``axes`` as an attribute (old opsets) or a constant input (new ones)."""
    new = opset >= (13 if op == "ReduceSum" else 18)
    label = f"axes{axes}" + "".join(f"-{k}{v}" for k, v in attrs.items())
    if axes is None:
        return Case(op, (spec,), attrs=attrs, opset=opset, label=label)
    if new:
        return Case(op, (spec, np.array(axes, np.int64)), attrs=attrs, opset=opset, label=label)
    return Case(op, (spec,), attrs={"axes": list(axes), **attrs}, opset=opset, label=label)


REDUCE = [
    _reduce("ReduceSum", 11, (1,), keepdims=0),
    _reduce("ReduceSum", 13, (-1,)),
    _reduce("ReduceSum", 13, None),
    _reduce("ReduceSum", 13, None, noop_with_empty_axes=1),
    _reduce("ReduceMean", 13, (0, 2)),
    _reduce("ReduceMean", 18, (-1, 1), keepdims=0),
    _reduce("ReduceMax", 13, (1,)),
    _reduce("ReduceMax", 18, None),
    _reduce("ReduceMin", 13, (0, -1), keepdims=0),
    _reduce("ReduceMin", 18, (2,)),
    _reduce("ReduceProd", 13, (1,), Dyn((2, 3, 4), -2, 2)),
    _reduce("ReduceProd", 18, None, Dyn((2, 3, 4), -1.5, 1.5)),
    _reduce("ReduceProd", 18, (2, 0), Dyn((2, 3, 4), 0.2, 2), keepdims=0),
    _reduce("ReduceL1", 13, (1,)),
    _reduce("ReduceL1", 18, None, keepdims=0),
    _reduce("ReduceL2", 13, (2,)),
    _reduce("ReduceL2", 18, (0, 1)),
    _reduce("ReduceSumSquare", 13, None),
    _reduce("ReduceSumSquare", 18, (-1,)),
    _reduce("ReduceLogSumExp", 13, (1,), Dyn((2, 3, 4), -20, 20)),
    _reduce("ReduceLogSumExp", 18, None),
    _reduce("ReduceL1", 18, None, noop_with_empty_axes=1),
    _reduce("ReduceSumSquare", 18, None, noop_with_empty_axes=1),
    Case("ArgMax", (Dyn((2, 3, 4), -2, 2, integral=True),), {"axis": 1, "keepdims": 0}, 13, INT64),
    Case("ArgMax", (Dyn((2, 3, 4), -2, 2, integral=True),), {"axis": -1, "select_last_index": 1}, 13, INT64,
         label="last"),
    Case("ArgMin", (Dyn((2, 3, 4), -2, 2, integral=True),), {"axis": 2, "select_last_index": 1}, 13, INT64,
         label="last"),
    Case("ArgMin", (X,), {"axis": 0}, 11, INT64),
]

CASES = UNARY + ARITH + REDUCE
IDS = [c.id for c in CASES]
BATCH = 3


def _feeds(case: Case, n: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i: sample(spec, n, rng) for i, spec in case.dynamic}


def _forward(case: Case, feeds: dict[int, np.ndarray], dtype: torch.dtype, fold: bool = False) -> torch.Tensor:
    node, op, kept = our_node(case)
    dyn = {i: to_torch(x, dtype) for i, x in feeds.items()}
    args, flags = args_for(case, kept, dyn, dtype, fold)
    (out,) = op.forward(node, args, flags)
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_onnxruntime(case: Case) -> None:
    feeds = _feeds(case, BATCH, 0)
    expected = run_ort(case, feeds)
    got = _forward(case, feeds, torch.float32).numpy()
    assert got.shape == expected.shape
    if case.out_type == TensorProto.FLOAT:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", [c for c in CASES if any(not isinstance(s, Dyn) and s is not None for s in c.inputs)],
                         ids=lambda c: c.id)
def test_constant_folding_call_agrees(case: Case) -> None:
    """With every argument batched (constants with a batch of 1) the result is the same."""
    feeds = _feeds(case, BATCH, 1)
    mixed = _forward(case, feeds, torch.float64)
    folded = _forward(case, feeds, torch.float64, fold=True)
    torch.testing.assert_close(folded, mixed, equal_nan=True, rtol=0, atol=0)


def _point_bounds(case: Case, feeds: dict[int, np.ndarray], unit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Our float64 forward at the points and the fp_error bound there (degenerate boxes)."""
    node, op, kept = our_node(case)
    dyn = {i: to_torch(x, torch.float64) for i, x in feeds.items()}
    args, flags = args_for(case, kept, dyn, torch.float64)
    (out,) = op.forward(node, args, flags)
    bounds = op.interval(node, args, args, flags)
    (err,) = op.fp_error(node, args, args, flags, bounds, unit)
    return out, torch.zeros_like(out) if err is None else torch.as_tensor(err).expand_as(out)


FLOAT_CASES = [c for c in CASES if c.out_type == TensorProto.FLOAT and c.float_inputs and not c.interval_error]


@pytest.mark.parametrize("case", FLOAT_CASES, ids=[c.id for c in FLOAT_CASES])
def test_fp_error_bounds_onnxruntime_float32(case: Case) -> None:
    feeds = _feeds(case, 64, 2)
    expected = torch.from_numpy(run_ort(case, feeds)).double()
    ours, err = _point_bounds(case, feeds, 2.0**-24)
    same = (expected == ours) | (torch.isnan(expected) & torch.isnan(ours))
    gap = torch.where(same, torch.zeros_like(ours), (expected - ours).abs())
    worst = (gap - err).max().item()
    assert worst <= 0, f"float32 error exceeds fp_error by {worst}"


def _boxes(spec: Dyn, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boxes inside the sampling range: degenerate, random, narrow, and the full range."""
    shape = spec.shape
    a, b = sample(spec, 2, rng).astype(np.float64)
    centre = rng.uniform(spec.low, spec.high, size=shape)
    half = 0.005 * (spec.high - spec.low)
    narrow = (np.maximum(centre - half, spec.low), np.minimum(centre + half, spec.high))
    full = (np.full(shape, spec.low, np.float64), np.full(shape, spec.high, np.float64))
    return [(a, a), (np.minimum(a, b), np.maximum(a, b)), narrow, full]


def _points(lo: np.ndarray, hi: np.ndarray, n: int, rng: np.random.Generator, corners: bool) -> np.ndarray:
    pts = lo + rng.uniform(size=(n, *lo.shape)) * (hi - lo)
    if corners:
        bits = (np.arange(2 ** lo.size)[:, None] >> np.arange(lo.size)) & 1
        pts = np.concatenate([pts, np.where(bits.reshape(-1, *lo.shape) == 1, hi, lo)])
    return pts


INTERVAL_CASES = [c for c in CASES if c.float_inputs]


@pytest.mark.parametrize("case", INTERVAL_CASES, ids=[c.id for c in INTERVAL_CASES])
def test_interval_is_sound(case: Case) -> None:
    node, op, kept = our_node(case)
    rng = np.random.default_rng(3)
    dyn_specs = dict(case.dynamic)
    boxes = {i: _boxes(spec, rng) for i, spec in dyn_specs.items()}
    few = sum(math.prod(s.shape) for s in dyn_specs.values()) <= 10
    for k in range(4):
        lows = {i: torch.from_numpy(boxes[i][k][0][None]) for i in dyn_specs}
        highs = {i: torch.from_numpy(boxes[i][k][1][None]) for i in dyn_specs}
        lower, flags = args_for(case, kept, lows, torch.float64)
        upper, _ = args_for(case, kept, highs, torch.float64)
        upper = [u if f else lo for u, lo, f in zip(upper, lower, flags, strict=True)]
        if case.interval_error:
            with pytest.raises(ModelError):
                op.interval(node, lower, upper, flags)
            return
        bounds = op.interval(node, lower, upper, flags)
        (lo_out,), (hi_out,) = bounds
        (err,) = op.fp_error(node, lower, upper, flags, bounds, 2.0**-53)
        err_t = torch.zeros(()) if err is None else torch.as_tensor(err)
        if case.bounded:
            assert torch.isfinite(lo_out).all() and torch.isfinite(hi_out).all(), f"box {k}: vacuous bounds"
        # Sample points: with few scalars, all corners of the box together with one shared draw.
        n = 2000
        if few:
            pts = _points(np.concatenate([boxes[i][k][0].ravel() for i in dyn_specs]),
                          np.concatenate([boxes[i][k][1].ravel() for i in dyn_specs]), n, rng, True)
            feeds, at = {}, 0
            for i, spec in dyn_specs.items():
                size = math.prod(spec.shape)
                feeds[i] = pts[:, at:at + size].reshape(-1, *spec.shape)
                at += size
        else:
            feeds = {i: _points(boxes[i][k][0], boxes[i][k][1], n, rng, False) for i in dyn_specs}
        dyn = {i: torch.from_numpy(x) for i, x in feeds.items()}
        args, sflags = args_for(case, kept, dyn, torch.float64)
        (vals,) = op.forward(node, args, sflags)
        ok = torch.isnan(vals) | ((vals >= lo_out - err_t) & (vals <= hi_out + err_t))
        assert ok.all(), f"box {k}: {(~ok).sum().item()} sampled outputs outside the bounds"
        if k == 0:  # degenerate box: the bounds are the value itself (a Boolean or index as a number)
            value = vals[:1] if vals.is_floating_point() else vals[:1].to(lo_out.dtype)  # Booleans, indices
            torch.testing.assert_close(lo_out.expand_as(value), value, rtol=1e-9, atol=1e-12, equal_nan=True)
            torch.testing.assert_close(hi_out.expand_as(value), value, rtol=1e-9, atol=1e-12, equal_nan=True)


EXTREMA = [
    (_unary("Sin", Dyn((1,))), math.pi / 2 + 6 * math.pi, 1.0),
    (_unary("Sin", Dyn((1,))), -math.pi / 2 - 10 * math.pi, -1.0),
    (_unary("Cos", Dyn((1,))), -4 * math.pi, 1.0),
    (_unary("Cos", Dyn((1,))), 7 * math.pi, -1.0),
    (_unary("Gelu", Dyn((1,)), opset=20), -0.7517915246935645, -0.16997120747990366),
    (_unary("Gelu", Dyn((1,)), opset=20, attrs={"approximate": "tanh"}), -0.7524614220710163, -0.17004075057125405),
    (_unary("HardSwish", Dyn((1,))), -1.5, -0.375),
    (_unary("Abs", Dyn((1,))), 0.0, 0.0),
    (_unary("LeakyRelu", Dyn((1,)), attrs={"alpha": -0.5}), 0.0, 0.0),
    (_unary("Elu", Dyn((1,)), attrs={"alpha": -0.5}), 0.0, 0.0),
    (Case("Pow", (Dyn((1,)), F(4.0))), 0.0, 0.0),
]


@pytest.mark.parametrize(("case", "point", "value"), EXTREMA, ids=[f"{c.id}@{p:.3f}" for c, p, _ in EXTREMA])
@pytest.mark.parametrize("width", [0.0, 1e-7, 1e-3, 0.5])
def test_interval_covers_interior_extremum(case: Case, point: float, value: float, width: float) -> None:
    """A box around an interior extremum must reach the extreme value (ends alone do not)."""
    node, op, kept = our_node(case)
    lo = torch.tensor([[point - width]], dtype=torch.float64)
    hi = torch.tensor([[point + width]], dtype=torch.float64)
    lower, flags = args_for(case, kept, {0: lo}, torch.float64)
    upper, _ = args_for(case, kept, {0: hi}, torch.float64)
    (lo_out,), (hi_out,) = op.interval(node, lower, upper, flags)
    assert lo_out.item() <= value + 1e-15 <= hi_out.item() + 2e-15


@pytest.mark.parametrize("case", FLOAT_CASES, ids=[c.id for c in FLOAT_CASES])
def test_interval_on_unbounded_boxes_has_no_nan(case: Case) -> None:
    """Infinite input bounds give ordered bounds without NaN, holding sampled large inputs."""
    node, op, kept = our_node(case)
    dyn_specs = dict(case.dynamic)
    rng = np.random.default_rng(4)
    for low, high in [(-math.inf, math.inf), (0.0, math.inf), (-math.inf, -1.0)]:
        los = {i: torch.full((1, *s.shape), low, dtype=torch.float64) for i, s in dyn_specs.items()}
        his = {i: torch.full((1, *s.shape), high, dtype=torch.float64) for i, s in dyn_specs.items()}
        lower, flags = args_for(case, kept, los, torch.float64)
        upper, _ = args_for(case, kept, his, torch.float64)
        upper = [u if f else lo for u, lo, f in zip(upper, lower, flags, strict=True)]
        (lo_out,), (hi_out,) = op.interval(node, lower, upper, flags)
        assert not torch.isnan(lo_out).any() and not torch.isnan(hi_out).any()
        assert (lo_out <= hi_out).all()
        # Large finite inputs inside the box stay inside the bounds.
        span = (max(low, -1e3), min(high, 1e3))
        dyn = {i: torch.from_numpy(rng.uniform(*span, size=(500, *s.shape))) for i, s in dyn_specs.items()}
        args, sflags = args_for(case, kept, dyn, torch.float64)
        (vals,) = op.forward(node, args, sflags)
        ok = torch.isnan(vals) | ((vals >= lo_out) & (vals <= hi_out))
        assert ok.all()


def _chain_model() -> onnx.ModelProto:
    """x (1, 6) through a chain of our ops, with constants as initializers and Constant nodes."""
    rng = np.random.default_rng(5)
    inits = {
        "w": rng.uniform(-2, 2, 6).astype(F),
        "b": rng.uniform(-1, 1, 6).astype(F),
        "two": F(2.0),
        "lo": F(-0.5),
        "hi": F(3.0),
        "cond": np.array([True, False, True, True, False, True]),
        "axes": np.array([1], np.int64),
        "den": np.array([1.5, -2.0, 0.5, 4.0, -1.0, 3.0], F),
    }
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Tanh", ["a"], ["t"]),
        helper.make_node("Pow", ["t", "two"], ["p"]),
        helper.make_node("Clip", ["a", "lo", "hi"], ["c"]),
        helper.make_node("Div", ["c", "den"], ["d"]),
        helper.make_node("Where", ["cond", "p", "d"], ["wh"]),
        helper.make_node("Mul", ["wh", "a"], ["sq"]),
        helper.make_node("Softmax", ["sq"], ["s"], axis=-1),
        helper.make_node("LeakyRelu", ["sq"], ["lr"], alpha=0.2),
        helper.make_node("Add", ["s", "lr"], ["sl"]),
        helper.make_node("ReduceSum", ["sl", "axes"], ["y1"], keepdims=0),
        helper.make_node("ReduceMax", ["sl"], ["y2"], axes=[1], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y1", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_chain_through_loader_and_interval_traversal() -> None:
    """Our ops inside the lead's loader, evaluator and interval traversal."""
    graph_mod = pytest.importorskip("verifier.graph.torch_graph")
    interval_mod = pytest.importorskip("verifier.bounds.interval")
    from verifier.graph.loader import load_model

    model = _chain_model()
    tgraph = graph_mod.TorchGraph(load_model(model), dtype=torch.float64)
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (200, 1, 6)).astype(F)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = [np.stack(v) for v in zip(*(session.run(None, {"x": xi}) for xi in x), strict=True)]
    got = tgraph.forward(torch.from_numpy(x))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-5)
    lo, hi = torch.full((1, 6), -1.0, dtype=torch.float64), torch.full((1, 6), 1.0, dtype=torch.float64)
    out_lo, out_hi = interval_mod.interval_bounds(tgraph, lo, hi)
    flat = np.concatenate([e.reshape(len(x), -1) for e in expected], axis=1)
    assert torch.isfinite(out_lo).all() and torch.isfinite(out_hi).all()
    assert (torch.from_numpy(flat) >= out_lo).all() and (torch.from_numpy(flat) <= out_hi).all()


@pytest.mark.parametrize("case", [c for c in CASES if c.dynamic and c.out_type == TensorProto.FLOAT],
                         ids=[c.id for c in CASES if c.dynamic and c.out_type == TensorProto.FLOAT])
def test_gradients_for_attacks_keep_the_values_and_never_vanish(case: Case) -> None:
    """``forward_for_gradients`` (the attacks' forward) gives ``forward``'s values exactly,
    and where ``forward``'s gradient is zero at every sampled point (Sign, Floor...: PGD
    cannot move) it passes one through."""
    node, op, kept = our_node(case)
    feeds = _feeds(case, 16, 1)
    grads = []
    for method in (op.forward, op.forward_for_gradients):
        dyn = {i: to_torch(x, torch.float64) for i, x in feeds.items()}
        dyn = {i: t.requires_grad_(True) if t.is_floating_point() else t for i, t in dyn.items()}
        args, flags = args_for(case, kept, dyn, torch.float64, False)
        (out,) = method(node, args, flags)
        if out.requires_grad:
            out.sum().backward()
        grads.append(sum(float(t.grad.abs().sum()) for t in dyn.values() if t.grad is not None))
        assert torch.equal(out.detach(), _forward(case, feeds, torch.float64))
    assert grads[1] > 0 or grads[0] > 0, f"{case.op}: no gradient at any sampled point"
