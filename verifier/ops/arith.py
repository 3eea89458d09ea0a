"""Elementwise arithmetic with numpy broadcasting: Add, Sub, Mul, Div, Pow, Max, Min, Sum,
Mean, Neg, Reciprocal, Where, and comparisons/logic that only ever run on constants.

Interval rules: Add, Sub, Max, Min, Sum, Mean are monotone in each input (corner evaluation,
exact); Mul and Div take the hull of the four corner products/quotients, which is the exact
range of a bilinear (resp. quotient with a denominator box excluding 0) function over a box;
Pow handles a constant exponent per element (integer exponents with negative bases included).
Unbounded boxes are handled: ``0 * inf`` counts as 0 (the true values are finite), and an
undefined corner (``inf / inf``) widens the bound to ±inf.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops import max_form as forms
from verifier.ops.activation import hull, transcendental_error, unary_input
from verifier.ops.base import (
    Affinity,
    Args,
    Flags,
    MonotoneOp,
    Op,
    Pair,
    gamma,
    magnitude,
    operands,
    register,
    unit_roundoff,
)
from verifier.ops.curves import RECIPROCAL, curve_relaxation
from verifier.ops.max_form import MaxForm
from verifier.ops.multi_relax import (
    LARGE,
    MAX_RULE,
    MIN_RULE,
    Moved,
    MultiRule,
    PlaneWeights,
    aligned_bounds,
    every_position,
    mag,
    reduce_to,
    rows_bias,
    safe_div,
)
from verifier.ops.power import pow_range
from verifier.ops.quotient import DIV_RULE
from verifier.ops.relax import NEGATION, ONE_SIGN


def magnitudes(lower: Args, upper: Args, batched: Flags) -> list[Tensor]:
    """Aligned ``max(|lo|, |hi|)`` of every argument."""
    mags: list[Tensor | None] = []
    for lo, hi in zip(lower, upper, strict=True):
        assert lo is not None and hi is not None
        mags.append(magnitude(lo, hi))
    return operands(mags, batched)


def safe_mul(a: Tensor, b: Tensor) -> Tensor:
    """``a * b`` with ``0 * ±inf = 0``: an infinite bound stands for finite values."""
    prod = a * b
    return torch.where((a == 0) | (b == 0), torch.zeros_like(prod), prod)


def product_hull(a_lo: Tensor, a_hi: Tensor, b_lo: Tensor, b_hi: Tensor) -> tuple[Tensor, Tensor]:
    """Exact range of ``a * b`` over the box ``[a_lo, a_hi] x [b_lo, b_hi]`` (corner rule)."""
    return hull(
        [safe_mul(a_lo, b_lo), safe_mul(a_lo, b_hi), safe_mul(a_hi, b_lo), safe_mul(a_hi, b_hi)]
    )


def _binary(args: Args, batched: Flags) -> tuple[Tensor, Tensor]:
    a, b = operands(args[:2], batched[:2])
    return a, b


# ---------------------------------------------------------------------------------------------
# Mul of two dynamic inputs: McCormick planes (see verifier.ops.multi_relax)

Box = tuple[Tensor, Tensor, Tensor, Tensor]
"""``(lx, ux, ly, uy)``, broadcastable to the output."""


def _sanitise(box: Box) -> tuple[Tensor, Box]:
    """Mask of elements whose box is infinite or huge, and the box with those set to [0, 1]²."""
    bad = torch.zeros((), dtype=torch.bool, device=box[0].device)
    for t in box:
        bad = bad | ~(t.abs() <= LARGE)
    stand_in = (0.0, 1.0, 0.0, 1.0)
    lx, ux, ly, uy = (torch.where(bad, torch.full_like(t, s), t) for t, s in zip(box, stand_in, strict=True))
    return bad, (lx, ux, ly, uy)


def _corner_bias(sx: Tensor, sy: Tensor, box: Box, upper: bool) -> Tensor:
    """Max (upper) or min over the corners of ``xy - sx x - sy y``: its extrema over the box,
    since it is bilinear; padded for the rounding of this evaluation."""
    lx, ux, ly, uy = box
    gaps = torch.stack([x * y - sx * x - sy * y for x in (lx, ux) for y in (ly, uy)])
    mx, my = mag(lx, ux), mag(ly, uy)
    pad = gamma(4, unit_roundoff(sx.dtype)) * (mx * my + sx.abs() * mx + sy.abs() * my)
    return gaps.amax(0) + pad if upper else gaps.amin(0) - pad


def _weight(lo_end: Tensor, hi_end: Tensor, w: Tensor) -> Tensor:
    """The weight in ``[1 - lo_end / w, hi_end / w] ∩ [0, 1]`` closest to 1/2 (1/2 if w = 0)."""
    half = torch.full_like(w, 0.5)
    return torch.minimum(torch.maximum(1 - safe_div(lo_end, w, 0.5), half), safe_div(hi_end, w, 0.5)).clamp(0, 1)


def _mul_weights(box: Box) -> tuple[Tensor, Tensor]:
    """The default McCormick weights ``(lam, mu)`` of the lower and upper planes: the ones
    closest to 1/2 whose plane still reaches the product's interval bound over the box."""
    _, (lx, ux, ly, uy) = _sanitise(box)
    p11, p12, p21, p22 = lx * ly, lx * uy, ux * ly, ux * uy
    low_end = torch.minimum(torch.minimum(p11, p12), torch.minimum(p21, p22))
    high_end = torch.maximum(torch.maximum(p11, p12), torch.maximum(p21, p22))
    w = (ux - lx) * (uy - ly)
    # Lower gap lam (x - lx)(y - ly) + (1 - lam)(ux - x)(uy - y): 0 at the off-diagonal corners,
    # lam w at (ux, uy) and (1 - lam) w at (lx, ly); the plane reaches low_end when both
    # corners stay above it. The upper side mirrors this with the other diagonal.
    return _weight(p11 - low_end, p22 - low_end, w), _weight(high_end - p12, high_end - p21, w)


