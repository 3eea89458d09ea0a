"""The float error of constant-weight affine ops: it counts only the products that can be
nonzero, and bounds the additions' roundings by the largest partial sum.

Two oracles: the op's own Jacobian (one-hot probes through ``forward``) gives, per output, the
inputs with a nonzero weight, so that :meth:`ConstWeightLinear.product_counts` must equal the
number of them whose box is not exactly ``[0, 0]``, for every constant-weight affine case of
the structural registry; and a float32 sum whose every addition rounds the same way (evaluated
in the worst order, one term after another) must stay within the counted error bound, which a
count that missed the terms that can be nonzero (say, one read from the box's lower end only)
would not. A sum that climbs far above its final value and comes back (1, small terms, -1)
stays within the partial-sum bound, which one taken from the final value alone would not; on
random mixed-sign layers the partial-sum bound is tighter than the sum of magnitudes and holds
for float32 sums in sorted (worst) orders.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.ops.structural_cases import CASES
from tests.ops.structural_helpers import our_args, our_node
from verifier.ir import Node
from verifier.ops import REGISTRY
from verifier.ops.base import magnitude
from verifier.ops.linear import ConstWeightLinear

COUNTED = [c for c in CASES if isinstance(REGISTRY[c.op], ConstWeightLinear)]


def _jacobian_counts(op: ConstWeightLinear, node: Node, args: list, flags: list[bool],
                     nonzero: torch.Tensor) -> torch.Tensor:
    """Per output, the inputs with a nonzero derivative that are not fixed at zero."""
    x = args[0]
    assert x is not None
    size = x[0].numel()
    probes = torch.eye(size, dtype=torch.float64).reshape(size, *x.shape[1:])
    base = op.forward(node, [torch.zeros_like(probes[:1]), *args[1:]], flags)[0]
    jac = (op.forward(node, [probes, *args[1:]], flags)[0] - base).reshape(size, -1)
    return nonzero.reshape(1, size).to(torch.float64) @ (jac != 0).to(torch.float64)


@pytest.mark.parametrize("case", COUNTED, ids=[str(c) for c in COUNTED])
def test_product_counts_equal_the_jacobian_count(case) -> None:
    node, kept = our_node(case)
    op = REGISTRY[case.op]
    shape = next(inp.shape for inp in case.inputs if inp.dynamic)
    rng = np.random.default_rng(5)
    lo = rng.uniform(-1, 1, (1, *shape))
    lo[rng.random(lo.shape) < 0.4] = 0.0
    hi = lo + np.where(rng.random(lo.shape) < 0.5, 0.0, rng.uniform(0, 1, lo.shape))
    los, flags = our_args(case, kept, [torch.from_numpy(lo)], torch.float64)
    his, _ = our_args(case, kept, [torch.from_numpy(hi)], torch.float64)
    mags = [magnitude(los[0], his[0]), *los[1:]]
    counts = op.product_counts(node, mags, flags)
    if op.fan_in(node, los, flags) == 1:
        assert counts is None  # one product per output (BatchNormalization): nothing to count
        return
    assert counts is not None
    expected = _jacobian_counts(op, node, los, flags, mags[0] != 0)
    assert torch.equal(counts.reshape(-1), expected.reshape(-1))
    assert float(counts.max()) <= op.fan_in(node, los, flags)


def _linear() -> tuple[Node, ConstWeightLinear]:
    return Node("sum", "Linear", ("x", "w"), ("y",)), REGISTRY["Linear"]


def test_counted_error_bounds_a_worst_order_float32_sum() -> None:
    """1 followed by ``k`` terms just under half an ulp of 1: every float32 addition in order
    rounds down, so the result stays 1 while the exact sum grows by ``k`` such terms (an
    error of about ``k u``); 200 further inputs are fixed at 0 and 100 weights are 0."""
    k, zeros, dead = 150, 200, 100
    small = np.float32(0.99 * 2.0**-24)
    x_hi = np.concatenate([[1.0], np.full(k, small), np.zeros(zeros), np.full(dead, 0.5)]).astype(np.float32)
    weight = np.concatenate([np.ones(1 + k + zeros), np.zeros(dead)]).astype(np.float32)
    total = np.float32(0.0)
    for value in (x_hi * weight):  # float32, one term after another
        total = np.float32(total + value)
    exact = math.fsum(float(v) * float(w) for v, w in zip(x_hi, weight, strict=True))
    error = abs(float(total) - exact)
    assert error > 0.9 * k * 2.0**-24  # the construction rounds as intended
    node, op = _linear()
    # the small terms' boxes start at 0: only their upper ends make them count
    lo = torch.from_numpy(np.where(x_hi == small, 0.0, x_hi).astype(np.float64)).reshape(1, -1)
    hi = torch.from_numpy(x_hi.astype(np.float64)).reshape(1, -1)
    w = torch.from_numpy(weight.astype(np.float64)).reshape(-1, 1)
    flags = [True, False]
    out = op.interval(node, [lo, w], [hi, w], flags)
    bound = float(op.fp_error(node, [lo, w], [hi, w], flags, out, 2.0**-24)[0].max())
    counts = op.product_counts(node, [magnitude(lo, hi), w], flags)
    assert counts is not None and float(counts.max()) == 1 + k
    assert error <= bound
    # tighter than counting the whole fan-in (the zeros and the dead weights left out)
    fan_in_bound = (len(x_hi) + 1) * 2.0**-24 / (1 - (len(x_hi) + 1) * 2.0**-24) * float(hi.abs().sum())
    assert bound < 0.6 * fan_in_bound


def _worst_order_sum(terms: np.ndarray) -> float:
    total = np.float32(0.0)
    for value in terms.astype(np.float32):
        total = np.float32(total + value)
    return float(total)


def test_partial_sum_bound_covers_a_sum_that_climbs_and_comes_back() -> None:
    """1, then ``k`` terms just under half an ulp of 1 (each addition rounds down), then -1:
    the result is 0 while the exact sum is ``k`` small terms, an error of about ``k u`` on a
    final value of the same size; the partial sums reach 1."""
    k = 200
    small = np.float32(0.99 * 2.0**-24)
    x = np.concatenate([[1.0], np.full(k, small), [1.0]]).astype(np.float64)
    weight = np.concatenate([np.ones(1 + k), [-1.0]]).astype(np.float64)
    error = abs(_worst_order_sum((x * weight).astype(np.float32)) - math.fsum(x * weight))
    assert error > 0.9 * k * 2.0**-24
    node, op = _linear()
    box = torch.from_numpy(x).reshape(1, -1)
    w = torch.from_numpy(weight).reshape(-1, 1)
    flags = [True, False]
    out = op.interval(node, [box, w], [box, w], flags)
    bound = float(op.fp_error(node, [box, w], [box, w], flags, out, 2.0**-24)[0].max())
    partial = op.partial_sum_bound(node, [box, w], [box, w], flags)
    assert partial is not None and float(partial.max()) == pytest.approx(1.0 + k * float(small))
    assert error <= bound
    # a bound from the final value (k small terms) instead of the partial sums would fail
    final = float(out[1][0].abs().max())
    assert error > (k + 2) * 2.0**-24 * (float(np.abs(x * weight).sum()) * 2.0**-24 + final)


@pytest.mark.parametrize("seed", range(4))
def test_partial_sum_bound_is_tighter_and_holds_for_sorted_float32_sums(seed: int) -> None:
    """A random mixed-sign layer on a box of nonnegative inputs (ReLU outputs): the bound is
    below the plain ``gamma(n + 1) T`` and above the error of the float32 sums in the orders
    that make partial sums largest (positive products first, then negative, and the reverse)."""
    rng = np.random.default_rng(seed)
    n_in, n_out = 300, 20
    weight = rng.standard_normal((n_in, n_out)).astype(np.float32).astype(np.float64)
    bias = rng.standard_normal(n_out).astype(np.float32).astype(np.float64)
    x = rng.uniform(0, 1, n_in).astype(np.float32).astype(np.float64)
    node = Node("layer", "Linear", ("x", "w", "b"), ("y",))
    op = REGISTRY["Linear"]
    box, w, b = torch.from_numpy(x).reshape(1, -1), torch.from_numpy(weight), torch.from_numpy(bias)
    flags = [True, False, False]
    out = op.interval(node, [box, w, b], [box, w, b], flags)
    bound = op.fp_error(node, [box, w, b], [box, w, b], flags, out, 2.0**-24)[0].reshape(-1).numpy()
    total = (np.abs(weight) * x[:, None]).sum(axis=0) + np.abs(bias)
    plain = (n_in + 1) * 2.0**-24 / (1 - (n_in + 1) * 2.0**-24) * total
    assert (bound < 0.9 * plain).all()
    for j in range(n_out):
        products = x * weight[:, j]
        exact = math.fsum([*products, bias[j]])
        for descending in (True, False):
            ordered = np.sort(products)[::-1] if descending else np.sort(products)
            computed = _worst_order_sum(np.concatenate([ordered, [bias[j]]]))
            assert abs(computed - exact) <= bound[j]
