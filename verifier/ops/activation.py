"""Elementwise activations and unary math functions: forward, interval rule and float error.

Interval rules, all exact up to the rounding that :meth:`fp_error` covers:

- non-decreasing functions (Relu, Sigmoid, Tanh, Exp, Erf, Floor...) are evaluated at the box
  ends (Neg and Reciprocal live in :mod:`verifier.ops.arith`);
- functions monotone between known breakpoints (Abs, LeakyRelu, PRelu, Elu, Selu, HardSigmoid,
  HardSwish, Gelu) live in :mod:`verifier.ops.piecewise`, built on :class:`Unary`, :func:`hull`
  and :func:`finite` from here;
- Sin and Cos detect whether the box contains a point where the function peaks or bottoms out;
- Sqrt and Log are non-decreasing on their domain ``x >= 0``.

Functions with a restricted domain (Sqrt, Log): a box that reaches outside the real domain gets
infinite bounds, since onnxruntime returns NaN there and a later op (Max, Relu, Clip, Where)
may turn a NaN into an ordinary number that finite bounds would not cover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops import max_form as forms
from verifier.ops.base import (
    Args,
    ElementwiseUnary,
    Flags,
    Op,
    Pair,
    magnitude,
    register,
)
from verifier.ops.boxed_curves import COS, NARROW, SIN
from verifier.ops.curves import (
    CLIP,
    ERF,
    EXP,
    LOG,
    SIGMOID,
    SOFTPLUS,
    SQRT,
    TANH,
    curve_relaxation,
)
from verifier.ops.max_form import MaxForm
from verifier.ops.relax import INTERVAL_ONLY, NONNEGATIVE, RELU_FAMILY

FLOAT32_UNIT = 2.0**-24
TRANSCENDENTAL_REL = 2.0**-16
TRANSCENDENTAL_ABS = 2.0**-22


def transcendental_error(lower: Tensor, upper: Tensor, unit: float) -> Tensor:
    """Generous bound on a library's error for a transcendental function with outputs in a box.

    ``(2**-16 |y| + 2**-22) * unit / 2**-24``: about 256 float32 ulps relative plus an
    absolute floor, which covers onnxruntime's vectorised float32 approximations (MLAS, Eigen);
    for float64 (``unit = 2**-53``) the bound shrinks proportionally.
    """
    scale = unit / FLOAT32_UNIT
    return scale * (TRANSCENDENTAL_REL * magnitude(lower, upper) + TRANSCENDENTAL_ABS)


def unary_input(args: Args, batched: Flags) -> Tensor:
    """The single input of a unary op, with a batch dimension added to a constant input."""
    x = args[0]
    if x is None:
        raise ValueError("unary op called without its input")
    return x if batched[0] else x.unsqueeze(0)


def hull(candidates: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Elementwise min and max over broadcast candidate values; NaN candidates widen to ±inf.

    A NaN candidate arises from ``inf - inf`` or ``inf / inf`` at an unbounded box corner, whose
    true limit is unknown here, so it is treated as possibly any value.
    """
    stacked = torch.stack(torch.broadcast_tensors(*candidates))
    nan = torch.isnan(stacked)
    inf = torch.full_like(stacked, math.inf)
    lo = torch.where(nan, -inf, stacked).amin(0)
    hi = torch.where(nan, inf, stacked).amax(0)
    return lo, hi


def finite(bound: Tensor | None) -> Tensor:
    """A bound with infinities replaced by the largest finite values of its dtype.

    Inputs are finite numbers, so clipping a box to the finite range loses no input; it lets
    ``f(-inf)`` be evaluated as the limit over finite inputs (``-inf * 0`` would be NaN).
    """
    assert bound is not None
    top = torch.finfo(bound.dtype).max
    return bound.clamp(-top, top)


