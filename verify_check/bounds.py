"""Certified bounds of a float32 chain network over batches of boxes, in float64 numpy.

**Float32 error model** (what the model's evaluation may differ from the exact op applied to
the same float32 inputs, with ``u = 2^-24`` and ``eta = 2^-149`` for underflow):

- a dot product (``MatMul``; ``Gemm``, whose bias is one more term) of ``k`` terms that can be
  nonzero (a zero weight or an input bounded by ``[0, 0]`` gives an exact zero):
  ``(u T + (k-1) u S) / (1 - (k-1) u) + (k+1) eta``, with ``T`` the sum of the products'
  largest magnitudes and ``S = max(P, N)``, ``P`` (``N``) the sum of the terms' largest
  positive (negative) parts over the box: every product is rounded once (``<= u |p|``) and every
  one of the ``k - 1`` additions rounds a partial sum, whatever the order, of magnitude at
  most ``S`` plus the error so far;
  (``Conv``: the same, each output a dot product of its window's terms);
- ``Add``, ``Sub``, ``Mul``, ``Div`` by a constant: one rounding, ``u |y| + eta``;
- a window sum (``AveragePool``'s, before its division): the same without the products'
  roundings, ``(k-1) u S / (1 - (k-1) u)`` (a one-term sum, as ``Pad`` reads, is exact);
- ``LeakyRelu``: one rounding of ``alpha x`` below 0, ``u |y| + eta`` there;
- ``Relu``, ``MaxPool`` and the shape ops: exact.

**Float64 arithmetic of the checker**: every interval end is moved one float64 step outwards
after each rounded operation; the backward pass keeps its coefficients as computed and
subtracts, at each layer, a bound on what their rounding can change (``gamma(n)`` times the
magnitudes, ``gamma(n) = n 2^-53 / (1 - n 2^-53)``), and the final sum subtracts its own.

**Linear rules** (CROWN): an affine layer passes coefficients through exactly; a ReLU with
input bounds ``l < 0 < u`` is bounded below by ``a x`` (``0 <= a <= 1``: ``1`` where
``u >= -l``, else ``0``, unless the certificate gives slopes) and above by the chord
``s (x - l)`` with ``s >= u / (u - l)`` rounded up; stable neurons by their exact piece (a
LeakyRelu's the same with ``alpha x`` below 0: lower slopes in ``[alpha, 1]``, the chord through
``(l, alpha l)`` and ``(u, u)``); a max window by its input of largest lower bound below and a
line through its input of largest upper bound above (:func:`~verify_check.bounds_base.
window_planes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verify_check.bounds_base import ETA, U32, U64, gamma, relu_chord, window_planes, windowed
from verify_check.bounds_base import down as _down
from verify_check.bounds_base import magnitude as _mag
from verify_check.bounds_base import up as _up
from verify_check.forms import MAX_INPUTS, Form, concretise, input_form, next_form
from verify_check.model import Chain, Kind, Layer


def _sum_error(lo: np.ndarray, hi: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The float32 error bound ``(B, m)`` of window sums: the dot-product bound without its
    products (a one-term sum is exact)."""
    lo_w, hi_w = windowed(lo, index, 0.0), windowed(hi, index, 0.0)
    adds = np.maximum(((index >= 0)[None] & (_mag(lo_w, hi_w) > 0)).sum(axis=2) - 1, 0)
    pos, neg = np.maximum(hi_w, 0).sum(axis=2), np.maximum(-lo_w, 0).sum(axis=2)
    err = adds * U32 * np.maximum(pos, neg) / (1 - adds * U32) + adds * ETA
    return err * (1 + gamma(index.shape[1] + 8))


