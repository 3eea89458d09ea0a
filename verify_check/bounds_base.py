"""Shared numbers and directed-rounding helpers of the checker's bound code."""

from __future__ import annotations

import numpy as np

U32 = 2.0**-24
U64 = 2.0**-53
ETA = 2.0**-149


def gamma(n: float, u: float = U64) -> float:
    """``n u / (1 - n u)`` (a bound on the relative error of an ``n``-term sum)."""
    return n * u / (1 - n * u)


def down(x: np.ndarray) -> np.ndarray:
    """The next float64 below each element."""
    return np.nextafter(x, -np.inf)


def up(x: np.ndarray) -> np.ndarray:
    """The next float64 above each element."""
    return np.nextafter(x, np.inf)


def magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(|lo|, |hi|)`` elementwise."""
    return np.maximum(np.abs(lo), np.abs(hi))
