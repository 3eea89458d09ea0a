"""Linear relaxations of the unary ops, checked by sampling against the op's own forward.

For every op in the relaxation table and many random boxes (narrow, wide, one-signed,
crossing 0, degenerate, near the S-curve inflection, magnitudes up to 50, unbounded ends),
2000 points per box (ends included) must satisfy ``a_l x + b_l <= f(x) <= a_u x + b_u`` up to
the rounding of the check itself. Tightness: ReLU-family lines are exact on stable boxes and
S-curve lines beat constant bounds at the midpoint. A deliberately wrong relaxation is caught.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.ops.elementwise_helpers import Case, Dyn, our_node
from verifier.ir import Node
from verifier.ops.base import REGISTRY, Args
from verifier.ops.relax import LinearBounds, Relaxation, relax, relax_leaky

F = np.float32
X = Dyn((4,))

EXPLICIT = [
    Case("Relu", (X,)),
    Case("LeakyRelu", (X,), attrs={"alpha": 0.1}),
    Case("LeakyRelu", (X,), attrs={"alpha": -0.5}, label="neg"),
    Case("LeakyRelu", (X,), attrs={"alpha": 2.5}, label="steep"),
    Case("Sigmoid", (X,)),
    Case("Tanh", (X,)),
    Case("Erf", (X,)),
    Case("Exp", (X,)),
    Case("Softplus", (X,)),
    Case("Log", (X,)),
    Case("Sqrt", (X,)),
    Case("Reciprocal", (X,)),
    Case("Elu", (X,), attrs={"alpha": 1.3}),
    Case("Elu", (X,), attrs={"alpha": -0.7}, label="neg"),
    Case("Elu", (X,), attrs={"alpha": 0.5}, label="half"),
    Case("Selu", (X,)),
    Case("HardSwish", (X,), opset=14),
    Case("HardSigmoid", (X,)),
    Case("HardSigmoid", (X,), attrs={"alpha": -0.3, "beta": 0.4}, label="neg"),
    Case("Abs", (X,)),
    Case("Clip", (X, F(-1.5), F(0.5)), opset=11),
    Case("Clip", (X, F(0.25)), opset=13, label="minonly"),
    Case("Clip", (X, None, F(0.25)), opset=13, label="maxonly"),
    Case("Clip", (X, F(1.0), F(-1.0)), opset=13, label="crossed"),
    Case("Neg", (X,)),
    Case("Sign", (X,)),
    Case("Floor", (X,)),
    Case("Ceil", (X,)),
    Case("Round", (X,)),
    Case("Sin", (X,)),
    Case("Cos", (X,)),
    Case("Gelu", (X,), opset=20),
    Case("Gelu", (X,), opset=20, attrs={"approximate": "tanh"}, label="tanh"),
]


def _from_op_tables() -> list[Case]:
    """The elementwise op tests' one-input cases of ops with a relaxation and no case above, so
    a new op's one test case covers its relaxation too (PRelu's slope input: its own test)."""
    from tests.ops.test_elementwise_ops import UNARY

    explicit = {c.op for c in EXPLICIT}
    return [c for c in UNARY if c.op not in explicit and len(c.inputs) == 1 and REGISTRY[c.op].relaxation is not None]


CASES = EXPLICIT + _from_op_tables()
N_POINTS = 2000


def test_every_relaxation_is_tested() -> None:
    tested = {c.op for c in CASES}
    declared = {name for name, op in REGISTRY.items() if op.relaxation is not None}
    assert declared - {"PRelu"} <= tested  # PRelu (a constant slope input): its own test below


def boxes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random boxes of many kinds, shape ``(2, K)`` (batch 2), float64."""
    rng = np.random.default_rng(seed)
    pairs: list[tuple[float, float]] = []
    for _ in range(40):
        c = rng.uniform(-6, 6)
        pairs.append((c, c + 10 ** rng.uniform(-8, -2)))  # narrow
        lo, hi = sorted(rng.uniform(-50, 50, 2))
        pairs.append((lo, hi))  # wide
        pairs.append((-rng.uniform(0, 8), rng.uniform(0, 8)))  # crossing 0
        pairs.append((-rng.uniform(0, 0.5), rng.uniform(0, 0.5)))  # near the inflection
        a, b = sorted(rng.uniform(0, 10, 2))
        pairs.append((a, b))  # positive
        pairs.append((-b, -a))  # negative
        x = rng.uniform(-5, 5)
        pairs.append((x, x))  # degenerate
        pairs.append((-50.0, rng.uniform(-50, 50)))
        pairs.append((rng.uniform(-3.5, -1.0), rng.uniform(-1.0, 3.5)))  # HardSwish's pieces
    pairs += [(0.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, 50.0), (-50.0, 50.0), (1e-300, 1.0)]
    pairs += [(-1.5, -1.5), (-np.inf, 1.0), (-1.0, np.inf), (-np.inf, np.inf), (2.0, np.inf)]
    pairs += [(-3.0, 3.0), (-3.0, -1.5), (-1.5, 0.5), (0.25, 0.25), (0.5, 0.5)]
    if len(pairs) % 2:
        pairs.append((0.1, 0.2))
    arr = np.array(pairs, dtype=np.float64).reshape(2, -1, 2)
    return torch.from_numpy(arr[..., 0].copy()), torch.from_numpy(arr[..., 1].copy())


