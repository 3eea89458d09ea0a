"""Linear relaxations of ops that are not unary elementwise (several dynamic inputs, or windows).

A rule moves CROWN's objective coefficients ``A`` (``(N, R, *out_shape)``) on the node's output
to coefficients on its dynamic inputs plus a bias, such that for every input inside the given
bounds ``sum <A, f(inputs)> >= sum_i <A_i, input_i> + bias`` (exact real arithmetic; the float
evaluation error of the node is added by the traversal from the op's ``fp_error``).

Each op declares its rule as ``Op.multi_relaxation`` (a :class:`MultiRule`; Mul's McCormick
planes live with Mul in :mod:`verifier.ops.arith`, MaxPool's windows in :mod:`verifier.ops.pool`);
ops without one are cut at their interval bounds by the traversal. This module holds the
shared machinery: the window planes of a maximum, rounding margins, broadcasting helpers.

- **Mul** ``x * y`` (both dynamic, broadcasting). ``xy - a x - b y`` is bilinear, so over a box
  both its extrema lie at corners: for *any* slopes ``(a, b)`` the bias is the min (max) over
  the four corners. The slopes are convex combinations of the two McCormick planes of each
  side, ``lam (x - lx)(y - ly) + (1 - lam)(ux - x)(uy - y) >= 0`` below (and its mirror
  above); the weight closest to 1/2 for which the plane still reaches the product's own
  interval bound over the box is used, so the relaxation of one node alone concretises as
  tightly as the interval cut would; alpha-CROWN optimises both weights per element and row
  (:class:`PlaneWeights`: any weight in ``[0, 1]`` is sound, the bias being taken over the
  corners).
- **Max** (any number of inputs, broadcasting, constants allowed), **MaxPool**, **ReduceMax**,
  **GlobalMaxPool**: the maximum over a window of boxes ``[l_k, u_k]`` (the inputs of Max,
  the pooling window, the reduced axes). Lower plane: ``max >= x_j`` for the element with the
  largest lower bound (so one node alone concretises to its interval bound), except for the
  elementwise Max/Min, which take the largest box centre like CROWN's adaptive ReLU slope
  (``Max(x, 0)`` is a ReLU); padding is never chosen. alpha-CROWN may replace it per row by
  any convex combination ``sum_k w_k x_k`` of the window's slots (:func:`lower_weights`; valid
  since the maximum is at least every average). Upper plane: with
  ``j`` the element of largest upper bound and ``U2`` the second largest upper bound,
  ``max_k x_k <= max(x_j, U2)``, and ``t -> max(t, U2)`` is convex, so the chord over
  ``[l_j, u_j]`` lies above it; its bias is the maximum of ``max(t, U2) - s t`` at the two
  ends. The chord peaks at ``u_j``: never looser than the constant ``max_k u_k``. When
  ``l_j >= U2`` the window is decided and ``max = x_j`` exactly.
- **Min**, **ReduceMin**: ``min(x) = -max(-x)``.

Rounding (unit of the bounds' dtype): each bias is padded for the rounding of its own
computation (``gamma(4)`` per element) and of the products and sums that fold ``A`` into
coefficients and bias (``gamma(n + 4)`` times the magnitudes involved). Boxes with an infinite end (or one beyond
:data:`LARGE`) get slope 0 and interval bounds, or stay exact when decided; infinities never
reach a product, so neither the bounds nor their gradients (alpha-CROWN) see NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.base import gamma, operands, unit_roundoff

Args = Sequence[Tensor | None]
Flags = Sequence[bool]

LARGE = 1e100
"""Boxes with an end beyond this magnitude use interval bounds (keeps every product finite)."""


@dataclass(frozen=True)
class Moved:
    """Result of a backward step: coefficients per input position, and the bias ``(N, R)``."""

    coefficients: dict[int, Tensor]
    bias: Tensor


@dataclass(frozen=True)
class PlaneWeights:
    """Weights of a rule's planes that alpha-CROWN may optimise, like the slopes of a unary
    op: ``count`` per output element, each in ``[0, 1]``, chosen per objective row.

    **Soundness contract**: the rule's ``backward`` must return a valid relaxation for *every*
    weight in ``[0, 1]`` (for Mul, a plane's bias is taken over the box's corners whatever its
    slopes), so any iterate of the ascent is a certified bound.

    Attributes:
        seed: ``(node, lowers, uppers, batched) -> (N, *out, count)``: the weights the rule
            uses without alpha (the starting point), or None where nothing is to be optimised.
            ``out`` is any shape holding the node's output elements in the rule's order;
            ``count`` weights per element (2 for Mul, 4 for Div, the window size for a maximum).
        backward: ``(node, A, lowers, uppers, batched, weights) -> Moved | None`` as
            :attr:`MultiRule.backward`, with ``weights`` ``(N, R, *out, count)`` per row of ``A``.
    """

    seed: Callable[[Node, Args, Args, Flags], Tensor | None]
    backward: Callable[[Node, Tensor, Args, Args, Flags, Tensor], Moved | None]


@dataclass(frozen=True)
class MultiRule:
    """The relaxation of one op type.

    Attributes:
        backward: ``(node, A, lowers, uppers, batched) -> Moved | None`` (None: cut the node).
            ``lowers``/``uppers`` hold each input's bounds ``(N, *shape)`` (constants without
            the batch dim, absent optional inputs as None); ``batched`` flags the dynamic ones.
        refine: ``(node, lowers, uppers, batched) -> {input position: flat positions}`` whose
            bounds CROWN should tighten before the node is relaxed.
        weights: the planes' optimisable weights (None: fixed planes).
    """

    backward: Callable[[Node, Tensor, Args, Args, Flags], Moved | None]
    refine: Callable[[Node, Args, Args, Flags], dict[int, Tensor]]
    weights: PlaneWeights | None = None


# ---------------------------------------------------------------------------------------------
# Shared helpers


def row_sums(t: Tensor) -> Tensor:
    """Sum of ``(N, R, ...)`` over all but the first two dims."""
    return t.reshape(*t.shape[:2], -1).sum(dim=2)


def _finite(t: Tensor) -> Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def mag(lo: Tensor, hi: Tensor) -> Tensor:
    """``max(|lo|, |hi|)`` with infinities as 0 (for rounding margins of finite terms)."""
    return _finite(torch.maximum(lo.abs(), hi.abs()))


def safe_div(num: Tensor, den: Tensor, default: float) -> Tensor:
    """``num / den`` where ``den > 0``, else ``default`` (no NaN in values or gradients)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, default))