class Unary(ElementwiseUnary):
    """A non-decreasing elementwise function; bounds are the function at the box ends."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (self.fn(node, unary_input(args, batched)),)


class SmoothUnary(Unary):
    """A non-decreasing function computed by a library approximation (exp, tanh, erf...)."""

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (transcendental_error(out[0][0], out[1][0], unit),)


class DomainUnary(SmoothUnary):
    """A non-decreasing function defined for inputs ``>= 0`` (Sqrt, Log).

    Where the box reaches below 0 the bounds are infinite (see the module docstring).
    """

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        (out_lo,), (out_hi,) = (self.forward(node, [lo.clamp(min=0)], batched),
                                self.forward(node, [hi.clamp(min=0)], batched))
        outside = lo < 0
        return (out_lo.masked_fill(outside, -torch.inf),), (out_hi.masked_fill(outside, torch.inf),)


@register("Relu")
class Relu(Unary):
    """``max(x, 0)``; exact in floating point."""

    proof_checked = True

    relaxation = RELU_FAMILY

    exact = True
    kink_at_zero = True

    def lower_slope_range(self, node: Node) -> tuple[float, float] | None:
        return 0.0, 1.0

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.RELU

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.relu(x)


class _StraightThrough(torch.autograd.Function):
    """``values`` forward; the incoming gradient unchanged backward (to ``x``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, values: Tensor) -> Tensor:
        return values.view_as(values)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class StepUnary(Unary):
    """A non-decreasing function that is constant almost everywhere (its gradient is zero, so
    gradient attacks cannot move through it): exact, cut at interval bounds, and for attacks a
    straight-through gradient (the identity's: the direction in which the steps lie)."""

    relaxation = INTERVAL_ONLY
    exact = True

    def forward_for_gradients(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = unary_input(args, batched)
        values = self.fn(node, x)
        return (_StraightThrough.apply(x, values.detach()),) if x.requires_grad else (values,)


@register("Sign")
class Sign(StepUnary):
    """-1, 0 or 1; exact (and so encoded by the exact engines)."""

    def step_levels(self, node: Node) -> tuple[float, float, float] | None:
        return -1.0, 0.0, 1.0

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.sign(x)


@register("Floor")
class Floor(StepUnary):
    """Rounds down; exact."""

    def integer_offsets(self, node: Node) -> tuple[float, float] | None:
        return 0.0, 1.0

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.floor(x)


@register("Ceil")
class Ceil(StepUnary):
    """Rounds up; exact."""

    def integer_offsets(self, node: Node) -> tuple[float, float] | None:
        return -1.0, 0.0

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.ceil(x)


@register("Round")
class Round(StepUnary):
    """Rounds half to even (as ONNX and ``torch.round`` do); exact."""

    def integer_offsets(self, node: Node) -> tuple[float, float] | None:
        return -0.5, 0.5

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.round(x)


@register("Clip")
class Clip(Unary):
    """``min(max(x, min), max)``; ``min``/``max`` are attributes (opset < 11) or static inputs.

    When ``min > max`` every output is ``max``, as ONNX specifies and ``torch.clamp`` does.
    """

    relaxation = curve_relaxation(CLIP)

    exact = True
    static_inputs: ClassVar[dict[int, str]] = {1: "min", 2: "max"}

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.clip(node.attr("min"), node.attr("max"))

    def fn(self, node: Node, x: Tensor) -> Tensor:
        low, high = node.attr("min"), node.attr("max")
        if not x.is_floating_point():
            low = None if low is None else int(low)
            high = None if high is None else int(high)
        if low is None and high is None:
            return x
        return torch.clamp(x, min=low, max=high)


@register("Sigmoid")
class Sigmoid(SmoothUnary):
    """The logistic function."""

    relaxation = curve_relaxation(SIGMOID)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.sigmoid(x)


@register("Tanh")
class Tanh(SmoothUnary):
    """Hyperbolic tangent."""

    relaxation = curve_relaxation(TANH)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.tanh(x)


@register("Exp")
class Exp(SmoothUnary):
    """Exponential."""

    relaxation = curve_relaxation(EXP)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.exp(x)


@register("Erf")
class Erf(SmoothUnary):
    """The error function."""

    relaxation = curve_relaxation(ERF)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.erf(x)


@register("Softplus")
class Softplus(SmoothUnary):
    """``log(exp(x) + 1)``, computed without torch's linear cut-off."""

    relaxation = curve_relaxation(SOFTPLUS)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.logaddexp(x, torch.zeros_like(x))


@register("Sqrt")
class Sqrt(DomainUnary):
    """Square root (NaN below 0; see the module docstring)."""

    relaxation = curve_relaxation(SQRT, NONNEGATIVE)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.sqrt(x)


@register("Log")
class Log(DomainUnary):
    """Natural logarithm; ``log 0 = -inf`` (NaN below 0; see the module docstring)."""

    relaxation = curve_relaxation(LOG, NONNEGATIVE)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return torch.log(x)


def _hits(lo: Tensor, hi: Tensor, phase: float) -> Tensor:
    """True where ``[lo, hi]``, slightly widened, contains ``phase + 2πk`` for an integer k.

    The widening (relative 1e-9) absorbs the rounding of the division below, so a true hit is
    never missed; a spurious hit only loosens the bound.
    """
    period = 2 * math.pi
    tol = 1e-9 * (1 + magnitude(lo, hi))
    k = torch.ceil((lo - tol - phase) / period)
    return phase + k * period <= hi + tol


class Periodic(Op):
    """Sin or Cos: ends of the box, replaced by ±1 where the box contains a peak or trough."""

    peak: ClassVar[float] = 0.0
    trough: ClassVar[float] = math.pi

    def fn(self, x: Tensor) -> Tensor:
        """The function."""
        raise NotImplementedError

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (self.fn(unary_input(args, batched)),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        out_lo, out_hi = hull([self.fn(lo), self.fn(hi)])
        one = torch.ones_like(out_lo)
        out_hi = torch.where(_hits(lo, hi, self.peak), one, out_hi)
        out_lo = torch.where(_hits(lo, hi, self.trough), -one, out_lo)
        return (out_lo,), (out_hi,)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        # The extra unit * |x| covers a sloppy argument reduction for large |x|.
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        return (transcendental_error(out[0][0], out[1][0], unit) + unit * magnitude(lo, hi),)


@register("Sin")
class Sin(Periodic):
    """Sine: peaks at π/2 + 2πk, troughs at -π/2 + 2πk."""

    relaxation = curve_relaxation(SIN, NARROW)

    peak = math.pi / 2
    trough = -math.pi / 2

    def fn(self, x: Tensor) -> Tensor:
        return torch.sin(x)


@register("Cos")
class Cos(Periodic):
    """Cosine: peaks at 2πk, troughs at π + 2πk."""

    relaxation = curve_relaxation(COS, NARROW)

    peak = 0.0
    trough = math.pi

    def fn(self, x: Tensor) -> Tensor:
        return torch.cos(x)
