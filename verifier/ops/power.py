"""Powers with a constant exponent: the range rule of ONNX Pow, and our own op ``Power``.

``Pow(x, c)`` with a constant exponent whose elements are all equal becomes ``Power(x)`` with
the attribute ``exponent`` (:func:`verifier.graph.simplify.pow_to_power`), a unary elementwise
op with a linear relaxation whose slopes bound methods may choose (:mod:`verifier.ops.curves`):
``f(x) = x ** p`` is smooth where defined and ``f(x) - a x`` has its interior extrema where
``p x ** (p - 1) = a``, i.e. at ``x = ±|a / p| ** (1 / (p - 1))`` (both signs always listed;
extra points are harmless). Where it is defined:

- integer ``p >= 0``: everywhere (``x ** 0 = 1``, also at 0 as in onnxruntime);
- integer ``p < 0``: on boxes of one sign (it is unbounded at 0);
- fractional ``p``: on boxes inside ``x >= 0`` (``x > 0`` when ``p < 0``); onnxruntime returns
  NaN below 0.

Boxes outside get the interval bounds of :func:`pow_range` (infinite where a NaN or a pole is
possible, since a later op may turn a NaN into a number).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.activation import hull, transcendental_error
from verifier.ops.base import Args, Flags, Op, Pair, register
from verifier.ops.curves import Curve, curve_relaxation, relax_curve, smooth_slopes
from verifier.ops.relax import LinearBounds


def pow_range(lo: Tensor, hi: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
    """Range of ``x ** p`` for ``x`` in ``[lo, hi]`` and a constant exponent ``p`` per element.

    Integer ``p``: odd powers are monotone, even positive powers bottom out at 0, negative
    powers are unbounded when the box touches 0. Fractional ``p``: monotone on ``x >= 0``;
    a box reaching below 0 (NaN in onnxruntime, which a later op may turn into a number) gets
    infinite bounds.
    """
    integer = p == torch.round(p)
    even = integer & (torch.remainder(p, 2) == 0)
    lo_d = torch.where(integer, lo, lo.clamp(min=0))
    hi_d = torch.where(integer, hi, hi.clamp(min=0))
    out_lo, out_hi = hull([torch.pow(lo_d, p), torch.pow(hi_d, p)])
    inf = torch.full_like(out_lo, math.inf)
    straddles = (lo < 0) & (hi > 0)
    touches = (lo <= 0) & (hi >= 0)
    out_lo = torch.where(even & (p > 0) & straddles, torch.zeros_like(out_lo), out_lo)
    out_hi = torch.where(integer & (p < 0) & touches, inf, out_hi)
    out_lo = torch.where(integer & ~even & (p < 0) & touches, -inf, out_lo)
    outside = ~integer & (lo < 0)
    return torch.where(outside, -inf, out_lo), torch.where(outside, inf, out_hi)


def exponent(node: Node) -> float:
    """The exponent of a Power node."""
    return float(node.attrs["exponent"])


def _critical(node: Node, a: Tensor) -> list[Tensor]:
    """``±|a / p| ** (1 / (p - 1))``: the roots of ``f'(x) = a`` (for either sign of ``x``)."""
    p = exponent(node)
    if p in (0.0, 1.0):
        return []  # f is affine: the extrema of f - a x are at the box ends
    root = (a / p).abs() ** (1.0 / (p - 1.0))
    return [root, -root]


def _derivative(node: Node, x: Tensor) -> Tensor:
    p = exponent(node)
    return torch.zeros_like(x) if p == 0.0 else p * torch.pow(x, p - 1.0)


def _domain(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    """Where ``x ** p`` is finite and smooth on the whole box (see the module docstring)."""
    p = exponent(node)
    if p == round(p):
        return torch.ones_like(lo, dtype=torch.bool) if p >= 0 else (lo > 0) | (hi < 0)
    return lo >= 0 if p > 0 else lo > 0


POWER_CURVE = Curve(_critical, smooth_slopes(_derivative, lambda node: (0.0,)))


def _rule(node: Node, lo: Tensor, hi: Tensor, mode: str, constants: Args) -> LinearBounds:
    """The curve's lines, except that an even power's lower line is its tangent at the box's
    lowest point (``x = 0`` clamped into the box): that line alone concretises to the interval
    bound ``min f``, while the tangent at the midpoint (the curve fitter's choice) reaches below
    it, which made a LayerNorm's variance, and the denominator after it, looser than intervals
    (``benchmarks/results/normalised.md``). Free slopes still let alpha-CROWN choose any line."""
    p = exponent(node)
    if p > 0 and p == round(p) and p % 2 == 0:
        lowest = torch.minimum(torch.maximum(torch.zeros_like(lo), lo), hi)
        return relax_curve(node, POWER_CURVE, lo, hi, lower_slopes=[_derivative(node, lowest)])
    return relax_curve(node, POWER_CURVE, lo, hi)


@register("Power")
class Power(Op):
    """``x ** exponent`` elementwise (our own op, see the module docstring); the error bound is
    that of a library's transcendental function, as for ONNX Pow."""

    internal = True
    relaxation = replace(curve_relaxation(POWER_CURVE, _domain), rule=_rule)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = args[0]
        assert x is not None
        return (torch.pow(x, exponent(node)).to(x.dtype),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        out_lo, out_hi = pow_range(lo, hi, torch.full_like(lo, exponent(node)))
        return (out_lo,), (out_hi,)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (transcendental_error(out[0][0], out[1][0], unit),)