def _mul_planes(box: Box, weights: tuple[Tensor, Tensor] | None = None
                ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """``(sx, sy, c)`` of the lower and upper planes of ``x * y`` (see the module doc) with the
    McCormick weights ``(lam, mu)`` (default :func:`_mul_weights`; any weights give valid
    planes, since each bias is the extremum over the box's corners)."""
    bad, safe = _sanitise(box)
    lx, ux, ly, uy = safe
    lam, mu = _mul_weights(box) if weights is None else weights
    hulls = [t.detach() for t in product_hull(*box)]
    planes = []
    for weight, near, far, limit, upper in ((lam, ly, uy, hulls[0], False), (mu, uy, ly, hulls[1], True)):
        sx = weight * near + (1 - weight) * far
        sy = weight * lx + (1 - weight) * ux
        c = _corner_bias(sx, sy, safe, upper)
        zero = torch.zeros_like(sx)
        planes.append((torch.where(bad, zero, sx), torch.where(bad, zero, sy), torch.where(bad, limit, c)))
    return planes[0], planes[1]


def _mul_moved(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, weights: Tensor | None) -> Moved | None:
    """``A`` through the McCormick planes: shared by every row (``weights`` None), or with the
    weights ``(N, R, *out, 2)`` of each row (lower plane's, upper plane's)."""
    aligned = aligned_bounds(los, his, batched, a.dtype)
    if aligned is None or len(batched) != 2 or not all(batched):
        return None
    (lx, ly), (ux, uy) = aligned
    box = (lx.unsqueeze(1), ux.unsqueeze(1), ly.unsqueeze(1), uy.unsqueeze(1))  # (N, 1, ...): one per row
    chosen = None if weights is None else (weights[..., 0].to(a.dtype), weights[..., 1].to(a.dtype))
    (lsx, lsy, lc), (usx, usy, uc) = _mul_planes(box, chosen)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    cx, cy = pos * lsx + neg * usx, pos * lsy + neg * usy
    scale = torch.maximum(lsx.abs(), usx.abs()) * mag(box[0], box[1]) + \
        torch.maximum(lsy.abs(), usy.abs()) * mag(box[2], box[3])
    coefficients = {}
    for i, (coeff, value) in enumerate(((cx, lx), (cy, ly))):
        source = los[i]
        assert source is not None
        coefficients[i] = reduce_to(coeff, value, source.shape[1:])
    return Moved(coefficients, rows_bias(a, lc, uc, scale))


def _mul_backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
    return _mul_moved(node, a, los, his, batched, None)


def _mul_seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
    """The default weights ``(N, *out, 2)`` where both factors are dynamic and bounded."""
    if len(batched) != 2 or not all(batched) or any(t is None for t in (*los, *his)):
        return None
    aligned = aligned_bounds(los, his, batched, torch.float64)
    assert aligned is not None
    (lx, ly), (ux, uy) = aligned
    bad, _ = _sanitise((lx, ux, ly, uy))
    if bool(bad.all()):
        return None
    out = torch.broadcast_shapes(lx.shape, ly.shape)
    return torch.stack([w.expand(out) for w in _mul_weights((lx, ux, ly, uy))], dim=-1)


MUL_RULE = MultiRule(_mul_backward, every_position, PlaneWeights(_mul_seed, _mul_moved))
"""The relaxation of ``x * y`` with both operands dynamic; alpha-CROWN optimises the McCormick
weight of each plane per row."""


@register("Add")
class Add(MonotoneOp):
    """``a + b``; one rounding."""

    proof_checked = True

    affinity = Affinity.JOINT

    def pass_through_sign(self, node: Node, position: int) -> float | None:
        return 1.0

    monotonicity = (1, 1)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = _binary(args, batched)
        return (a + b,)


@register("Sub")
class Sub(MonotoneOp):
    """``a - b``; one rounding."""

    proof_checked = True

    affinity = Affinity.JOINT

    def pass_through_sign(self, node: Node, position: int) -> float | None:
        return 1.0 if position == 0 else -1.0

    monotonicity = (1, -1)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = _binary(args, batched)
        return (a - b,)


@register("Mul")
class Mul(Op):
    """``a * b`` for any mix of dynamic and constant inputs; bounds by the corner rule."""

    proof_checked = True

    multi_relaxation = MUL_RULE

    affinity = Affinity.ONE_DYNAMIC

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = _binary(args, batched)
        return (a * b,)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        a_lo, b_lo = _binary(lower, batched)
        a_hi, b_hi = _binary(upper, batched)
        lo, hi = product_hull(a_lo, a_hi, b_lo, b_hi)
        return (lo,), (hi,)


@register("Div")
class Div(Op):
    """``a / b`` (truncating for integers, as onnxruntime does).

    Bounds: the hull of the four corner quotients where the denominator box excludes 0
    (``a / b`` is then monotone in each argument), ``[-inf, inf]`` where it does not. A dynamic
    denominator: linear planes (:mod:`verifier.ops.quotient`).
    """

    proof_checked = True

    multi_relaxation = DIV_RULE

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """Affine in ``a`` when the denominator is a constant."""
        return not batched[1]

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        a, b = _binary(args, batched)
        if not a.is_floating_point() and not b.is_floating_point():
            return (torch.div(a, b, rounding_mode="trunc"),)
        return (a / b,)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        a_lo, b_lo = _binary(lower, batched)
        a_hi, b_hi = _binary(upper, batched)
        lo, hi = hull([a_lo / b_lo, a_lo / b_hi, a_hi / b_lo, a_hi / b_hi])
        safe = (b_lo > 0) | (b_hi < 0)
        inf = torch.full_like(lo, math.inf)
        return (torch.where(safe, lo, -inf),), (torch.where(safe, hi, inf),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (2 * unit * magnitude(out[0][0], out[1][0]),)


@register("Neg")
class Neg(MonotoneOp):
    """``-x``; exact, non-increasing."""

    relaxation = NEGATION

    affinity = Affinity.JOINT

    exact = True
    monotonicity = (-1,)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (-unary_input(args, batched),)


@register("Reciprocal")
class Reciprocal(Op):
    """``1 / x``; unbounded when the box touches 0."""

    relaxation = curve_relaxation(RECIPROCAL, ONE_SIGN)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (torch.reciprocal(unary_input(args, batched)),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        safe = (lo > 0) | (hi < 0)
        inf = torch.full_like(lo, math.inf)
        return (torch.where(safe, 1 / hi, -inf),), (torch.where(safe, 1 / lo, inf),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (2 * unit * magnitude(out[0][0], out[1][0]),)


@register("Pow")
class Pow(Op):
    """``x ** y``; the exponent is usually a constant input (kept as an argument).

    Constant exponent: see :func:`verifier.ops.power.pow_range` (a constant exponent with
    all elements equal becomes our op ``Power``, which has a linear relaxation). Dynamic exponent: where the base is
    ``>= 0``, ``x ** y`` is monotone in each argument for the other fixed, so the corners span
    the range; elsewhere the bounds are ``[-inf, inf]``.
    """

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x, y = _binary(args, batched)
        return (torch.pow(x, y).to(x.dtype),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        x_lo, y_lo = _binary(lower, batched)
        x_hi, y_hi = _binary(upper, batched)
        y_lo, y_hi = y_lo.to(x_lo.dtype), y_hi.to(x_lo.dtype)
        if not batched[1]:
            lo, hi = pow_range(x_lo, x_hi, y_lo)
            return (lo,), (hi,)
        lo, hi = hull([torch.pow(a, b) for a in (x_lo, x_hi) for b in (y_lo, y_hi)])
        inf = torch.full_like(lo, math.inf)
        valid = x_lo >= 0
        return (torch.where(valid, lo, -inf),), (torch.where(valid, hi, inf),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (transcendental_error(out[0][0], out[1][0], unit),)


class Variadic(MonotoneOp):
    """An op over any number of broadcast inputs, non-decreasing in each."""

    def combine(self, terms: list[Tensor]) -> Tensor:
        """The op on aligned inputs."""
        raise NotImplementedError

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        terms = operands(args, batched)
        out = self.combine(terms)
        shape = torch.broadcast_shapes(*(t.shape for t in terms))
        return (out.expand(shape),)


@register("Max")
class Max(Variadic):
    """Elementwise maximum; exact."""

    multi_relaxation = MAX_RULE

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.MAXIMUM

    def combine(self, terms: list[Tensor]) -> Tensor:
        return functools.reduce(torch.maximum, terms)


@register("Min")
class Min(Variadic):
    """Elementwise minimum; exact."""

    multi_relaxation = MIN_RULE

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.MINIMUM

    def combine(self, terms: list[Tensor]) -> Tensor:
        return functools.reduce(torch.minimum, terms)


@register("Sum")
class Sum(Variadic):
    """Elementwise sum; error ``gamma(n) sum |x_i|`` for any summation order."""

    affinity = Affinity.JOINT

    def combine(self, terms: list[Tensor]) -> Tensor:
        return functools.reduce(torch.add, terms)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = magnitudes(lower, upper, batched)
        return (gamma(len(mags), unit) * functools.reduce(torch.add, mags),)


@register("Mean")
class Mean(Variadic):
    """Elementwise mean: the sum divided by n; error ``gamma(n + 2) sum |x_i| / n``."""

    affinity = Affinity.JOINT

    def combine(self, terms: list[Tensor]) -> Tensor:
        return functools.reduce(torch.add, terms) / len(terms)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        mags = magnitudes(lower, upper, batched)
        n = len(mags)
        return (gamma(n + 2, unit) * functools.reduce(torch.add, mags) / n,)
