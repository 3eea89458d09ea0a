"""Activations monotone (either way) between known breakpoints: forward, interval rule and
float error of Abs, LeakyRelu, PRelu, Elu, Selu, HardSigmoid, HardSwish and Gelu.

Interval rule, exact up to the rounding that :meth:`fp_error` covers: the function at the box
ends and at the breakpoints clamped into the box; a smooth extremum known only numerically
(Gelu's minimum) contributes a precomputed value just beyond the true extreme value whenever
the box comes near the extremum point. The non-decreasing activations (Relu, Sigmoid...) and
the shared helpers live in :mod:`verifier.ops.activation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops import max_form as forms
from verifier.ops.activation import (
    FLOAT32_UNIT,
    TRANSCENDENTAL_ABS,
    TRANSCENDENTAL_REL,
    Unary,
    finite,
    hull,
    transcendental_error,
    unary_input,
)
from verifier.ops.base import Args, Flags, Pair, align, gamma, magnitude, register
from verifier.ops.boxed_curves import GELU
from verifier.ops.curves import ABS, ELU, HARDSIGMOID, HARDSWISH, SELU, curve_relaxation
from verifier.ops.max_form import MaxForm
from verifier.ops.relax import LEAKY_RELU_FAMILY, PRELU_FAMILY


class Piecewise(Unary):
    """A function monotone (either way) between the points of :meth:`breakpoints`.

    The range over ``[l, u]`` is spanned by ``f(l)``, ``f(u)`` and ``f(clamp(b, l, u))`` for
    each breakpoint ``b``. :meth:`extrema` lists smooth extrema known only numerically as
    ``(point, value)`` with ``value`` just beyond the true extreme value; a box within ``1e-9``
    of the point includes that value. Extra inputs (PRelu's slope) must be constant.
    """

    def breakpoints(self, node: Node) -> tuple[float, ...]:
        """Points between which the function is monotone."""
        return (0.0,)

    def extrema(self, node: Node) -> tuple[tuple[float, float], ...]:
        """``(point, bound on the extreme value)`` for extrema that are not breakpoints."""
        return ()

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        if any(batched[1:]):
            raise ModelError(
                f"node {node.name}: {node.op} needs constant parameters (slope), got a dynamic one"
            )
        lo, hi = finite(lower[0]), finite(upper[0])
        points = [lo, hi] + [lo.clamp(min=b).minimum(hi) for b in self.breakpoints(node)]
        values = [self.forward(node, [p, *lower[1:]], batched)[0] for p in points]
        out_lo, out_hi = hull(values)
        for point, value in self.extrema(node):
            near = (lo <= point + 1e-9) & (hi >= point - 1e-9)
            out_lo = torch.where(near, out_lo.clamp(max=value), out_lo)
            out_hi = torch.where(near, out_hi.clamp(min=value), out_hi)
        return (out_lo,), (out_hi,)


@register("Abs")
class Abs(Piecewise):
    """``|x|``; exact."""

    relaxation = curve_relaxation(ABS)

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.ABS

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.abs(x)


@register("LeakyRelu")
class LeakyRelu(Piecewise):
    """``x`` for ``x >= 0``, ``alpha x`` below; any sign of alpha."""

    proof_checked = True

    relaxation = LEAKY_RELU_FAMILY

    kink_at_zero = True

    def lower_slope_range(self, node: Node) -> tuple[float, float] | None:
        """``[alpha, 1]`` for ``0 <= alpha <= 1`` (convex); None otherwise."""
        leak = float(node.attr("alpha", 0.01))
        return (leak, 1.0) if 0.0 <= leak <= 1.0 else None

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.leaky(float(node.attr("alpha", 0.01)))

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.where(x < 0, x * node.attrs["alpha"], x)


@register("PRelu")
class PRelu(Piecewise):
    """``x`` for ``x >= 0``, ``slope x`` below; the slope broadcasts to x and must be constant."""

    relaxation = PRELU_FAMILY

    kink_at_zero = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        slope = constants[1] if len(constants) > 1 else None
        return None if slope is None else forms.leaky(slope)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x, slope = args[0], args[1]
        assert x is not None and slope is not None
        x = unary_input(args, batched)
        if slope.is_floating_point():
            slope = slope.to(x.dtype)
        x_b, slope_b = align([x, slope], [True, batched[1]])
        out = torch.where(x_b < 0, x_b * slope_b, x_b)
        return (out.expand(x_b.shape).reshape(x.shape),)


@register("Elu")
class Elu(Piecewise):
    """``x`` for ``x >= 0``, ``alpha (exp(x) - 1)`` below."""

    relaxation = curve_relaxation(ELU)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.where(x < 0, torch.expm1(x) * node.attrs["alpha"], x)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        # exp(x) - 1 cancels near 0: the absolute error of exp (<= 1 there) times |alpha|.
        scale = unit / FLOAT32_UNIT
        extra = scale * (TRANSCENDENTAL_REL + TRANSCENDENTAL_ABS) * abs(node.attrs["alpha"])
        return (transcendental_error(out[0][0], out[1][0], unit) + extra,)


@register("Selu")
class Selu(Piecewise):
    """``gamma x`` for ``x > 0``, ``gamma alpha (exp(x) - 1)`` for ``x <= 0``."""

    relaxation = curve_relaxation(SELU)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        g, a = node.attrs["gamma"], node.attrs["alpha"]
        return torch.where(x <= 0, torch.expm1(x) * (a * g), x * g)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        scale = unit / FLOAT32_UNIT
        coeff = abs(node.attrs["alpha"] * node.attrs["gamma"])
        extra = scale * (TRANSCENDENTAL_REL + TRANSCENDENTAL_ABS) * coeff
        return (transcendental_error(out[0][0], out[1][0], unit) + extra,)


@register("HardSigmoid")
class HardSigmoid(Piecewise):
    """``max(0, min(1, alpha x + beta))``: monotone for either sign of alpha."""

    relaxation = curve_relaxation(HARDSIGMOID)

    def breakpoints(self, node: Node) -> tuple[float, ...]:
        return ()

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return (x * node.attrs["alpha"] + node.attrs["beta"]).clamp(0, 1)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        pre = abs(node.attrs["alpha"]) * magnitude(lo, hi) + abs(node.attrs["beta"])
        return (gamma(2, unit) * pre,)


@register("HardSwish")
class HardSwish(Piecewise):
    """``x max(0, min(1, x / 6 + 1 / 2))``: constant, then a parabola with minimum
    ``-0.375`` at ``-1.5``, then the identity."""

    relaxation = curve_relaxation(HARDSWISH)

    def breakpoints(self, node: Node) -> tuple[float, ...]:
        return (-3.0, 3.0)

    def extrema(self, node: Node) -> tuple[tuple[float, float], ...]:
        return ((-1.5, -0.375),)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return x * (x / 6 + 0.5).clamp(0, 1)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        m = magnitude(lo, hi)
        return (gamma(4, unit) * m * (m / 6 + 0.5),)


# Minimum point of x Φ(x) and of its tanh approximation, and values slightly below the true
# minimum values (-0.16997120747990366 and -0.17004075057125405, computed with mpmath).
_GELU_MINIMUM = {
    "none": (-0.7517915246935645, -0.169971207480),
    "tanh": (-0.7524614220710163, -0.170040750572),
}


@register("Gelu")
class Gelu(Piecewise):
    """``x Φ(x)`` (``approximate="none"``) or its tanh approximation (``"tanh"``).

    Decreasing then increasing around a single minimum (checked with mpmath on [-60, 60] and
    analytically in the tails). Lines with free slopes from its curve
    (:data:`verifier.ops.boxed_curves.GELU`).
    """

    relaxation = curve_relaxation(GELU)

    def _mode(self, node: Node) -> str:
        mode = node.attr("approximate", "none")
        if mode not in _GELU_MINIMUM:
            raise ModelError(
                f"node {node.name}: Gelu approximate={mode!r} is not supported (none, tanh)"
            )
        return str(mode)

    def breakpoints(self, node: Node) -> tuple[float, ...]:
        return ()

    def extrema(self, node: Node) -> tuple[tuple[float, float], ...]:
        return (_GELU_MINIMUM[self._mode(node)],)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.nn.functional.gelu(x, approximate=self._mode(node))

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        # 0.5 x (1 + erf(x / sqrt 2)) cancels for x << 0: the erf error times |x| / 2.
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        scale = unit / FLOAT32_UNIT
        extra = scale * (TRANSCENDENTAL_REL + TRANSCENDENTAL_ABS) * 0.5 * magnitude(lo, hi)
        return (
            transcendental_error(out[0][0], out[1][0], unit) + extra + 4 * unit * magnitude(lo, hi),
        )
