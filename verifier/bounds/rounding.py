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


def outward(lower: Tensor, upper: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Converts bounds to ``dtype`` rounding ``lower`` down and ``upper`` up."""
    lo, hi = lower.to(dtype), upper.to(dtype)
    if torch.finfo(dtype).bits >= torch.finfo(lower.dtype).bits:
        return lo, hi
    lo = torch.where(lo.to(lower.dtype) > lower, torch.nextafter(lo, torch.full_like(lo, -torch.inf)), lo)
    hi = torch.where(hi.to(upper.dtype) < upper, torch.nextafter(hi, torch.full_like(hi, torch.inf)), hi)
    return lo, hi
