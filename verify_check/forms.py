"""Forward linear forms: every value between two linear functions of the input, layer by layer.

For a box of inputs ``x`` (the float32 inputs the model receives), each value ``v`` keeps
``A_l·x + b_l <= v <= A_u·x + b_u`` (coefficients ``(B, n, m)``, biases ``(B, m)``): exact for
the input, through an affine layer by the signs of its constants (the float32 error bound of
the layer subtracted from the lower bias and added to the upper one), through a ReLU with
input bounds ``[l, u]`` by its lines (the lower line ``a z`` with ``0 <= a <= 1`` applied to
the lower form, the chord ``s (z - l)``, ``s >= u / (u - l)``, to the upper form: both keep
their sides because ``a, s >= 0``). The float64 rounding of each new form is bounded by
``gamma`` times the magnitudes it combines (with ``|x_j|`` at most the box's ``max``) and moved
into the biases. Concretised over the box, the forms give bounds of every value; on
low-dimensional inputs they are tighter than intervals at stable neurons, which CROWN's
refinement leaves alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verify_check.bounds_base import U64, down, gamma, magnitude, relu_chord, up, window_planes, windowed
from verify_check.model import Kind, Layer

MAX_INPUTS = 64
"""Forms are kept only for inputs this small (their size grows with the input's)."""


@dataclass
class Form:
    """``lower·x + lower_bias <= v <= upper·x + upper_bias`` over the box."""

    lower: np.ndarray
    lower_bias: np.ndarray
    upper: np.ndarray
    upper_bias: np.ndarray


def input_form(lo: np.ndarray) -> Form:
    """The input's exact form."""
    batch, n = lo.shape
    eye = np.broadcast_to(np.eye(n)[None], (batch, n, n)).copy()
    return Form(eye, np.zeros((batch, n)), eye.copy(), np.zeros((batch, n)))


def _widened(form: Form, slack: np.ndarray) -> Form:
    return Form(form.lower, down(form.lower_bias - slack), form.upper, up(form.upper_bias + slack))


def _dense(form: Form, layer: Layer, mx: np.ndarray) -> Form:
    wp, wn, absolute, _ = (part.T for part in layer.signed)
    b = layer.const
    lower = form.lower @ wp + form.upper @ wn
    upper = form.upper @ wp + form.lower @ wn
    low_b = form.lower_bias @ wp + form.upper_bias @ wn
    up_b = form.upper_bias @ wp + form.lower_bias @ wn
    size = np.einsum("bn,bnm->bm", mx, np.abs(form.lower) + np.abs(form.upper))
    size = (size + np.abs(form.lower_bias) + np.abs(form.upper_bias)) @ absolute
    if b is not None:
        low_b, up_b, size = low_b + b, up_b + b, size + np.abs(b)
    return _widened(Form(lower, low_b, upper, up_b), gamma(wp.shape[0] + 4) * size)


def _scaled(form: Form, c: np.ndarray, mx: np.ndarray) -> Form:
    """The forms of ``c * v`` (``c`` per element, any sign)."""
    pos = c >= 0
    lower = np.where(pos, form.lower * c, form.upper * c)
    upper = np.where(pos, form.upper * c, form.lower * c)
    low_b = np.where(pos, form.lower_bias * c, form.upper_bias * c)
    up_b = np.where(pos, form.upper_bias * c, form.lower_bias * c)
    size = np.einsum("bn,bnm->bm", mx, np.abs(lower) + np.abs(upper)) + np.abs(low_b) + np.abs(up_b)
    return _widened(Form(lower, low_b, upper, up_b), 2 * U64 * size)


def _relu(form: Form, lo: np.ndarray, hi: np.ndarray, slope: np.ndarray | None, leak: float, mx: np.ndarray
          ) -> Form:
    unstable, low_slope, chord, bias = relu_chord(lo, hi, leak)
    if slope is not None:
        low_slope = np.where(unstable, np.clip(slope, leak, 1.0), low_slope)
    lower, low_b = form.lower * low_slope[:, None], form.lower_bias * low_slope
    upper = form.upper * chord[:, None]
    up_b = form.upper_bias * chord + bias
    size = np.einsum("bn,bnm->bm", mx, np.abs(lower) + np.abs(upper)) + np.abs(low_b) + np.abs(up_b)
    return _widened(Form(lower, low_b, upper, up_b), 4 * U64 * size)


def _max(form: Form, index: np.ndarray, lo: np.ndarray, hi: np.ndarray, mx: np.ndarray) -> Form:
    """The forms of a max layer: ``x[low]``'s lower form, ``s`` times ``x[up]``'s upper one
    plus ``b`` (:func:`~verify_check.bounds_base.window_planes`)."""
    low, top, s, b = window_planes(index, lo, hi)
    lower, low_b = np.take_along_axis(form.lower, low[:, None], 2), np.take_along_axis(form.lower_bias, low, 1)
    upper = np.take_along_axis(form.upper, top[:, None], 2) * s[:, None]
    up_b = np.take_along_axis(form.upper_bias, top, 1) * s + b
    size = np.einsum("bn,bnm->bm", mx, np.abs(lower) + np.abs(upper)) + np.abs(low_b) + np.abs(up_b)
    return _widened(Form(lower, low_b, upper, up_b), 4 * U64 * size)


def _window_sum(form: Form, index: np.ndarray, mx: np.ndarray) -> Form:
    """The forms of window sums: the sums of the windows' forms."""
    def gathered(part: np.ndarray) -> np.ndarray:  # (..., n) -> (..., m): the sum over each window
        return windowed(part, index, 0.0).sum(axis=-1)

    out = Form(gathered(form.lower), gathered(form.lower_bias), gathered(form.upper), gathered(form.upper_bias))
    terms = np.einsum("bn,bnm->bm", mx, np.abs(form.lower) + np.abs(form.upper)) + np.abs(form.lower_bias) \
        + np.abs(form.upper_bias)  # each input's terms' magnitude: the sums round at most gamma(K) of theirs
    return _widened(out, gamma(index.shape[1] + 2) * gathered(terms))


def next_form(form: Form, layer: Layer, lo: np.ndarray, hi: np.ndarray, box_mx: np.ndarray,
              err: np.ndarray | None, slope: np.ndarray | None) -> Form:
    """The forms of the layer's output from those of its input (bounds ``[lo, hi]``; the
    layer's float error bound ``err``; ``slope``: a ReLU's lower slopes, None: CROWN's)."""
    c = layer.const
    if layer.kind is Kind.RELU:
        out = _relu(form, lo, hi, slope, layer.leak, box_mx)
    elif layer.kind is Kind.MAX:
        assert layer.index is not None
        out = _max(form, layer.index, lo, hi, box_mx)
    elif layer.kind is Kind.SUM:
        assert layer.index is not None
        out = _window_sum(form, layer.index, box_mx)
    elif layer.kind is Kind.DENSE:
        out = _dense(form, layer, box_mx)
    elif layer.kind in (Kind.ADD, Kind.RSUB):
        assert c is not None
        base = form if layer.kind is Kind.ADD else _scaled(form, -np.ones_like(c), box_mx)
        size = np.abs(base.lower_bias) + np.abs(base.upper_bias) + np.abs(c)
        out = _widened(Form(base.lower, base.lower_bias + c, base.upper, base.upper_bias + c), U64 * size)
    else:
        assert c is not None
        out = _scaled(form, c if layer.kind is Kind.MUL else 1.0 / c, box_mx)
        if layer.kind is Kind.DIV:  # 1/c is rounded: |v/c - v*fl(1/c)| <= u |v/c|
            out = _widened(out, U64 * magnitude(lo, hi) / np.abs(c) * 2)
    return out if err is None else _widened(out, err)


def concretise(form: Form, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(B, m)`` of the value over the box ``[lo, hi]`` from its forms."""
    mx = magnitude(lo, hi)
    low = np.einsum("bn,bnm->bm", lo, np.maximum(form.lower, 0)) + np.einsum("bn,bnm->bm", hi,
                                                                            np.minimum(form.lower, 0))
    high = np.einsum("bn,bnm->bm", hi, np.maximum(form.upper, 0)) + np.einsum("bn,bnm->bm", lo,
                                                                             np.minimum(form.upper, 0))
    n = lo.shape[1]
    low_slack = gamma(n + 2) * (np.einsum("bn,bnm->bm", mx, np.abs(form.lower)) + np.abs(form.lower_bias))
    high_slack = gamma(n + 2) * (np.einsum("bn,bnm->bm", mx, np.abs(form.upper)) + np.abs(form.upper_bias))
    return down(low + form.lower_bias - low_slack), up(high + form.upper_bias + high_slack)
