"""Unit roundoffs and outward rounding between precisions."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_UNITS = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def unit_roundoff(dtype: torch.dtype | np.dtype) -> float:
    """Unit roundoff ``u`` of a floating-point type (half the machine epsilon)."""
    if isinstance(dtype, torch.dtype):
        return _UNITS[dtype]
    return float(np.finfo(dtype).eps) / 2


def outward(lower: Tensor, upper: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Converts bounds to ``dtype`` rounding ``lower`` down and ``upper`` up."""
    lo, hi = lower.to(dtype), upper.to(dtype)
    if torch.finfo(dtype).bits >= torch.finfo(lower.dtype).bits:
        return lo, hi
    lo = torch.where(lo.to(lower.dtype) > lower, torch.nextafter(lo, torch.full_like(lo, -torch.inf)), lo)
    hi = torch.where(hi.to(upper.dtype) < upper, torch.nextafter(hi, torch.full_like(hi, torch.inf)), hi)
    return lo, hi