def row_margin(a: Tensor, size: Tensor) -> Tensor:
    """Rounding bound ``(N, R)`` of folding ``A`` into terms of magnitude ``|A| * size``."""
    n = int(a[0, 0].numel()) if a.numel() else 0
    return gamma(n + 4, unit_roundoff(a.dtype)) * row_sums(a.abs() * size)


def row_bias(a: Tensor, lower: Tensor, upper: Tensor, scale: Tensor) -> Tensor:
    """``sum(A+ lower + A- upper)`` per row ``(N, R)`` with ``0 * inf = 0``, minus its rounding.

    ``lower``/``upper`` (``(N, *out)``) are the planes' biases (``-inf``/``+inf`` allowed);
    ``scale`` bounds ``|slopes| * |inputs|`` per element, for the rounding of ``A * slope``.
    """
    return rows_bias(a, lower.unsqueeze(1), upper.unsqueeze(1), scale.unsqueeze(1))


def rows_bias(a: Tensor, lower: Tensor, upper: Tensor, scale: Tensor) -> Tensor:
    """:func:`row_bias` with planes per row: ``lower``, ``upper``, ``scale`` ``(N, R or 1, *out)``."""
    c = torch.where(a > 0, lower, upper)
    finite = torch.isfinite(c)
    safe = torch.where(finite, c, torch.zeros_like(c))
    terms = torch.where(finite | (a == 0), a * safe, torch.full_like(safe, -math.inf))
    total = row_sums(terms) - row_margin(a, safe.abs() + scale)
    return torch.nan_to_num(total, nan=-math.inf)


def flat_positions(mask: Tensor) -> Tensor:
    """Flat positions (per batch element) where ``mask (N, *shape)`` holds in any element."""
    return torch.nonzero(mask.reshape(mask.shape[0], -1).any(dim=0)).flatten()