def points(lo: torch.Tensor, hi: torch.Tensor, seed: int) -> torch.Tensor:
    """``(N_POINTS, *lo.shape)`` samples of every finite box, ends included."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand((N_POINTS, *lo.shape), generator=gen, dtype=torch.float64)
    t[0], t[1] = 0.0, 1.0
    t[2:20] = torch.rand((18, *lo.shape), generator=gen, dtype=torch.float64) ** 40  # near lo
    flo = lo.clamp(-1e6, 1e6)
    fhi = hi.clamp(-1e6, 1e6)
    x = flo + t * (fhi - flo)
    x[0], x[1] = flo, fhi
    return torch.minimum(torch.maximum(x, flo), fhi)


def violations(
    node: Node, bounds: LinearBounds, lo: torch.Tensor, hi: torch.Tensor, seed: int = 0
) -> int:
    """Number of sampled points outside the lines (beyond the rounding of the check)."""
    x = points(lo, hi, seed)
    y = REGISTRY[node.op].forward(node, [x.reshape(-1, *x.shape[2:])], [True])[0].reshape(x.shape)
    low = bounds.lower_slope * x + bounds.lower_bias
    up = bounds.upper_slope * x + bounds.upper_bias
    nan = torch.isnan(y)
    # Undefined points (NaN: Log, Sqrt below 0) must be covered by infinite bounds.
    bad = nan & ~((low == -torch.inf) & (up == torch.inf))
    tol_low = 1e-15 * ((bounds.lower_slope * x).abs() + bounds.lower_bias.abs() + y.abs())
    tol_up = 1e-15 * ((bounds.upper_slope * x).abs() + bounds.upper_bias.abs() + y.abs())
    ok_low = (low <= y + tol_low.nan_to_num(0.0)) | (low == -torch.inf)
    ok_up = (up >= y - tol_up.nan_to_num(0.0)) | (up == torch.inf)
    bad |= ~nan & ~(ok_low & ok_up)
    return int(bad.sum())


@pytest.mark.parametrize("mode", ["adaptive", "zero", "one"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_relaxation_holds_by_sampling(case: Case, mode: str) -> None:
    node, _, _ = our_node(case)
    for seed in range(3):
        lo, hi = boxes(seed)
        out = relax(REGISTRY[node.op], node, lo, hi, mode)
        assert out is not None
        for t in (out.lower_slope, out.lower_bias, out.upper_slope, out.upper_bias):
            assert t.shape == lo.shape and t.dtype == lo.dtype
            assert not torch.isnan(t).any()
        assert violations(node, out, lo, hi, seed) == 0


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_boxes(case: Case) -> None:
    node, _, _ = our_node(case)
    lo, hi = boxes(7)
    lo32, hi32 = lo.float(), torch.maximum(lo.float(), hi.float())
    out = relax(REGISTRY[node.op], node, lo32, hi32)
    assert out is not None and out.lower_bias.dtype == torch.float32
    wide = LinearBounds(*(t.double() for t in dataclasses.astuple(out)))
    assert violations(node, wide, lo32.double(), hi32.double()) == 0


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.op in ("Relu", "LeakyRelu")], ids=lambda c: c.id
)
@pytest.mark.parametrize("mode", ["adaptive", "zero", "one"])
def test_relu_family_exact_on_stable_boxes(case: Case, mode: str) -> None:
    node, _, _ = our_node(case)
    lo, hi = boxes(3)
    stable = (lo >= 0) | (hi <= 0)
    stable &= torch.isfinite(lo) & torch.isfinite(hi) & (lo < hi)
    out = relax(REGISTRY[node.op], node, lo, hi, mode)
    assert out is not None
    alpha = 0.0 if case.op == "Relu" else node.attrs["alpha"]
    slope = torch.where(lo >= 0, 1.0, alpha).double()
    for a, b in ((out.lower_slope, out.lower_bias), (out.upper_slope, out.upper_bias)):
        assert torch.equal(a[stable], slope[stable])
        assert torch.equal(b[stable], torch.zeros_like(b[stable]))


def test_relu_modes() -> None:
    node, _, _ = our_node(Case("Relu", (X,)))
    lo = torch.tensor([[-1.0, -3.0, -2.0]], dtype=torch.float64)
    hi = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    adaptive, zero, one = (relax(REGISTRY[node.op], node, lo, hi, m) for m in ("adaptive", "zero", "one"))
    assert adaptive is not None and zero is not None and one is not None
    assert adaptive.lower_slope.tolist() == [[1.0, 0.0, 1.0]]
    assert zero.lower_slope.tolist() == [[0.0, 0.0, 0.0]]
    assert one.lower_slope.tolist() == [[1.0, 1.0, 1.0]]
    torch.testing.assert_close(adaptive.upper_slope, hi / (hi - lo))
    torch.testing.assert_close(adaptive.upper_bias, -hi * lo / (hi - lo))
    with pytest.raises(ValueError, match="mode"):
        relax(REGISTRY[node.op], node, lo, hi, "bogus")


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Erf"])
def test_s_curves_beat_constant_bounds_at_midpoint(op: str) -> None:
    node, _, _ = our_node(Case(op, (X,)))
    lo, hi = boxes(11)
    keep = torch.isfinite(lo) & torch.isfinite(hi) & (lo < hi)
    lo, hi = lo[keep].unsqueeze(0), hi[keep].unsqueeze(0)
    out = relax(REGISTRY[node.op], node, lo, hi)
    assert out is not None
    mid = lo / 2 + hi / 2
    gap = (out.upper_slope - out.lower_slope) * mid + out.upper_bias - out.lower_bias
    f = REGISTRY[op].forward
    const = f(node, [hi], [True])[0] - f(node, [lo], [True])[0]
    tighter = gap <= const + 1e-9 * (1 + const.abs())
    assert tighter.double().mean() >= 0.95
    # Tangent and chord lines do strictly better than constants on moderate boxes.
    moderate = (hi - lo > 0.1) & (hi - lo < 4) & (lo > -3) & (hi < 3)
    assert (gap[moderate] < const[moderate]).all()


def test_convex_tangent_and_chord() -> None:
    node, _, _ = our_node(Case("Exp", (X,)))
    lo = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    hi = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    out = relax(REGISTRY[node.op], node, lo, hi)
    assert out is not None
    torch.testing.assert_close(out.upper_slope, (hi.exp() - lo.exp()) / (hi - lo))
    torch.testing.assert_close(out.lower_slope, (lo / 2 + hi / 2).exp())


def test_domains_and_unbounded_boxes() -> None:
    lo = torch.tensor([[-1.0, -1.0, 0.5, -np.inf]], dtype=torch.float64)
    hi = torch.tensor([[2.0, 1.0, 2.0, np.inf]], dtype=torch.float64)
    for op in ("Log", "Sqrt", "Reciprocal"):
        out = relax(REGISTRY[op], our_node(Case(op, (X,)))[0], lo, hi)
        assert out is not None
        assert out.lower_slope[0, 0] == 0 and out.lower_bias[0, 0] == -np.inf
        assert out.upper_bias[0, 0] == np.inf
        assert torch.isfinite(out.upper_bias[0, 2])
    out = relax(REGISTRY["Sigmoid"], our_node(Case("Sigmoid", (X,)))[0], lo, hi)
    assert out is not None
    assert out.lower_slope[0, 3] == 0 and out.upper_slope[0, 3] == 0
    assert -1e-9 < out.lower_bias[0, 3] <= 0 and 1 <= out.upper_bias[0, 3] < 1 + 1e-9


def test_degenerate_boxes_are_exact_constants() -> None:
    x = torch.tensor([[-2.0, 0.0, 0.3]], dtype=torch.float64)
    for case in CASES:
        node, _, _ = our_node(case)
        out = relax(REGISTRY[node.op], node, x, x)
        assert out is not None
        assert (out.lower_slope == 0).all() and (out.upper_slope == 0).all()
        y = REGISTRY[case.op].forward(node, [x], [True])[0]
        defined = torch.isfinite(y)  # outside the domain (Log, Sqrt, Power...) the bounds are infinite
        assert defined.any(), case.id
        low, high, y = out.lower_bias[defined], out.upper_bias[defined], y[defined]
        assert (low <= y).all() and (high >= y).all()
        torch.testing.assert_close(low, y, rtol=1e-11, atol=1e-11)
        torch.testing.assert_close(high, y, rtol=1e-11, atol=1e-11)


def test_an_op_without_a_relaxation_gives_none() -> None:
    node = Node("n", "Softmax", ("x",), ("y",))
    assert relax(REGISTRY[node.op], node, torch.zeros(1, 2), torch.ones(1, 2)) is None


def test_prelu_with_its_slope() -> None:
    case = Case("PRelu", (Dyn((2, 3, 4)), np.array([0.2, -0.3, 1.5, 0.0], F)))
    node, _, _ = our_node(case)
    slope = torch.tensor([0.2, -0.3, 1.5, 0.0], dtype=torch.float64)
    rng = np.random.default_rng(5)
    a, b = rng.uniform(-4, 4, (2, 3, 2, 3, 4))
    lo, hi = torch.from_numpy(np.minimum(a, b)), torch.from_numpy(np.maximum(a, b))
    out = relax(REGISTRY["PRelu"], node, lo, hi, "adaptive", [None, slope])
    assert out is not None
    x = points(lo, hi, 0)
    y = REGISTRY["PRelu"].forward(node, [x.reshape(-1, 2, 3, 4), slope], [True, False])[0]
    y = y.reshape(x.shape)
    assert (out.lower_slope * x + out.lower_bias <= y).all()
    assert (out.upper_slope * x + out.upper_bias >= y).all()


def test_sampling_check_catches_a_wrong_relaxation() -> None:
    node, _, _ = our_node(Case("Relu", (X,)))
    lo, hi = boxes(0)
    relu = REGISTRY["Relu"]
    assert relu.relaxation is not None
    right = relu.relaxation.rule

    def wrong(node: Node, lo: torch.Tensor, hi: torch.Tensor, mode: str, constants: Args) -> LinearBounds:
        out = right(node, lo, hi, mode, constants)
        return dataclasses.replace(out, upper_slope=0.9 * out.upper_slope)

    class WrongRelu(type(relu)):  # type: ignore[misc]
        relaxation = Relaxation(wrong)

    out = relax(WrongRelu(), node, lo, hi)
    assert out is not None
    assert violations(node, out, lo, hi) > 0


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0, -0.5, 2.5])
@pytest.mark.parametrize("mode", ["adaptive", "zero", "one"])
def test_one_leak_for_all_gives_the_per_neuron_lines(alpha: float, mode: str) -> None:
    """Relu and LeakyRelu take the shortcut for one ``alpha`` (convexity decided once); PRelu
    passes a tensor of slopes through the general path: the same ``alpha`` everywhere gives
    the same lines, on crossing, one-signed, touching-zero and degenerate boxes."""
    gen = torch.Generator().manual_seed(3)
    lo = torch.randn(4000, dtype=torch.float64, generator=gen) * 3
    hi = lo + torch.rand(4000, dtype=torch.float64, generator=gen) * 4
    hi[:100] = lo[:100]
    lo[100:200] = 0.0
    hi[200:300] = 0.0
    shared = relax_leaky(lo, hi, alpha, mode)
    per_neuron = relax_leaky(lo, hi, torch.full_like(lo, alpha), mode)
    for field in dataclasses.fields(LinearBounds):
        assert torch.equal(getattr(shared, field.name), getattr(per_neuron, field.name)), field.name


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_affine_powers_get_exact_lines(p: float) -> None:
    """``x ** 0 = 1`` and ``x ** 1 = x`` (our Power op): both lines are the function itself, up
    to the margin, on boxes of either sign."""
    node = Node("n", "Power", ("x",), ("y",), attrs={"exponent": p})
    lo = torch.tensor([[-3.0, -1.0, 0.0, 0.5]], dtype=torch.float64)
    hi = torch.tensor([[-2.0, 2.0, 1.0, 4.0]], dtype=torch.float64)
    out = relax(REGISTRY["Power"], node, lo, hi)
    assert out is not None
    for slope, bias in ((out.lower_slope, out.lower_bias), (out.upper_slope, out.upper_bias)):
        torch.testing.assert_close(slope, torch.full_like(lo, p), rtol=0, atol=1e-12)
        torch.testing.assert_close(bias, torch.full_like(lo, 1.0 - p), rtol=0, atol=1e-9)


@pytest.mark.parametrize("p", [2.0, 4.0])
def test_an_even_powers_lower_line_reaches_its_interval_bound(p: float) -> None:
    """Even powers: the lower line is the tangent at the box's lowest point, so over the box its
    minimum is the interval bound ``min f`` (the midpoint tangent would reach below it)."""
    node = Node("n", "Power", ("x",), ("y",), attrs={"exponent": p})
    gen = torch.Generator().manual_seed(3)
    lo = torch.randn(1, 200, generator=gen, dtype=torch.float64) * 2
    hi = lo + torch.rand(1, 200, generator=gen, dtype=torch.float64) * 3 + 0.01
    out = relax(REGISTRY["Power"], node, lo, hi)
    assert out is not None
    line_min = torch.minimum(out.lower_slope * lo, out.lower_slope * hi) + out.lower_bias
    least = torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(lo.abs(), hi.abs()) ** p)
    torch.testing.assert_close(line_min, least, rtol=1e-9, atol=1e-9)
    assert (line_min <= least).all()