def _dense_error(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The float32 error bound ``(B, m)`` of a dot-product layer on inputs in ``[lo, hi]``."""
    (wp, wn, absolute, nonzero), b = layer.signed, layer.const
    hp, ln = np.maximum(hi, 0), np.maximum(-lo, 0)
    total = _mag(lo, hi) @ absolute.T
    pos, neg = hp @ wp.T - ln @ wn.T, ln @ wp.T - hp @ wn.T
    counts = (_mag(lo, hi) > 0).astype(np.float64) @ nonzero.T
    if b is not None:
        pos, neg = pos + np.maximum(b, 0), neg + np.maximum(-b, 0)
        counts = counts + (b != 0)
    adds = np.maximum(counts - 1, 0)
    err = (U32 * total + adds * U32 * np.maximum(pos, neg)) / (1 - adds * U32) + (counts + 1) * ETA
    return err * (1 + gamma(wp.shape[1] + 8))


def _exact_interval(layer: Layer, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward-rounded bounds of the exact op on inputs in ``[lo, hi]``."""
    if layer.kind is Kind.RELU:
        if not layer.leak:
            return np.maximum(lo, 0), np.maximum(hi, 0)
        return np.where(lo >= 0, lo, _down(layer.leak * lo)), np.where(hi >= 0, hi, _up(layer.leak * hi))
    c = layer.const
    if layer.kind is Kind.MAX:
        assert layer.index is not None
        return windowed(lo, layer.index, -np.inf).max(axis=2), windowed(hi, layer.index, -np.inf).max(axis=2)
    if layer.kind is Kind.SUM:
        assert layer.index is not None
        lo_w, hi_w = windowed(lo, layer.index, 0.0), windowed(hi, layer.index, 0.0)
        slack = gamma(layer.index.shape[1] + 2) * _mag(lo_w, hi_w).sum(axis=2)
        return _down(lo_w.sum(axis=2) - slack), _up(hi_w.sum(axis=2) + slack)
    if layer.kind is Kind.DENSE:
        (wp, wn, absolute, _), b = layer.signed, layer.const
        out_lo, out_hi = lo @ wp.T + hi @ wn.T, hi @ wp.T + lo @ wn.T
        slack = _mag(lo, hi) @ absolute.T
        if b is not None:
            out_lo, out_hi, slack = out_lo + b, out_hi + b, slack + np.abs(b)
        slack = gamma(wp.shape[1] + 2) * slack
        return _down(out_lo - slack), _up(out_hi + slack)
    assert c is not None
    if layer.kind is Kind.ADD:
        return _down(lo + c), _up(hi + c)
    if layer.kind is Kind.RSUB:
        return _down(c - hi), _up(c - lo)
    a, b2 = (lo * c, hi * c) if layer.kind is Kind.MUL else (lo / c, hi / c)
    return _down(np.minimum(a, b2)), _up(np.maximum(a, b2))


def float_error(layer: Layer, lo: np.ndarray, hi: np.ndarray, out_lo: np.ndarray, out_hi: np.ndarray
                ) -> np.ndarray | None:
    """The error bound of the layer's float32 evaluation (None: exact), see the module."""
    if layer.kind is Kind.MAX:
        return None
    if layer.kind is Kind.SUM:
        assert layer.index is not None
        return _sum_error(lo, hi, layer.index)
    if layer.kind is Kind.RELU:  # LeakyRelu rounds its products below 0
        return np.where(lo < 0, U32 * -out_lo * (1 + 4 * U64) + ETA, 0.0) if layer.leak else None
    if layer.kind is Kind.DENSE:
        return _dense_error(layer, lo, hi)
    return U32 * _mag(out_lo, out_hi) * (1 + 4 * U64) + ETA


@dataclass
class Values:
    """Bounds ``(B, size)`` of every value of the chain (0: the input, ``i``: layer ``i``'s
    output, as the float32 model computes it) and each rounded layer's error bound."""

    lo: list[np.ndarray]
    hi: list[np.ndarray]
    err: list[np.ndarray | None]


@dataclass
class Linear:
    """A certified lower bound ``(B, R)`` of objective rows and the input coefficients
    ``(B, R, n)`` of the linear function it minimises over the box (for clipping)."""

    lower: np.ndarray
    coeff: np.ndarray


def _relu_lines(lam: np.ndarray, lo: np.ndarray, hi: np.ndarray, slopes: np.ndarray | None, leak: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients through a ReLU with input bounds ``(B, n)`` and the constant term
    (given ``slopes`` are clipped to ``[leak, 1]``, where the lower line is valid)."""
    unstable, default, chord, bias = relu_chord(lo, hi, leak)
    low = default[:, None, :]
    if slopes is not None:
        low = np.where(unstable[:, None, :], np.clip(slopes, leak, 1.0), low)
    positive = lam >= 0
    new = lam * np.where(positive, low, chord[:, None, :])
    return new, np.einsum("brn,bn->br", np.where(positive, 0.0, lam), bias)


def _max_lines(lam: np.ndarray, index: np.ndarray, lo: np.ndarray, hi: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coefficients through a max layer (:func:`window_planes`), the constant term and a
    bound on the rounding of the products and of the sums into each input."""
    low, up, s, b = window_planes(index, lo, hi)
    pos, neg = np.maximum(lam, 0), np.minimum(lam, 0) * s[:, None, :]
    new = np.zeros((*lam.shape[:2], lo.shape[1]))
    batch, rows = np.arange(lam.shape[0])[:, None, None], np.arange(lam.shape[1])[None, :, None]
    np.add.at(new, (batch, rows, low[:, None, :]), pos)
    np.add.at(new, (batch, rows, up[:, None, :]), neg)
    size = np.abs(pos) * np.take_along_axis(_mag(lo, hi), low, 1)[:, None] + np.abs(neg) * np.take_along_axis(
        _mag(lo, hi), up, 1)[:, None]
    term = np.einsum("brm,bm->br", np.minimum(lam, 0), b)
    return new, term, gamma(2 * index.shape[1] + 4) * size.sum(axis=2)


def backward(chain: Chain, values: Values, top: int, lam: np.ndarray, const: np.ndarray,
             slopes: dict[int, np.ndarray] | None = None, betas: dict[int, np.ndarray] | None = None) -> Linear:
    """A certified lower bound of ``lam · v_top + const`` over each box (``lam`` ``(B, R, size)``,
    ``const`` ``(B, R)``), for the float32 model, by CROWN's backward pass with the given
    bounds of the values below ``top``; ``slopes``: lower slopes ``(B, R, n)`` in ``[0, 1]``
    of the ReLU layers they name (by layer index); ``betas``: ``beta s`` ``(B, R, n)`` of the
    ReLU layers they name, ``beta >= 0`` and ``s`` the sign of a split on the layer's input
    ``x`` (0 if unsplit): ``-beta s x`` is added (``<= 0`` where the splits hold: the bound
    then holds on the box's points that satisfy them)."""
    const, mag = const.copy(), np.abs(const)
    allow = np.zeros_like(const)
    widest = max(v.shape[1] for v in values.lo)
    for i in range(top, 0, -1):
        layer, lo, hi = chain.layers[i - 1], values.lo[i - 1], values.hi[i - 1]
        err = values.err[i]
        if err is not None:
            allow += np.einsum("brm,bm->br", np.abs(lam), err)
        c = layer.const
        if layer.kind is Kind.RELU:
            lam, term = _relu_lines(lam, lo, hi, None if slopes is None else slopes.get(i - 1), layer.leak)
            const, mag = const + term, mag + np.abs(term)
            if betas is not None and i - 1 in betas:  # one more rounding: the products, then the difference
                allow += U64 * np.einsum("brn,bn->br", np.abs(lam), _mag(lo, hi))
                lam = lam - betas[i - 1]
            allow += U64 * np.einsum("brn,bn->br", np.abs(lam), _mag(lo, hi))  # the products' rounding
        elif layer.kind is Kind.MAX:
            assert layer.index is not None
            lam, term, rounding = _max_lines(lam, layer.index, lo, hi)
            const, mag, allow = const + term, mag + np.abs(term), allow + rounding
        elif layer.kind is Kind.SUM:  # each input gathers the coefficients of its windows
            assert layer.index is not None
            out, slot = np.nonzero(layer.index >= 0)
            spread = np.zeros((lo.shape[1], *lam.shape[:2]))  # input first: np.add.at adds along it
            np.add.at(spread, layer.index[out, slot], lam[:, :, out].transpose(2, 0, 1))
            sizes = windowed(_mag(lo, hi), layer.index, 0.0).sum(axis=2)
            allow += gamma(2 * layer.index.shape[1] + 4) * np.einsum("brm,bm->br", np.abs(lam), sizes)
            lam = spread.transpose(1, 2, 0)
        elif layer.kind is Kind.DENSE:
            assert layer.weight is not None
            if c is not None:
                const, mag = const + lam @ c, mag + np.abs(lam) @ np.abs(c)
            scaled = _mag(lo, hi) @ layer.signed[2].T
            allow += gamma(layer.weight.shape[0]) * np.einsum("brm,bm->br", np.abs(lam), scaled)
            lam = lam @ layer.weight
        else:
            assert c is not None
            if layer.kind in (Kind.ADD, Kind.RSUB):
                const, mag = const + lam @ c, mag + np.abs(lam) @ np.abs(c)
                lam = -lam if layer.kind is Kind.RSUB else lam
            else:
                lam = lam * c if layer.kind is Kind.MUL else lam / c
                allow += U64 * np.einsum("brn,bn->br", np.abs(lam), _mag(lo, hi))
    lo0, hi0 = values.lo[0], values.hi[0]
    conc = np.einsum("brn,bn->br", np.maximum(lam, 0), lo0) + np.einsum("brn,bn->br", np.minimum(lam, 0), hi0)
    mag = mag + np.einsum("brn,bn->br", np.abs(lam), _mag(lo0, hi0))
    rounding = gamma(widest + 4 * len(chain.layers) + 8) * mag
    total = (conc + const) - (allow * (1 + 4 * gamma(widest + 16)) + rounding)
    return Linear(_down(_down(total)), lam)


def _subset(values: Values, sel: np.ndarray) -> Values:
    return Values([v[sel] for v in values.lo], [v[sel] for v in values.hi],
                  [None if e is None else e[sel] for e in values.err])


def _refine(chain: Chain, values: Values, i: int, given: dict[int, np.ndarray] | None) -> None:
    """Tightens the bounds of value ``i`` by CROWN on each box's unstable neurons (rows ``±e_j``
    per box; boxes grouped by how many they have, padded within a group), with the default
    lower slopes and, where ``given`` (by layer: ``(B, n)`` for every row), with those too."""
    lo, hi = values.lo[i], values.hi[i]
    unstable = (lo < 0) & (hi > 0)
    counts = unstable.sum(axis=1)
    groups = np.ceil(counts / 4).astype(np.int64)
    for group in np.unique(groups[groups > 0]):
        sel = np.nonzero(groups == group)[0]
        part = _subset(values, sel)
        slopes = None if given is None else {j: s[sel] for j, s in given.items()}
        low, high = _refine_group(chain, part, i, unstable[sel], counts[sel], slopes)
        lo[sel], hi[sel] = low, high


def _refine_group(chain: Chain, part: Values, i: int, unstable: np.ndarray, counts: np.ndarray,
                  given: dict[int, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_refine` on boxes whose unstable counts are alike; returns their new bounds."""
    lo, hi = part.lo[i], part.hi[i]
    batch, size = lo.shape
    k = int(counts.max())
    which = np.argsort(~unstable, axis=1, kind="stable")[:, :k]  # each box's unstable neurons first
    valid = np.arange(k)[None] < counts[:, None]
    lam = np.zeros((batch, 2 * k, size))
    rows = np.arange(batch)[:, None]
    lam[rows, np.arange(k)[None], which] = valid
    lam[rows, k + np.arange(k)[None], which] = -1.0 * valid
    low, high = np.take_along_axis(lo, which, 1), np.take_along_axis(hi, which, 1)
    found = backward(chain, part, i, lam, np.zeros((batch, 2 * k))).lower
    low = np.where(valid, np.maximum(low, found[:, :k]), low)
    high = np.where(valid, np.minimum(high, -found[:, k:]), high)
    other = _differs(chain, part, given, i)  # boxes whose given slopes are not the default ones
    if given is not None and other.any():
        sub = np.nonzero(other)[0]
        spread = {j: np.broadcast_to(s[sub][:, None], (sub.size, 2 * k, s.shape[1])) for j, s in given.items() if j < i}
        found = backward(chain, _subset(part, sub), i, lam[sub], np.zeros((sub.size, 2 * k)), spread).lower
        low[sub] = np.where(valid[sub], np.maximum(low[sub], found[:, :k]), low[sub])
        high[sub] = np.where(valid[sub], np.minimum(high[sub], -found[:, k:]), high[sub])
    np.put_along_axis(lo, which, low, 1)
    np.put_along_axis(hi, which, high, 1)
    return lo, hi


def _differs(chain: Chain, values: Values, given: dict[int, np.ndarray] | None, below: int) -> np.ndarray:
    """Per box, whether the ``given`` lower slopes of the ReLU layers below value ``below``
    differ from the default ones at some unstable neuron (else a pass with them is the same)."""
    batch = values.lo[0].shape[0]
    differs = np.zeros(batch, dtype=bool)
    for j, slopes in (given or {}).items():
        if j < below:
            leak = chain.layers[j].leak
            unstable, default, _, _ = relu_chord(values.lo[j], values.hi[j], leak)
            differs |= (unstable & (np.clip(slopes, leak, 1.0) != default)).any(axis=1)
    return differs


def relu_inputs(chain: Chain) -> list[int]:
    """The values (indices) that feed a ReLU layer."""
    return [i for i, layer in enumerate(chain.layers) if layer.kind is Kind.RELU]


def bound_values(chain: Chain, lower: np.ndarray, upper: np.ndarray,
                 prior: dict[int, tuple[np.ndarray, np.ndarray]], given: dict[int, np.ndarray] | None = None,
                 refine: bool = True, stop: int | None = None) -> Values:
    """Bounds of every value over the boxes ``(B, n)``: intervals, forward forms, and at each
    ReLU's input (after a first ReLU, unless not ``refine``) CROWN (with the default lower
    slopes and, where ``given``, with those: ``(B, n)`` per ReLU layer index), all intersected
    with ``prior`` (bounds of ReLU inputs known to hold on these boxes, e.g. a parent box's);
    values after ``stop`` are left out."""
    values = Values([lower.copy()], [upper.copy()], [None])
    seen_relu = False
    feeds = set(relu_inputs(chain))
    form: Form | None = input_form(lower) if chain.inputs <= MAX_INPUTS else None
    box_mx = _mag(lower, upper)
    for i, layer in enumerate(chain.layers, start=1):
        lo, hi = _exact_interval(layer, values.lo[-1], values.hi[-1])
        err = float_error(layer, values.lo[-1], values.hi[-1], lo, hi)
        if err is not None:
            lo, hi = _down(lo - err), _up(hi + err)
        if form is not None:
            slope = None if given is None else given.get(i - 1)
            form = next_form(form, layer, values.lo[-1], values.hi[-1], box_mx, err, slope)
            f_lo, f_hi = concretise(form, lower, upper)
            lo, hi = np.maximum(lo, f_lo), np.minimum(hi, f_hi)
        values.lo.append(lo)
        values.hi.append(hi)
        values.err.append(err)
        if i in feeds:
            if i in prior:
                np.maximum(lo, prior[i][0], out=lo)
                np.minimum(hi, prior[i][1], out=hi)
            if seen_relu and refine:
                _refine(chain, values, i, given)
        seen_relu = seen_relu or layer.kind is Kind.RELU
        if i == stop:
            break
    return values


def row_bounds(chain: Chain, values: Values, C: np.ndarray, d: np.ndarray,
               slopes: dict[int, np.ndarray] | None = None, betas: dict[int, np.ndarray] | None = None) -> Linear:
    """CROWN's certified lower bounds ``(B, R)`` of the rows ``C y - d`` (``C`` ``(R, out)``)
    with their input coefficients (``slopes``, ``betas``: see :func:`backward`)."""
    batch = values.lo[0].shape[0]
    lam = np.broadcast_to(C[None], (batch, *C.shape))
    return backward(chain, values, len(chain.layers), lam, np.broadcast_to(-d, (batch, d.size)).copy(), slopes,
                    betas)


def interval_rows(values: Values, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Certified lower bounds ``(B, R)`` of the rows ``C y - d`` from the outputs' intervals."""
    lo, hi = values.lo[-1], values.hi[-1]
    interval = (lo @ np.maximum(C, 0).T + hi @ np.minimum(C, 0).T) - d
    interval = interval - gamma(C.shape[1] + 2) * (_mag(lo, hi) @ np.abs(C).T + np.abs(d))
    return _down(interval)