def aligned_bounds(los: Args, his: Args, batched: Flags,
                   dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]] | None:
    """Every input's bounds aligned for broadcasting, or None with an absent input."""
    if not los or any(t is None for t in (*los, *his)):
        return None
    lows = operands([t.to(dtype) for t in los if t is not None], batched)
    highs = operands([t.to(dtype) for t in his if t is not None], batched)
    return lows, highs


def _broadcast_dims(aligned: Tensor, out: Sequence[int], lead: int) -> list[int]:
    """Dims of a ``(lead..., *out)`` tensor along which the aligned input was broadcast."""
    return [k + lead for k, (s, o) in enumerate(zip(aligned.shape[1:], out, strict=True)) if s == 1 and o != 1]


def reduce_to(coeff: Tensor, aligned: Tensor, shape: Sequence[int]) -> Tensor:
    """Sums ``(N, R, *out)`` over the dims where the input was broadcast; ``(N, R, *shape)``."""
    dims = _broadcast_dims(aligned, coeff.shape[2:], 2)
    summed = coeff.sum(dim=dims, keepdim=True) if dims else coeff
    return summed.reshape(*coeff.shape[:2], *shape)


def _positions_of_inputs(mask: Tensor, lows: Sequence[Tensor], los: Args, batched: Flags) -> dict[int, Tensor]:
    """For each dynamic input, its flat positions read by some element of ``mask (N, *out)``."""
    out: dict[int, Tensor] = {}
    for i, (aligned, source, dyn) in enumerate(zip(lows, los, batched, strict=True)):
        if dyn and source is not None:
            dims = _broadcast_dims(aligned, mask.shape[1:], 1)
            reduced = mask.any(dim=dims, keepdim=True) if dims else mask
            out[i] = flat_positions(reduced.reshape(source.shape[0], *source.shape[1:]))
    return out


def every_position(node: Node, los: Args, his: Args, batched: Flags) -> dict[int, Tensor]:
    """A ``refine`` rule: every flat position of every dynamic input (products, quotients)."""
    out: dict[int, Tensor] = {}
    for i, (lo, dyn) in enumerate(zip(los, batched, strict=True)):
        if dyn and lo is not None:
            out[i] = torch.arange(int(lo[0].numel()), device=lo.device)
    return out


def negated(rule: MultiRule) -> MultiRule:
    """The rule of ``-g(-inputs)`` from the rule of ``g`` (Min from Max, ReduceMin from ReduceMax):
    ``<A, -g(-x)> = <-A, g(-x)> >= <C, -x> + bias``."""

    def flip(los: Args, his: Args) -> tuple[list[Tensor | None], list[Tensor | None]]:
        return [None if h is None else -h for h in his], [None if lo is None else -lo for lo in los]

    def backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
        moved = rule.backward(node, -a, *flip(los, his), batched)
        if moved is None:
            return None
        return Moved({i: -c for i, c in moved.coefficients.items()}, moved.bias)

    def refine(node: Node, los: Args, his: Args, batched: Flags) -> dict[int, Tensor]:
        return rule.refine(node, *flip(los, his), batched)

    if rule.weights is None:
        return MultiRule(backward, refine)
    weights = rule.weights

    def seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
        return weights.seed(node, *flip(los, his), batched)

    def weighted(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, chosen: Tensor) -> Moved | None:
        moved = weights.backward(node, -a, *flip(los, his), batched, chosen)
        if moved is None:
            return None
        return Moved({i: -c for i, c in moved.coefficients.items()}, moved.bias)

    return MultiRule(backward, refine, PlaneWeights(seed, weighted))


# ---------------------------------------------------------------------------------------------
# Maxima over windows


@dataclass(frozen=True)
class WindowPlanes:
    """Per window of ``K`` slots: ``max >= x[low]``, ``max <= slope * x[up] + bias``.

    Attributes:
        low, up: slot indices (long); equal where the window is decided.
        slope, bias: the upper plane (``bias`` may be ``+inf``).
        scale: ``|x[low]| + slope |x[up]|`` bounds (finite), for rounding margins.
        decided: windows where ``max = x[up]`` exactly.
    """

    low: Tensor
    up: Tensor
    slope: Tensor
    bias: Tensor
    scale: Tensor
    decided: Tensor


