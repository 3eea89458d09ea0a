"""ONNX ``Softsign``: ``x / (1 + |x|)``.

Non-decreasing, so the interval rule evaluates the box ends (:class:`SmoothUnary`), whose
float-error bound (a library-approximation bound, wider than the two roundings of a division
and an addition) covers onnxruntime. S-shaped: convex below 0, concave above, so its linear
relaxation uses the S-curve slopes; ``f'(x) = 1 / (1 + |x|)^2`` equals ``a`` at
``x = +-(1 / sqrt(a) - 1)``, the only interior points where ``f(x) - a x`` can peak (0 is added,
where ``f''`` changes sign).

At an infinite input the float evaluation is ``inf / inf``, NaN (onnxruntime too), and a later
op may turn a NaN into an ordinary number; so a box with an infinite end gets infinite bounds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.activation import SmoothUnary
from verifier.ops.base import Args, Flags, Pair, register
from verifier.ops.curves import Curve, curve_relaxation, s_slopes


def _critical(node: Node, a: Tensor) -> list[Tensor]:
    x = 1 / torch.sqrt(a) - 1
    return [x, -x, torch.zeros_like(a)]


def _derivative(x: Tensor) -> Tensor:
    return 1 / (1 + x.abs()) ** 2


SOFTSIGN = Curve(_critical, s_slopes(_derivative))
"""The relaxation data of Softsign."""


@register("Softsign")
class Softsign(SmoothUnary):
    """``x / (1 + |x|)``."""

    relaxation = curve_relaxation(SOFTSIGN)

    def fn(self, node: Node, x: Tensor) -> Tensor:
        return x / (1 + x.abs())

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        (lo,), (hi,) = super().interval(node, lower, upper, batched)
        x_lo, x_hi = lower[0], upper[0]
        assert x_lo is not None and x_hi is not None
        unbounded = x_lo.isinf() | x_hi.isinf()
        return (lo.masked_fill(unbounded, -torch.inf),), (hi.masked_fill(unbounded, torch.inf),)
