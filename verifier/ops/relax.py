"""Linear relaxations of the unary elementwise ops: ``a_l x + b_l <= f(x) <= a_u x + b_u``.

A relaxation is data that each op class declares as ``Op.relaxation`` (a :class:`Relaxation`):
lines fitted to a curve (:mod:`verifier.ops.curves`: candidate slopes and the points where
``f(x) - a x`` can have an interior extremum, ``curve_relaxation``) or a dedicated rule. This
module holds the data types, the dedicated rules (the ReLU family, whose lower slope the bound
method may choose; negation; slope-0 interval bounds), the declared families and :func:`relax`,
which applies the op's relaxation and returns ``None`` for ops without one; the traversal then
uses interval bounds.

Degenerate boxes (``l == u``), boxes with an infinite end, boxes outside an op's domain (Log,
Sqrt below 0; Reciprocal touching 0) and any line that would come out non-finite get slope 0
and the op's own interval bounds (possibly infinite), widened by the margin: never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.config import ReluMode
from verifier.ir import Node
from verifier.ops.base import REGISTRY, Args, Op, all_finite

MARGIN = 1e-12
MODES: tuple[str, ...] = tuple(m.value for m in ReluMode)
"""The relaxation modes of unstable ReLU-family neurons (:data:`verifier.config.ReluMode`)."""


@dataclass(frozen=True)
class LinearBounds:
    """Elementwise linear bounds of y = f(x) valid for every x in [lower, upper]:
    lower_slope * x + lower_bias <= f(x) <= upper_slope * x + upper_bias (exact real arithmetic)."""

    lower_slope: Tensor
    lower_bias: Tensor
    upper_slope: Tensor
    upper_bias: Tensor


Rule = Callable[[Node, Tensor, Tensor, str, Args], LinearBounds]
"""``(node, lower, upper, mode, constants) -> lines`` on safe boxes (finite, ``lower < upper``,
inside the domain); ``constants`` holds the node's constant inputs (None at the dynamic one)."""
Domain = Callable[[Node, Tensor, Tensor], Tensor]
"""``(node, lower, upper) -> mask`` of the boxes where the rule applies (others get interval
bounds); the node gives domains that depend on an attribute (Power's exponent)."""
LineRule = Callable[[Node, Tensor, Tensor, Tensor, bool], Tensor]
"""``(node, slope, lower, upper, upper_side) -> bias``: for ANY finite slope ``a`` (broadcast
with the finite boxes ``lower < upper``), the bias ``b`` that makes ``a x + b`` a valid upper
(``upper_side``) or lower bound of ``f`` on ``[lower, upper]`` in exact arithmetic, computed
in float64 with its own margin; differentiable in ``a`` (the bound optimisers follow it)."""
SlopeSpan = Callable[[Node, Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(node, lower, upper) -> (least, greatest)``: the slopes worth trying on each box (an
optimiser's search range; any slope is sound with :data:`LineRule`'s bias)."""


@dataclass(frozen=True)
class Relaxation:
    """The linear relaxation an elementwise op declares (``Op.relaxation``): its rule and,
    for ops defined on part of the line only, its domain; for ops whose bias can be fitted to
    any slope (the curves of :mod:`verifier.ops.curves`), the ``line`` and ``span`` rules with
    which alpha-CROWN optimises both slopes (on the boxes inside the domain: :func:`free_boxes`;
    the others keep the rule's bounds)."""

    rule: Rule
    domain: Domain | None = None
    line: LineRule | None = None
    span: SlopeSpan | None = None

    @property
    def free_slopes(self) -> bool:
        """Whether a bound method may choose both slopes of every finite box (``line`` gives
        the sound bias for any slope; ``span`` the range worth searching)."""
        return self.line is not None and self.span is not None


def free_boxes(node: Node, lower: Tensor, upper: Tensor, domain: Domain | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Where free slopes apply (finite boxes with ``lower < upper``, inside the op's
    ``domain`` when it has one: the mask) and float64 stand-ins of the boxes that are the boxes
    there and ``[1, 2]`` elsewhere (inside every domain here), so that a :data:`LineRule` or
    :data:`SlopeSpan` never sees an infinite or empty box, or one outside its domain."""
    mask = torch.isfinite(lower) & torch.isfinite(upper) & (lower < upper)
    if domain is not None:
        mask &= domain(node, torch.nan_to_num(lower), torch.nan_to_num(upper))
    safe_lo = torch.where(mask, lower, 1.0).to(torch.float64)
    safe_hi = torch.where(mask, upper, 2.0).to(torch.float64)
    return mask, safe_lo, safe_hi


def nan_to(t: Tensor, value: float) -> Tensor:
    """``t`` with NaN replaced by ``value`` (infinities kept, unlike ``nan_to_num``)."""
    return torch.where(torch.isnan(t), torch.full_like(t, value), t)


def constant_bounds(op: Op, node: Node, lower: Tensor, upper: Tensor, constants: Args = ()) -> LinearBounds:
    """Slope-0 bounds from the op's own interval rule, widened by the margin unless exact."""
    rest = list(constants[1:])
    flags = [True] + [False] * len(rest)
    (lo,), (hi,) = op.interval(node, [lower, *rest], [upper, *rest], flags)
    lo = nan_to(lo, -math.inf).to(lower.dtype)
    hi = nan_to(hi, math.inf).to(lower.dtype)
    if not op.exact:
        lo = torch.where(torch.isfinite(lo), lo - MARGIN * (1 + lo.abs()), lo)
        hi = torch.where(torch.isfinite(hi), hi + MARGIN * (1 + hi.abs()), hi)
    zero = torch.zeros_like(lower)
    return LinearBounds(zero, lo, zero.clone(), hi)


def _merge(use: Tensor, a: LinearBounds, b: LinearBounds) -> LinearBounds:
    """``a`` where ``use``, else ``b``."""
    return LinearBounds(
        torch.where(use, a.lower_slope, b.lower_slope),
        torch.where(use, a.lower_bias, b.lower_bias),
        torch.where(use, a.upper_slope, b.upper_slope),
        torch.where(use, a.upper_bias, b.upper_bias),
    )


# ---------------------------------------------------------------------------------------------
# The ReLU family: the bound method may pick the lower slope of unstable neurons


def relax_leaky(
    lower: Tensor, upper: Tensor, alpha: Tensor | float, mode: str = "adaptive"
) -> LinearBounds:
    """``x`` for ``x >= 0``, ``alpha x`` below (Relu: ``alpha = 0``; PRelu: constant tensor).

    For ``alpha <= 1`` the function is convex: the upper line is the chord and the lower line
    a line through the origin with slope ``alpha`` ("zero"), ``1`` ("one") or, "adaptive",
    whichever has the smaller area (``1`` when ``u >= -l``). For ``alpha > 1`` (concave) the
    roles swap. Stable boxes get the exact piece. ``alpha`` broadcasts to ``lower``.
    """
    if mode not in MODES:
        raise ValueError(f"relaxation mode {mode!r} is not one of {MODES}")
    if isinstance(alpha, float):
        return _relax_leaky_scalar(lower, upper, alpha, mode)
    alpha_t = torch.as_tensor(alpha, dtype=lower.dtype).expand_as(lower)
    one = torch.ones_like(lower)
    pos, neg = lower >= 0, upper <= 0
    if mode == "adaptive":
        pick = torch.where(upper >= -lower, one, alpha_t)
    elif mode == "zero":
        pick = alpha_t
    else:
        pick = one
    pick = torch.where(pos, one, torch.where(neg, alpha_t, pick))
    f_lo, f_hi = torch.where(pos, lower, alpha_t * lower), torch.where(neg, alpha_t * upper, upper)
    k = torch.where(pos, one, torch.where(neg, alpha_t, (f_hi - f_lo) / (upper - lower)))
    convex = alpha_t <= 1
    low_a, up_a = torch.where(convex, pick, k), torch.where(convex, k, pick)
    # Lines through the origin with a piece's slope are exact tangents (and a stable box's
    # chord is its piece): bias 0, no margin. Only an unstable chord needs one.
    stable = pos | neg
    gaps = torch.stack([f_lo - k * lower, f_hi - k * upper, torch.zeros_like(k)])
    size = torch.maximum(f_lo.abs(), f_hi.abs())
    margin = MARGIN * (1 + size + k.abs() * torch.maximum(lower.abs(), upper.abs()))
    k_up, k_low = gaps.amax(0) + margin, gaps.amin(0) - margin
    zero = torch.zeros_like(lower)
    low_b = torch.where(convex | stable, zero, k_low)
    up_b = torch.where(~convex | stable, zero, k_up)
    return LinearBounds(low_a, low_b, up_a, up_b)


def _relax_leaky_scalar(lower: Tensor, upper: Tensor, alpha: float, mode: str) -> LinearBounds:
    """:func:`relax_leaky` for one ``alpha`` for every neuron (Relu, LeakyRelu): the same
    lines, with the convexity decided once, and the chord computed on the unstable neurons
    only (gathered: often a small share of a layer, and a pass over a batch of
    branch-and-bound children is dominated by these element-wise operations)."""
    pos, neg = lower >= 0, upper <= 0
    piece = torch.where(pos, 1.0, torch.full_like(lower, alpha)).reshape(-1)  # a stable neuron's exact piece
    where = (~(pos | neg)).reshape(-1).nonzero().squeeze(1)  # the unstable neurons, flat

    def scatter(base: Tensor, values: Tensor) -> Tensor:
        return base.index_copy(0, where, values).reshape(lower.shape)

    lo, hi = lower.reshape(-1).index_select(0, where), upper.reshape(-1).index_select(0, where)
    f_lo, f_hi = alpha * lo, hi
    k = (f_hi - f_lo) / (hi - lo)
    if mode == "adaptive":
        pick = torch.where(hi >= -lo, 1.0, torch.full_like(lo, alpha))
    else:
        pick = torch.full_like(lo, alpha if mode == "zero" else 1.0)
    size = torch.maximum(f_lo.abs(), f_hi.abs())
    margin = MARGIN * (1 + size + k.abs() * torch.maximum(lo.abs(), hi.abs()))
    first, second = f_lo - k * lo, f_hi - k * hi  # the chord's gaps at the ends
    zero = torch.zeros_like(piece)
    chord, line = scatter(piece, k), scatter(piece, pick)
    if alpha <= 1:  # convex: the chord above, a line through the origin below
        up_b = scatter(zero, torch.maximum(torch.maximum(first, second), torch.zeros_like(lo)) + margin)
        return LinearBounds(line, zero.reshape(lower.shape), chord, up_b)
    low_b = scatter(zero, torch.minimum(torch.minimum(first, second), torch.zeros_like(lo)) - margin)
    return LinearBounds(chord, low_b, line, zero.reshape(lower.shape))


def _relu(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    return relax_leaky(lo, hi, 0.0, mode)


def _leaky(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    return relax_leaky(lo, hi, float(node.attrs["alpha"]), mode)


def relax_prelu(
    node: Node, lower: Tensor, upper: Tensor, slope: Tensor, mode: str = "adaptive"
) -> LinearBounds:
    """PRelu with its constant ``slope`` input (which :func:`relax` cannot see): the slope
    broadcasts to the static shape ``lower.shape[1:]`` as in ONNX."""
    shape = lower.shape[1:]
    slope = slope.to(lower.dtype)
    if slope.dim() > len(shape):  # a slope written with the batch dimension (of size 1)
        slope = slope.reshape(slope.shape[slope.dim() - len(shape):])
    alpha = slope.reshape(*([1] * (len(shape) - slope.dim())), *slope.shape)
    return relax_leaky(lower, upper, alpha.expand(*shape).unsqueeze(0).expand_as(lower), mode)


def _nonneg(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    return lo >= 0


def _one_sign(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    return (lo > 0) | (hi < 0)


def _neg(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    minus, zero = torch.full_like(lo, -1.0), torch.zeros_like(lo)
    return LinearBounds(minus, zero, minus.clone(), zero.clone())


def _constant(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    return constant_bounds(REGISTRY[node.op], node, lo, hi, constants)


def _prelu(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    slope = constants[1] if len(constants) > 1 else None
    if slope is None:
        raise ValueError(f"node {node.name} (PRelu): the slope must be a constant input")
    return relax_prelu(node, lo, hi, slope, mode)


RELU_FAMILY = Relaxation(_relu)
"""Relu: the chord above, a line through 0 below whose slope the bound method picks."""
LEAKY_RELU_FAMILY = Relaxation(_leaky)
PRELU_FAMILY = Relaxation(_prelu)
NEGATION = Relaxation(_neg)
"""``-x`` exactly."""
INTERVAL_ONLY = Relaxation(_constant)
"""Slope 0 and the op's own interval bounds (steps, periodic functions, ...)."""
NONNEGATIVE: Domain = _nonneg
ONE_SIGN: Domain = _one_sign


def relax(op: Op, node: Node, lower: Tensor, upper: Tensor, mode: str = "adaptive",
          constants: Args = (), padded: bool = True) -> LinearBounds | None:
    """Linear bounds of the node's output over the boxes of its single dynamic input, from the
    op's declared :class:`Relaxation` (``op.relaxation``).

    Args:
        op: the node's op (a table override may give another op than the registry's).
        node: a unary elementwise node.
        lower, upper: ``(B, *shape)`` pre-activation bounds (float64 recommended; the lines
            are valid for the exact function, with their bias padded against this module's
            own rounding).
        mode: lower slope of unstable ReLU-family neurons: "adaptive" (area-minimising,
            CROWN), "zero" (the negative piece's slope) or "one".
        constants: the node's constant inputs by position (None at the dynamic input 0), for
            rules with constant parameters (PRelu's slope).
        padded: for a dtype narrower than float64, pad the biases for the rounding of the
            lines (False: a plain cast, lines that only estimate: never for a proof).

    Returns:
        the bounds, each ``(B, *shape)`` in ``lower``'s dtype, or ``None`` when the op has no
        relaxation (use interval bounds).
    """
    if mode not in MODES:
        raise ValueError(f"relaxation mode {mode!r} is not one of {MODES}")
    relaxation = op.relaxation
    if relaxation is None:
        return None
    dtype = lower.dtype
    lo, hi = lower.to(torch.float64), upper.to(torch.float64)
    if relaxation.domain is None and all_finite(lo) and all_finite(hi) and bool((lo < hi).all()):
        # the usual case: every box is safe; the rule's lines are kept where all are finite
        lines = relaxation.rule(node, lo, hi, mode, constants)
        if all(all_finite(t) for t in (lines.lower_slope, lines.lower_bias, lines.upper_slope, lines.upper_bias)):
            return _to_dtype(lines, lo, hi, dtype, padded)
    fallback = ~(torch.isfinite(lo) & torch.isfinite(hi) & (lo < hi))
    if relaxation.domain is not None:
        fallback |= ~relaxation.domain(node, lo, hi)
    # Safe stand-in boxes where the fallback applies, so the rule never sees inf or NaN.
    safe_lo = torch.where(fallback, torch.ones_like(lo), lo)
    safe_hi = torch.where(fallback, torch.full_like(hi, 2.0), hi)
    lines = relaxation.rule(node, safe_lo, safe_hi, mode, constants)
    bad = fallback.clone()
    for t in (lines.lower_slope, lines.lower_bias, lines.upper_slope, lines.upper_bias):
        bad |= ~torch.isfinite(t)
    wide = [None if c is None else c.to(torch.float64) for c in constants]
    out = _merge(bad, constant_bounds(op, node, lo, hi, wide), lines)
    return _to_dtype(out, lo, hi, dtype, padded)


def _to_dtype(b: LinearBounds, lo: Tensor, hi: Tensor, dtype: torch.dtype, padded: bool = True) -> LinearBounds:
    """Casts to ``dtype``; for a narrower type the slopes are rounded first and the biases
    padded for the slope change over the box and for their own rounding (``padded``)."""
    if dtype == torch.float64:
        return b
    if not padded:
        return LinearBounds(*(t.to(dtype) for t in (b.lower_slope, b.lower_bias, b.upper_slope, b.upper_bias)))
    big = torch.maximum(lo.abs(), hi.abs())
    eps = torch.finfo(dtype).eps

    def cast(a: Tensor, bias: Tensor, up: bool) -> tuple[Tensor, Tensor]:
        a_n = a.to(dtype)
        change = (a_n.to(torch.float64) - a).abs()
        shift = torch.where(change == 0, torch.zeros_like(big), change * big)
        pad = shift + 2 * eps * (bias.abs() + 1)
        padded = bias + pad if up else bias - pad
        top = torch.finfo(dtype).max  # a finite bias must not round to the wrong infinity
        padded = padded.clamp(min=-top) if up else padded.clamp(max=top)
        return a_n, torch.where(torch.isfinite(bias), padded, bias).to(dtype)

    la, lb = cast(b.lower_slope, b.lower_bias, False)
    ua, ub = cast(b.upper_slope, b.upper_bias, True)
    return LinearBounds(la, lb, ua, ub)