def window_planes(lo_w: Tensor, hi_w: Tensor, by_centre: bool) -> WindowPlanes:
    """The planes of the maximum over the last dim of ``(..., K)`` boxes; padding slots (upper
    bound ``-inf``) are never chosen. The lower plane's element has the largest box centre
    (``by_centre``) or the largest lower bound."""
    biggest = torch.finfo(lo_w.dtype).max
    key = lo_w / 2 + hi_w / 2 if by_centre else lo_w
    key = torch.nan_to_num(key, nan=0.0, posinf=biggest, neginf=-biggest)
    low = torch.where(hi_w > -math.inf, key, torch.full_like(key, -math.inf)).argmax(dim=-1)
    if hi_w.shape[-1] >= 2:
        top, order = hi_w.topk(2, dim=-1)
        u, second, up = top[..., 0], top[..., 1], order[..., 0]
    else:
        u, up = hi_w[..., 0], torch.zeros(hi_w.shape[:-1], dtype=torch.long, device=hi_w.device)
        second = torch.full_like(u, -math.inf)
    lo = lo_w.gather(-1, up.unsqueeze(-1)).squeeze(-1)
    decided = second <= lo
    finite = (lo.abs() <= LARGE) & (u.abs() <= LARGE)
    l_s, u_s = torch.where(finite, lo, torch.zeros_like(lo)), torch.where(finite, u, torch.ones_like(u))
    start = torch.maximum(l_s, torch.where(finite, second, l_s))  # max(t, U2) at t = l
    slope = safe_div(u_s - start, u_s - l_s, 0.0)
    ends = torch.maximum(start - slope * l_s, u_s - slope * u_s)  # max(t, U2) - slope t is convex
    chord = ends + gamma(3, unit_roundoff(lo.dtype)) * (u_s.abs() + start.abs() + slope * mag(l_s, u_s))
    one, zero = torch.ones_like(slope), torch.zeros_like(slope)
    slope = torch.where(decided, one, torch.where(finite, slope, zero))
    bias = torch.where(decided, zero, torch.where(finite, chord, u.detach()))
    low = torch.where(decided, up, low)
    mags = mag(lo_w, hi_w)
    scale = mags.gather(-1, low.unsqueeze(-1)).squeeze(-1) + slope * mags.gather(-1, up.unsqueeze(-1)).squeeze(-1)
    return WindowPlanes(low, up, slope, bias, scale, decided)


def lower_weights(chosen: Tensor, planes: WindowPlanes, hi_w: Tensor) -> Tensor:
    """The lower plane ``max >= sum_k w_k x_k`` from alpha's weights ``chosen`` ``(N, R, ...,
    K)``: normalised to sum 1 over the slots that can hold the maximum (upper bound above
    ``-inf``), so a convex combination (valid for any weights); the default one-hot plane where
    they sum to 0, and ``x[up]`` exactly where the window is decided."""
    slots = hi_w.shape[-1]
    usable = (hi_w > -math.inf).unsqueeze(1)
    w = torch.where(usable, chosen.to(hi_w.dtype).clamp(0, 1), 0.0)
    total = w.sum(dim=-1, keepdim=True)
    one_hot = torch.nn.functional.one_hot(planes.low, slots).unsqueeze(1).to(w)
    w = torch.where(total > 0, w / torch.where(total > 0, total, 1.0), one_hot)
    exact = torch.nn.functional.one_hot(planes.up, slots).unsqueeze(1).to(w)
    return torch.where(planes.decided.unsqueeze(1).unsqueeze(-1), exact, w)


def weighted_scale(planes: WindowPlanes, lo_w: Tensor, hi_w: Tensor) -> Tensor:
    """A rounding scale for convex lower planes: ``(K + 1)`` times the largest slot magnitude
    (the weights' sum may miss 1 by ``K`` roundings) plus the upper plane's ``slope |x[up]|``."""
    mags = mag(lo_w, hi_w)
    up = mags.gather(-1, planes.up.unsqueeze(-1)).squeeze(-1)
    return (hi_w.shape[-1] + 1) * mags.amax(dim=-1) + planes.slope * up


