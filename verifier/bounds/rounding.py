"""Unit roundoffs and outward rounding between precisions."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from verifier.ops.base import unit_roundoff as torch_unit_roundoff


def unit_roundoff(dtype: torch.dtype | np.dtype) -> float:
    """Unit roundoff ``u`` of a floating-point type (half the machine epsilon)."""
    if isinstance(dtype, torch.dtype):
        return torch_unit_roundoff(dtype)
    return float(np.finfo(dtype).eps) / 2


class _NextFloat(torch.autograd.Function):
    """``torch.nextafter(x, ±inf)`` whose gradient passes through unchanged (a float step is a
    rounding, not a function of ``x`` to differentiate). torch 2.11 (seen on a GPU machine) has no
    derivative for ``nextafter``; 2.13 has one; the alpha/beta optimisers differentiate through
    outward rounding."""

    @staticmethod
    def forward(ctx: object, x: Tensor, up: bool) -> Tensor:
        return torch.nextafter(x, torch.full_like(x, torch.inf if up else -torch.inf))

    @staticmethod
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def next_down(x: Tensor) -> Tensor:
    """The next float below each element (``-inf`` stays, NaN stays NaN); gradient 1."""
    return _NextFloat.apply(x, False)


def next_up(x: Tensor) -> Tensor:
    """The next float above each element (``inf`` stays, NaN stays NaN); gradient 1."""
    return _NextFloat.apply(x, True)


def outward(lower: Tensor, upper: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Converts bounds to ``dtype`` rounding ``lower`` down and ``upper`` up."""
    lo, hi = lower.to(dtype), upper.to(dtype)
    if torch.finfo(dtype).bits >= torch.finfo(lower.dtype).bits:
        return lo, hi
    lo = torch.where(lo.to(lower.dtype) > lower, next_down(lo), lo)
    hi = torch.where(hi.to(upper.dtype) < upper, next_up(hi), hi)
    return lo, hi
