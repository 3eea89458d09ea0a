"""Linear relaxations fitted to the curve of a unary elementwise function (:class:`Curve`).

A :class:`Curve` holds candidate slopes and the points where ``f(x) - a x`` can have an
interior extremum; :func:`curve_relaxation` turns it into the :class:`~verifier.ops.relax.Relaxation`
an op declares. This module holds the line fitter, the slope constructions and the curves of the
smooth and piecewise-linear functions (Sigmoid, Tanh, Erf, Exp, Softplus, Log, Sqrt, Reciprocal,
Elu, Selu, HardSwish, Abs, Clip, HardSigmoid).

Soundness does not rest on the slope construction. For any slope ``a`` the bias is computed
from the extremum of ``g(x) = f(x) - a x`` on ``[l, u]``, which lies at a box end or at one of
the curve's critical points (inverse-derivative points on each piece where ``f'`` is monotone,
and the breakpoints), all clamped into the box. ``f`` is the op's own ``forward`` in float64.
A safety margin ``1e-12 (1 + |f| + |a| max(|l|, |u|))`` covers the rounding of that
computation (a critical point computed slightly off moves ``g`` only to second order). The
slope construction (chords, tangents at the midpoint, the CROWN/DeepPoly tangent through a box
end for S-shaped functions, found by vectorised bisection) only decides tightness: among the
candidate slopes each side keeps the line with the smallest area between line and function,
i.e. the best value at the box midpoint. Slope 0 is always a candidate, so every line is at
least as tight at the midpoint as the constant bounds ``[min f, max f]``.

A new op builds its curve from the public pieces: ``Curve(critical, s_slopes(df))`` for an
S-shaped function, ``smooth_slopes(df)`` for a convex or concave one, :func:`pl_curve` for a
piecewise-linear one; then ``relaxation = curve_relaxation(curve)`` in its class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.base import REGISTRY, Args
from verifier.ops.relax import MARGIN, Domain, LinearBounds, Relaxation, SlopeSpan, nan_to

BISECTION_STEPS = 40

Points = Callable[[Node, Tensor], list[Tensor]]
BoxPoints = Callable[[Node, Tensor, Tensor, Tensor], list[Tensor]]
Slopes = Callable[[Node, Tensor, Tensor], list[Tensor]]


@dataclass(frozen=True)
class Curve:
    """The relaxation data of a unary op.

    Attributes:
        critical: ``(node, a) -> points`` where ``f(x) - a x`` may have a local extremum
            besides the box ends (breakpoints and ``f'^{-1}(a)`` on each smooth piece). Extra
            points are harmless; a missing one breaks soundness. NaN/inf points are allowed.
        slopes: ``(node, l, u) -> candidate slopes`` (NaN ones are dropped); slope 0 is added.
        boxed: ``(node, a, l, u) -> points``: more critical points, for curves whose points
            depend on the box too (the periodic ones, roots found by bisection:
            :mod:`verifier.ops.boxed_curves`); same contract as ``critical``.
        span: ``(node, l, u) -> (least, greatest)``: the slopes free-slope optimisers search
            (default: the range of the candidate slopes and 0).
    """

    critical: Points
    slopes: Slopes
    boxed: BoxPoints | None = None
    span: SlopeSpan | None = None


# ---------------------------------------------------------------------------------------------
# The line fitter


def _f(node: Node, x: Tensor) -> Tensor:
    return REGISTRY[node.op].forward(node, [x], [True])[0]


def _clamp(p: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    p = torch.nan_to_num(p, nan=0.0, posinf=math.inf, neginf=-math.inf)
    return torch.minimum(torch.maximum(p, lo), hi)


def line_bias(node: Node, curve: Curve, a: Tensor, lo: Tensor, hi: Tensor, upper: bool) -> Tensor:
    """The bias making ``a x + b`` a valid upper (lower) bound of ``f`` on ``[lo, hi]``.

    The candidate points and their values are found without gradient; the bias is
    ``extremum of f(p) - a p`` over them, so its gradient in ``a`` is ``-p`` at the extremal
    point (the envelope theorem: the points' own dependence on ``a`` does not move it).
    ``a`` and the box broadcast together.
    """
    shape = torch.broadcast_shapes(a.shape, lo.shape, hi.shape)
    with torch.no_grad():  # the ends' values once per box, not once per row of slopes
        ends = [_f(node, lo).expand(shape), _f(node, hi).expand(shape)]
    a, lo, hi = a.expand(shape), lo.expand(shape), hi.expand(shape)
    with torch.no_grad():
        found = curve.critical(node, a.detach())
        if curve.boxed is not None:
            found += curve.boxed(node, a.detach(), lo, hi)
        inside = [_clamp(p, lo, hi) for p in found]
        points = [lo, hi, *inside]
        values = [*ends, *(_f(node, p) for p in inside)]
    gaps = torch.stack([v - a * p for v, p in zip(values, points, strict=True)])
    gaps = nan_to(gaps, math.inf if upper else -math.inf)
    size = torch.stack([v.abs() for v in values]).nan_to_num(nan=0.0, posinf=0.0).amax(0)
    margin = MARGIN * (1 + size + a.abs() * torch.maximum(lo.abs(), hi.abs()))
    return gaps.amax(0) + margin if upper else gaps.amin(0) - margin


def fit(
    node: Node, curve: Curve, slopes: list[Tensor], lo: Tensor, hi: Tensor, upper: bool
) -> tuple[Tensor, Tensor]:
    """Among candidate slopes, the valid line of least area above (below) ``f`` on the box."""
    mid = lo / 2 + hi / 2
    best_a = best_b = best_v = None
    for cand in slopes:
        a = torch.nan_to_num(cand.to(lo.dtype).expand_as(lo), nan=0.0, posinf=0.0, neginf=0.0)
        b = line_bias(node, curve, a, lo, hi, upper)
        v = nan_to(a * mid + b, math.inf if upper else -math.inf)
        if best_a is None or best_b is None or best_v is None:
            best_a, best_b, best_v = a, b, v
            continue
        better = v < best_v if upper else v > best_v
        best_a, best_b, best_v = (
            torch.where(better, a, best_a),
            torch.where(better, b, best_b),
            torch.where(better, v, best_v),
        )
    assert best_a is not None and best_b is not None
    return best_a, best_b


def relax_curve(
    node: Node,
    curve: Curve,
    lo: Tensor,
    hi: Tensor,
    lower_slopes: list[Tensor] | None = None,
    upper_slopes: list[Tensor] | None = None,
) -> LinearBounds:
    """Fits both lines of ``curve`` on every box (candidate lists default to ``curve.slopes``)."""
    cands = curve.slopes(node, lo, hi)
    zero = torch.zeros_like(lo)
    la, lb = fit(
        node, curve, [zero, *cands] if lower_slopes is None else lower_slopes, lo, hi, upper=False
    )
    ua, ub = fit(
        node, curve, [zero, *cands] if upper_slopes is None else upper_slopes, lo, hi, upper=True
    )
    return LinearBounds(la, lb, ua, ub)


# ---------------------------------------------------------------------------------------------
# Slope constructions


def chord(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    """Slope of the chord of ``f`` between ``lo`` and ``hi`` (NaN where they coincide)."""
    return (_f(node, hi) - _f(node, lo)) / (hi - lo)


def tangent_through(
    f: Callable[[Tensor], Tensor],
    df: Callable[[Tensor], Tensor],
    anchor: Tensor,
    lo: Tensor,
    hi: Tensor,
) -> Tensor:
    """Point ``d`` in ``[lo, hi]`` whose tangent passes through ``(anchor, f(anchor))``.

    Assumes ``h(d) = f(d) + f'(d) (anchor - d) - f(anchor)`` non-decreasing on ``[lo, hi]`` (true
    for the concave part of an S-curve with ``anchor`` to the left); vectorised bisection,
    returning the end where ``h >= 0`` (``hi`` when there is no root).
    """
    fa = f(anchor)
    for _ in range(BISECTION_STEPS):
        mid = lo / 2 + hi / 2
        h = f(mid) + df(mid) * (anchor - mid) - fa
        below = h < 0
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return hi


def s_slopes(df: Callable[[Tensor], Tensor]) -> Slopes:
    """Candidates for an S-shaped ``f`` (convex below 0, concave above): chord, tangent at the
    midpoint, and the CROWN tangents through each box end (upper through ``l``, lower through
    ``u``, the latter by reflecting ``f`` to ``-f(-x)``)."""

    def slopes(node: Node, lo: Tensor, hi: Tensor) -> list[Tensor]:
        def f(x: Tensor) -> Tensor:
            return _f(node, x)

        def fr(x: Tensor) -> Tensor:
            return -_f(node, -x)

        def dfr(x: Tensor) -> Tensor:
            return df(-x)

        zero = torch.zeros_like(lo)
        d_up = tangent_through(f, df, lo, torch.maximum(lo, zero), hi)
        d_low = -tangent_through(fr, dfr, -hi, torch.maximum(-hi, zero), -lo)
        return [chord(node, lo, hi), df(lo / 2 + hi / 2), df(d_up), df(d_low)]

    return slopes


def smooth_slopes(
    df: Callable[[Node, Tensor], Tensor], breaks: Callable[[Node], tuple[float, ...]] = lambda n: ()
) -> Slopes:
    """Chord, tangent at the midpoint and chords between the box ends and breakpoints."""

    def slopes(node: Node, lo: Tensor, hi: Tensor) -> list[Tensor]:
        out = [chord(node, lo, hi), df(node, lo / 2 + hi / 2)]
        return out + _break_chords(node, lo, hi, breaks(node))

    return slopes


def _break_chords(node: Node, lo: Tensor, hi: Tensor, breaks: tuple[float, ...]) -> list[Tensor]:
    """Chords between every pair of the box ends and the breakpoints clamped into the box."""
    pts = [lo, hi] + [_clamp(torch.full_like(lo, b), lo, hi) for b in breaks]
    return [
        chord(node, p, q)
        for i, p in enumerate(pts)
        for q in pts[i + 1 :]
        if not (p is lo and q is hi)
    ]


def pl_curve(
    breaks: Callable[[Node], tuple[float, ...]], pieces: Callable[[Node], tuple[float, ...]]
) -> Curve:
    """A piecewise-linear function: extrema of ``f - a x`` only at breakpoints."""

    def critical(node: Node, a: Tensor) -> list[Tensor]:
        return [torch.full_like(a, b) for b in breaks(node)]

    def slopes(node: Node, lo: Tensor, hi: Tensor) -> list[Tensor]:
        out = [chord(node, lo, hi), *_break_chords(node, lo, hi, breaks(node))]
        return out + [torch.full_like(lo, s) for s in pieces(node)]

    return Curve(critical, slopes)


# ---------------------------------------------------------------------------------------------
# Derivatives and inverse derivatives of the smooth curves


def _sig_critical(node: Node, a: Tensor) -> list[Tensor]:
    # s (1 - s) = a with s = 2a / (1 + r), r = sqrt(1 - 4a): x = log(s / (1 - s)), and -x.
    r = torch.sqrt(1 - 4 * a)
    x = torch.log(2 * a / (1 + r - 2 * a))
    return [x, -x, torch.zeros_like(a)]


def _tanh_critical(node: Node, a: Tensor) -> list[Tensor]:
    # 1 - t^2 = a: atanh(t) = log((1 + t) / sqrt(a)) with t = sqrt(1 - a), and its negative.
    x = torch.log((1 + torch.sqrt(1 - a)) / torch.sqrt(a))
    return [x, -x, torch.zeros_like(a)]


_ERF_SCALE = 2 / math.sqrt(math.pi)


def _erf_critical(node: Node, a: Tensor) -> list[Tensor]:
    x = torch.sqrt(-torch.log(a / _ERF_SCALE))
    return [x, -x, torch.zeros_like(a)]


def _d_sigmoid(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _d_tanh(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x) ** 2


def _d_erf(x: Tensor) -> Tensor:
    return _ERF_SCALE * torch.exp(-x * x)


def _exp_like_critical(scale: Callable[[Node], float], breaks: tuple[float, ...] = ()) -> Points:
    """Critical points of ``c exp(x) + linear``: ``log(a / c)``, plus the breakpoints."""

    def critical(node: Node, a: Tensor) -> list[Tensor]:
        return [torch.log(a / scale(node))] + [torch.full_like(a, b) for b in breaks]

    return critical


def _elu_scale(node: Node) -> float:
    return float(node.attrs["alpha"])


def _selu_scale(node: Node) -> float:
    return float(node.attrs["alpha"]) * float(node.attrs["gamma"])


def _d_elu(node: Node, x: Tensor) -> Tensor:
    return torch.where(x < 0, _elu_scale(node) * torch.exp(x), torch.ones_like(x))


def _d_selu(node: Node, x: Tensor) -> Tensor:
    return torch.where(
        x <= 0, _selu_scale(node) * torch.exp(x), torch.full_like(x, float(node.attrs["gamma"]))
    )


def _hswish_critical(node: Node, a: Tensor) -> list[Tensor]:
    # f' = x / 3 + 1/2 on [-3, 3]; 0 below, 1 above.
    return [3 * (a - 0.5), torch.full_like(a, -3.0), torch.full_like(a, 3.0)]


def _d_hswish(node: Node, x: Tensor) -> Tensor:
    return (x / 3 + 0.5).clamp(0, 1)


def _hsig_breaks(node: Node) -> tuple[float, ...]:
    alpha, beta = float(node.attrs["alpha"]), float(node.attrs["beta"])
    return () if alpha == 0 else (-beta / alpha, (1 - beta) / alpha)


def _clip_breaks(node: Node) -> tuple[float, ...]:
    return tuple(float(v) for v in (node.attr("min"), node.attr("max")) if v is not None)


def _const(value: float) -> Callable[[Node], float]:
    return lambda node: value


SIGMOID = Curve(_sig_critical, s_slopes(_d_sigmoid))
TANH = Curve(_tanh_critical, s_slopes(_d_tanh))
ERF = Curve(_erf_critical, s_slopes(_d_erf))
EXP = Curve(_exp_like_critical(_const(1.0)), smooth_slopes(lambda n, x: torch.exp(x)))
SOFTPLUS = Curve(
    lambda n, a: [torch.log(a / (1 - a))], smooth_slopes(lambda n, x: torch.sigmoid(x))
)
LOG = Curve(lambda n, a: [1 / a], smooth_slopes(lambda n, x: 1 / x))
SQRT = Curve(lambda n, a: [0.25 / (a * a)], smooth_slopes(lambda n, x: 0.5 / torch.sqrt(x)))
RECIPROCAL = Curve(
    lambda n, a: [1 / torch.sqrt(-a), -1 / torch.sqrt(-a)],
    smooth_slopes(lambda n, x: -1 / (x * x)),
)
ELU = Curve(_exp_like_critical(_elu_scale, (0.0,)), smooth_slopes(_d_elu, lambda n: (0.0,)))
SELU = Curve(_exp_like_critical(_selu_scale, (0.0,)), smooth_slopes(_d_selu, lambda n: (0.0,)))
HARDSWISH = Curve(_hswish_critical, smooth_slopes(_d_hswish, lambda n: (-3.0, 3.0)))
ABS = pl_curve(lambda n: (0.0,), lambda n: (-1.0, 1.0))
CLIP = pl_curve(_clip_breaks, lambda n: (1.0,))
HARDSIGMOID = pl_curve(_hsig_breaks, lambda n: (float(n.attrs["alpha"]),))


def curve_relaxation(curve: Curve, domain: Domain | None = None) -> Relaxation:
    """The relaxation fitted to a :class:`Curve` (see the module docstring), with free slopes
    too (:attr:`~verifier.ops.relax.Relaxation.free_slopes`: the bias for any slope by
    :func:`line_bias`, the search range from the candidate slopes and 0). With a ``domain``
    (Log, Sqrt, Reciprocal), boxes outside it get interval bounds and keep them: the bound
    methods choose slopes only on boxes inside it (:func:`~verifier.ops.relax.free_boxes`),
    where the curve is evaluated at points of the box alone."""

    def rule(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
        return relax_curve(node, curve, lo, hi)

    def line(node: Node, a: Tensor, lo: Tensor, hi: Tensor, upper: bool) -> Tensor:
        return line_bias(node, curve, a, lo, hi, upper)

    def span(node: Node, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        if curve.span is not None:
            return curve.span(node, lo, hi)
        cands = [torch.nan_to_num(c.to(lo.dtype).expand_as(lo), nan=0.0, posinf=0.0, neginf=0.0)
                 for c in curve.slopes(node, lo, hi)]
        stacked = torch.stack([torch.zeros_like(lo), *cands])
        return stacked.amin(0), stacked.amax(0)

    return Relaxation(rule, domain, line, span)
