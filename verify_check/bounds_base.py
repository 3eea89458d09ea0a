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


def relu_chord(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ReLU's neurons with input bounds ``[lo, hi]``: the unstable ones, the active ones, the
    upper line's slope ``s`` (``>= hi / (hi - lo)`` for unstable neurons, rounded up: the line
    ``s (x - lo)`` lies above the ReLU on ``[lo, hi]``; the exact piece's slope elsewhere) and
    its intercept ``>= -s lo`` (rounded up; 0 for stable neurons)."""
    unstable, active = (lo < 0) & (hi > 0), lo >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        chord = np.where(unstable, up(up(hi / down(hi - lo)) * (1 + 4 * U64)), active * 1.0)
    return unstable, active, chord, np.where(unstable, up(-chord * lo), 0.0)


def magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(|lo|, |hi|)`` elementwise."""
    return np.maximum(np.abs(lo), np.abs(hi))