def _window_coefficients(a: Tensor, planes: WindowPlanes, slots: int,
                         lower: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Coefficients per window slot ``(N, R, ..., K)`` for ``A (N, R, ...)``, and the bias;
    ``lower``: the convex lower plane's weights ``(N, R, ..., K)`` (:func:`lower_weights`) and
    its rounding scale (:func:`weighted_scale`), else ``max >= x[low]``."""
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    shape = (*a.shape, 1)
    if lower is None:
        coeff = torch.zeros((*a.shape, slots), dtype=a.dtype, device=a.device)
        coeff = coeff.scatter_add(-1, planes.low.unsqueeze(1).unsqueeze(-1).expand(shape), pos.unsqueeze(-1))
        scale = planes.scale
    else:
        coeff, scale = pos.unsqueeze(-1) * lower[0].to(a.dtype), lower[1]
    up_values = (neg * planes.slope.unsqueeze(1)).unsqueeze(-1)
    coeff = coeff.scatter_add(-1, planes.up.unsqueeze(1).unsqueeze(-1).expand(shape), up_values)
    return coeff, row_bias(a, torch.zeros_like(planes.bias), planes.bias, scale)


def _stacked(los: Args, his: Args, batched: Flags, dtype: torch.dtype) -> tuple[list[Tensor], Tensor, Tensor] | None:
    """The aligned lower bounds of Max's inputs and all bounds stacked ``(N, *out, K)``."""
    aligned = aligned_bounds(los, his, batched, dtype)
    if aligned is None or not any(batched):
        return None
    lows, highs = aligned
    shape = torch.broadcast_shapes(*(t.shape for t in lows))
    lo_w = torch.stack([t.expand(shape) for t in lows], dim=-1)
    return lows, lo_w, torch.stack([t.expand(shape) for t in highs], dim=-1)


def _max_moved(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, chosen: Tensor | None) -> Moved | None:
    """Elementwise Max through the window planes; ``chosen``: alpha's lower-plane weights
    ``(N, R, *out, K)`` per row (None: ``max >= x[low]``)."""
    stacked = _stacked(los, his, batched, a.dtype)
    if stacked is None:
        return None
    lows, lo_w, hi_w = stacked
    planes = window_planes(lo_w, hi_w, True)
    lower = None
    if chosen is not None:
        lower = (lower_weights(chosen.reshape(*a.shape, -1), planes, hi_w), weighted_scale(planes, lo_w, hi_w))
    coeff, bias = _window_coefficients(a, planes, len(lows), lower)
    coefficients = {}
    for i, (aligned, source, dyn) in enumerate(zip(lows, los, batched, strict=True)):
        part = coeff[..., i]
        if dyn:
            assert source is not None
            coefficients[i] = reduce_to(part, aligned, source.shape[1:])
        else:  # a constant: its term joins the bias
            const = torch.where(part == 0, torch.zeros_like(part), aligned.unsqueeze(1))
            bias = bias + row_sums(part * const) - row_margin(part, const.abs())
    return Moved(coefficients, torch.nan_to_num(bias, nan=-math.inf))


def _max_backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
    return _max_moved(node, a, los, his, batched, None)


def _max_seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
    """The default lower plane as weights ``(N, *out, K)`` (one-hot at ``low``), where some
    window is undecided."""
    stacked = _stacked(los, his, batched, torch.float64)
    if stacked is None:
        return None
    lows, lo_w, hi_w = stacked
    planes = window_planes(lo_w, hi_w, True)
    if bool(planes.decided.all()):
        return None
    return torch.nn.functional.one_hot(planes.low, len(lows)).double()


def _max_refine(node: Node, los: Args, his: Args, batched: Flags) -> dict[int, Tensor]:
    """Positions of the dynamic inputs read by undecided elements."""
    dtype = next((t.dtype for t, dyn in zip(los, batched, strict=True) if dyn and t is not None), torch.float64)
    stacked = _stacked(los, his, batched, dtype)
    if stacked is None:
        return {}
    lows, lo_w, hi_w = stacked
    return _positions_of_inputs(~window_planes(lo_w, hi_w, True).decided, lows, los, batched)


def single_input(los: Args, his: Args, batched: Flags) -> tuple[Tensor, Tensor] | None:
    """The bounds of a window op's one dynamic input."""
    if not batched or not batched[0] or los[0] is None or his[0] is None:
        return None
    return los[0], his[0]


ReducedDims = Callable[[Node, int], list[int]]
"""``(node, rank of the (N, *shape) bounds) -> dims`` that a window maximum reduces."""


@dataclass(frozen=True)
class _Reduction:
    """A window maximum's reduced dims of the ``(N, *shape)`` bounds, the kept ones, the
    windows' bounds ``(N, *kept sizes, K)`` and their planes."""

    dims: list[int]
    kept: list[int]
    lo_w: Tensor
    hi_w: Tensor
    planes: WindowPlanes


def _reduction(node: Node, bounds: tuple[Tensor, Tensor], dtype: torch.dtype, dims_of: ReducedDims) -> _Reduction:
    """The windows of a maximum over the dims ``dims_of`` picks, and their planes."""
    lo, hi = (t.to(dtype) for t in bounds)
    dims = dims_of(node, lo.dim())
    kept = [d for d in range(1, lo.dim()) if d not in dims]
    sizes = [lo.shape[d] for d in kept]
    k = math.prod(lo.shape[d] for d in dims)
    lo_w, hi_w = (t.permute(0, *kept, *dims).reshape(lo.shape[0], *sizes, k) for t in (lo, hi))
    return _Reduction(dims, kept, lo_w, hi_w, window_planes(lo_w, hi_w, False))


def window_max_rule(dims_of: ReducedDims) -> MultiRule:
    """The rule of a maximum over the dims ``dims_of`` picks (ReduceMax, GlobalMaxPool)."""

    def weighted(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, chosen: Tensor | None) -> Moved | None:
        bounds = single_input(los, his, batched)
        if bounds is None:
            return None
        shape = bounds[0].shape
        red = _reduction(node, bounds, a.dtype, dims_of)
        sizes = [shape[d] for d in red.kept]
        a = a.reshape(*a.shape[:2], *sizes)
        lower = None
        if chosen is not None:
            lower = (lower_weights(chosen.reshape(*a.shape, -1), red.planes, red.hi_w),
                     weighted_scale(red.planes, red.lo_w, red.hi_w))
        coeff, bias = _window_coefficients(a, red.planes, red.hi_w.shape[-1], lower)
        coeff = coeff.reshape(*a.shape[:2], *sizes, *(shape[d] for d in red.dims))
        order = [0, 1, *(d + 1 for d in red.kept), *(d + 1 for d in red.dims)]
        return Moved({0: coeff.permute(*sorted(range(len(order)), key=order.__getitem__))}, bias)

    def backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
        return weighted(node, a, los, his, batched, None)

    def seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
        """The default lower plane, one-hot ``(N, *kept sizes, K)``, where a window is undecided."""
        bounds = single_input(los, his, batched)
        if bounds is None:
            return None
        red = _reduction(node, bounds, torch.float64, dims_of)
        if bool(red.planes.decided.all()):
            return None
        return torch.nn.functional.one_hot(red.planes.low, red.hi_w.shape[-1]).double()


    def refine(node: Node, los: Args, his: Args, batched: Flags) -> dict[int, Tensor]:
        bounds = single_input(los, his, batched)
        if bounds is None:
            return {}
        shape = bounds[0].shape
        red = _reduction(node, bounds, bounds[0].dtype, dims_of)
        undecided = (~red.planes.decided).reshape(shape[0], *(1 if d in red.dims else shape[d]
                                                              for d in range(1, len(shape))))
        return {0: flat_positions(undecided.expand(shape))}

    return MultiRule(backward, refine, PlaneWeights(seed, weighted))


MAX_RULE = MultiRule(_max_backward, _max_refine, PlaneWeights(_max_seed, _max_moved))
"""Elementwise Max of broadcast inputs (dynamic or constant)."""
MIN_RULE = negated(MAX_RULE)
"""Elementwise Min: ``min(x) = -max(-x)``."""
