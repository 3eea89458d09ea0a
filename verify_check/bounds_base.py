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


def relu_chord(lo: np.ndarray, hi: np.ndarray, leak: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A ReLU's (``leak x`` below 0: LeakyRelu, ``0 <= leak <= 1``) neurons with input bounds
    ``[lo, hi]``: the unstable ones, the default lower slope (CROWN's: ``1`` where ``hi >=
    -lo``, else ``leak``; a stable neuron's exact piece), the upper line's slope ``s`` (``>= (hi -
    leak lo) / (hi - lo)`` for unstable neurons, rounded up: the line ``s x + (s - leak) |lo|``
    lies above the function on ``[lo, hi]``; the exact piece's slope elsewhere) and its
    intercept ``>= (s - leak) |lo|`` (rounded up; 0 for stable neurons)."""
    unstable, piece = (lo < 0) & (hi > 0), np.where(lo >= 0, 1.0, leak)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = up(hi - down(leak * lo)) if leak else hi
        chord = np.where(unstable, up(up(rise / down(hi - lo)) * (1 + 4 * U64)), piece)
        bias = np.where(unstable, up((up(chord - leak) if leak else chord) * -lo), 0.0)
    return unstable, np.where(unstable, np.where(hi >= -lo, 1.0, leak), piece), chord, bias


def windowed(values: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """``values`` ``(..., n)`` gathered into windows ``(..., m, K)`` of positions ``index``
    ``(m, K)`` (``fill`` at padding, ``-1``)."""
    return np.where(index < 0, fill, values[..., np.maximum(index, 0)])


def window_planes(index: np.ndarray, lo: np.ndarray, hi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lines of a maximum over windows ``index`` ``(m, K)`` (input positions, -1: padding)
    of inputs in ``[lo, hi]`` ``(B, n)``: per output ``(B, m)``, the input ``low`` with the
    largest lower bound (``max >= x[low]``), the input ``up`` with the largest upper bound ``u``
    and a line ``s x[up] + b`` above the maximum (``s >= 0``): every other input is at most the
    second largest upper bound ``U2``, so ``max <= max(x[up], U2)``, a convex function of
    ``x[up]`` in ``[l, u]``, below any line that is above it at ``l`` and ``u``: ``s = (u -
    max(l, U2)) / (u - l)`` and ``b`` above both ends (rounded up). Where ``U2 <= l`` the maximum
    is ``x[up]`` (``s = 1``, ``b = 0``, ``low = up``)."""
    lo_w, hi_w = windowed(lo, index, -np.inf), windowed(hi, index, -np.inf)  # (B, m, K)
    order = np.argsort(-hi_w, axis=2, kind="stable")
    pick = np.take_along_axis
    u, low_end = pick(hi_w, order[..., :1], 2)[..., 0], pick(lo_w, order[..., :1], 2)[..., 0]
    second = pick(hi_w, order[..., 1:2], 2)[..., 0] if index.shape[1] > 1 else np.full_like(u, -np.inf)
    decided, start = second <= low_end, np.maximum(low_end, second)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(decided, 1.0, (u - start) / (u - low_end))
    slack = gamma(4) * (np.abs(start) + np.abs(u) + s * magnitude(low_end, u))
    ends = np.maximum(start - s * low_end, u - s * u) + slack
    b = np.where(decided, 0.0, up(ends))
    positions = np.broadcast_to(index[None], lo_w.shape)
    top = pick(positions, order[..., :1], 2)[..., 0]
    return np.where(decided, top, pick(positions, lo_w.argmax(axis=2)[..., None], 2)[..., 0]), top, s, b


def magnitude(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``max(|lo|, |hi|)`` elementwise."""
    return np.maximum(np.abs(lo), np.abs(hi))
