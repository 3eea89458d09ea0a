"""Softmax and LogSoftmax along an axis: forward, exact range, float error and linear relaxation.

Relaxation (:data:`SOFTMAX_RULE`; every group of inputs normalised together is treated alone;
each exponential below gets the lines of Exp on its slightly widened box).

- Softmax ``y_i = 1 / (1 + w_i)``, ``w_i = sum_{j != i} exp(x_j - x_i)``: below, the tangent of
  ``1 / (1 + w)`` at the largest ``w_i`` with ``w_i`` bounded above by the chords of its
  ``exp(x_j - x_i)``; above, its chord with ``w_i`` bounded below by their tangents. Each plane
  alone is never looser than the exact range (the interval cut); ``n x n`` terms per group.
- LogSoftmax ``y_i = x_i - LSE(x)``, ``LSE = c + log S`` convex (``c`` the group's largest
  upper bound, ``S = sum_j e_j``, ``e_j = exp(x_j - c)`` in ``(0, 1]``): below ``y_i`` it uses
  ``LSE <= c + log w(x) <= c + log w0 + (w(x) - w0) / w0`` (``w`` the sum of the upper lines of
  the ``e_j``, ``log`` below its tangent at ``w0 = w(m)``); above, the tangent plane of
  ``LSE`` at ``m``: the box centre, or per row a point alpha-CROWN moves in the box.
- alpha-CROWN's parameters (:class:`~verifier.ops.multi_relax.PlaneWeights`, one per element and
  row, in ``[0, 1]``): Softmax's tangent point ``W_hi - tau (W_hi - W_lo)``, LogSoftmax's ``m``.
  Any value is sound (tangents of convex functions).

Everything is computed in float64; the bias gives up ``1e-12`` of the magnitudes involved (or
``gamma(n + 16)`` for sums of ``n`` terms, when larger) for its own rounding, and the rounding
of the coefficients to the traversal's dtype. Groups with an unbounded or huge box (and Softmax
groups whose sums overflow) use the exact range (slope 0), as the interval cut would.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.activation import FLOAT32_UNIT, TRANSCENDENTAL_ABS, TRANSCENDENTAL_REL
from verifier.ops.base import REGISTRY, Args, Flags, Op, Pair, gamma, magnitude, register
from verifier.ops.multi_relax import LARGE, Moved, MultiRule, PlaneWeights, every_position
from verifier.ops.reduce import axis_dim, batched_input
from verifier.ops.relax import relax


def softmax_view(node: Node, x: Tensor) -> tuple[Tensor, int]:
    """``x`` arranged so that the softmax runs along the returned dimension.

    Opset >= 13: along ``axis``. Older opsets coerce the input to 2-D at ``axis`` (the rows are
    the dimensions before it, the columns those from it on) and normalise each row.
    """
    rank = x.dim() - 1
    axis = int(node.attrs["axis"])
    if node.attr("_opset", 13) >= 13:
        return x, axis_dim(node, axis, rank)
    if not -rank <= axis <= rank:
        raise ModelError(f"node {node.name}: {node.op} axis {axis} is out of range for rank {rank}")
    dim = axis + rank if axis < 0 else axis
    return x.reshape(x.shape[0], math.prod(x.shape[1 : dim + 1]), -1), 2


def _others_lse(v: Tensor, dim: int) -> Tensor:
    """For each i, ``log sum_{j != i} exp(v_j)`` along ``dim`` (``-inf`` when there is none).

    ``sum - own term`` (shifted by the largest term) is safe except at the largest term, where
    it could cancel and where the others, shifted by it, may all underflow to 0 (a term 800
    above the rest made the others' sum ``-inf`` and Softmax's lower bound of that term 1);
    there the others' log-sum-exp is computed on its own, shifted by their own maximum.
    """
    top = v.amax(dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(v - top)
    idx = e.argmax(dim, keepdim=True)
    is_top = torch.zeros_like(e, dtype=torch.bool).scatter(dim, idx, True)
    rest = torch.where(is_top, torch.ones_like(e), e.sum(dim, keepdim=True) - e).clamp(min=0)
    without_top = torch.logsumexp(v.masked_fill(is_top, -math.inf), dim, keepdim=True)
    return torch.where(is_top, without_top, top + torch.log(rest))


EXP_NODE = Node("softmax_exp", "Exp", ("t",), ("e",))
UNIT64 = 2.0**-53
MAX_PAIR_ENTRIES = 2**24
"""Largest ``rows x elements x group size`` for Softmax's pair terms (128 MiB in float64);
beyond it the node is cut at its exact range (attention maps with hundreds of tokens)."""
SLACK = 1e-12
"""Relative allowance of the float64 evaluation (module docstring)."""


def _grouped(node: Node, a: Tensor) -> tuple[Tensor, int]:
    """``A (N, R, *shape)`` in the softmax view, R kept: ``(N, R, ...)`` and the group dim."""
    v, dim = softmax_view(node, a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]))
    return v.reshape(a.shape[0], a.shape[1], *v.shape[1:]), dim + 1


def _exp_lines(lo: Tensor, hi: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lines of ``e = exp(x - c)`` in ``x`` (lower slope, bias, upper slope, bias) valid on a box
    widened past the rounding of ``x - c``."""
    t_lo, t_hi = lo - c, hi - c
    t_lo, t_hi = t_lo - SLACK * (1 + t_lo.abs()), t_hi + SLACK * (1 + t_hi.abs())
    lines = relax(REGISTRY["Exp"], EXP_NODE, t_lo, t_hi)
    assert lines is not None
    return (lines.lower_slope, lines.lower_bias - lines.lower_slope * c,
            lines.upper_slope, lines.upper_bias - lines.upper_slope * c)


def _pair_lines(lo: Tensor, hi: Tensor) -> tuple[Tensor, ...]:
    """For every pair ``(i, j)`` of a group (last dim), lines of ``exp(x_j - x_i)`` in
    ``t = x_j - x_i`` (lower slope, bias, upper slope, bias) on the widened box of ``t`` and
    certified bounds of ``w_i = sum_{j != i} exp(x_j - x_i)``: each ``(..., n, n)`` / ``(..., n)``,
    the diagonal zeroed."""
    t_lo = lo.unsqueeze(-2) - hi.unsqueeze(-1)  # [..., i, j] = lo_j - hi_i
    t_hi = hi.unsqueeze(-2) - lo.unsqueeze(-1)
    t_lo, t_hi = t_lo - SLACK * (1 + t_lo.abs()), t_hi + SLACK * (1 + t_hi.abs())
    lines = relax(REGISTRY["Exp"], EXP_NODE, t_lo, t_hi)
    assert lines is not None
    off = 1.0 - torch.eye(lo.shape[-1], dtype=lo.dtype, device=lo.device)
    n = lo.shape[-1]
    w_lo = (torch.exp(t_lo) * off).sum(-1) * (1 - 1e-15) * (1 - gamma(n + 2, UNIT64))
    w_hi = (torch.exp(t_hi) * off).sum(-1) * (1 + 1e-15) * (1 + gamma(n + 2, UNIT64))
    return (lines.lower_slope * off, lines.lower_bias * off, lines.upper_slope * off, lines.upper_bias * off,
            w_lo, w_hi)


def _softmax_fold(a: Tensor, dim: int, lo: Tensor, hi: Tensor, ok: Tensor,
                  tau: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Coefficients on ``x``, bias, its magnitude (for the allowance) and where the planes apply,
    for ``<A, softmax(x)>`` with ``y_i = f(w_i)``, ``f(w) = 1 / (1 + w)`` convex decreasing: below,
    its tangent at ``W_hi`` with ``w_i`` replaced by the sum of the upper lines of its terms;
    above, its chord over ``[W_lo, W_hi]`` with the lower lines. Each plane alone concretises to
    at most the exact range's end (the tangent at ``W_hi`` meets ``f(W_hi)`` there), so it is
    never looser than the interval cut. ``a`` is in the view ``(N, R, ...)``, group dim ``dim``.
    ``tau`` (the view of ``a``, in ``[0, 1]``): alpha's tangent points per row, at
    ``W_hi - tau (W_hi - W_lo)`` (any tangent of the convex ``f`` lies below it)."""
    lo_g, hi_g, a_g = lo.movedim(dim - 1, -1), hi.movedim(dim - 1, -1), a.movedim(dim, -1)
    al, bl, au, bu, w_lo, w_hi = _pair_lines(lo_g, hi_g)
    # A group whose sums or lines overflow (differences beyond ~700) keeps the exact range; its
    # entries are zeroed first, so that no NaN reaches the values or the gradients.
    good = torch.isfinite(w_lo) & torch.isfinite(w_hi)
    for t in (al, bl, au, bu):
        good &= torch.isfinite(t).all(-1)
    good = good.all(-1, keepdim=True).expand_as(good)
    ok = ok & good.movedim(-1, dim - 1)
    w_lo, w_hi = torch.where(good, w_lo, 0.0), torch.where(good, w_hi, 0.0)
    al, bl, au, bu = (torch.where(good.unsqueeze(-1), t, 0.0) for t in (al, bl, au, bu))
    f_lo, f_hi = 1 / (1 + w_lo), 1 / (1 + w_hi)
    width = w_hi - w_lo
    w_t = w_hi.unsqueeze(1)
    if tau is not None:
        w_t = w_t - tau.movedim(dim, -1).clamp(0, 1) * width.unsqueeze(1)
    f_t = 1 / (1 + w_t)
    tangent = -f_t * f_t  # f'(w_t), (N, R or 1, ..., n)
    chord = torch.where(width > 0, (f_hi - f_lo) / torch.where(width > 0, width, 1.0), -f_lo * f_lo)
    pos, neg = a_g.clamp(min=0), a_g.clamp(max=0)
    pull = (pos * tangent).unsqueeze(-1) * au.unsqueeze(1) \
        + (neg * chord.unsqueeze(1)).unsqueeze(-1) * al.unsqueeze(1)  # [N, R, ..., i, j] on x_j - x_i
    coef = pull.sum(-2) - pull.sum(-1)
    terms = pos * (f_t - tangent * w_t) + neg * (f_lo - chord * w_lo).unsqueeze(1) \
        + ((pos * tangent).unsqueeze(-1) * bu.unsqueeze(1)
           + (neg * chord.unsqueeze(1)).unsqueeze(-1) * bl.unsqueeze(1)).sum(-1)
    size = a_g.abs() * (1 + (tangent * w_t).abs() + (chord * w_lo).unsqueeze(1).abs()) \
        + (pull.abs() * (hi_g - lo_g).abs().unsqueeze(1).unsqueeze(-2)).sum(-1) \
        + ((pos * tangent).unsqueeze(-1) * bu.unsqueeze(1)).abs().sum(-1) \
        + ((neg * chord.unsqueeze(1)).unsqueeze(-1) * bl.unsqueeze(1)).abs().sum(-1)
    mine = ok.movedim(dim - 1, -1).unsqueeze(1)
    coef, terms, size = (torch.where(mine, t, 0.0) for t in (coef, terms, size))
    return coef.movedim(-1, dim), terms.flatten(2).sum(2), size.flatten(2).sum(2), ok


def _lse_fold(a: Tensor, dim: int, lo: Tensor, hi: Tensor, ok: Tensor,
              tau: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """As :func:`_softmax_fold` for ``<A, x - LSE(x)>``; the planes touch at the point
    ``m = lo + tau (hi - lo)`` (``tau`` in the view of ``a``, in ``[0, 1]``; default the box
    centre): any point gives valid planes (``LSE`` and ``log`` are convex and concave)."""
    c = hi.amax(dim - 1, keepdim=True).unsqueeze(1)  # the shift: every exp(x_j - c) is at most 1
    _, _, au, bu = (t.unsqueeze(1) for t in _exp_lines(lo, hi, c.squeeze(1)))
    n = lo.shape[dim - 1]
    lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    point = lo / 2 + hi / 2 if tau is None else lo + tau.clamp(0, 1) * (hi - lo)  # (N, R or 1, ...)
    w0 = (au * point + bu).sum(dim, keepdim=True)  # > 0: at least S(point)
    u_slope, u_bias = au / w0, (c + torch.log(w0) - 1) / n + bu / w0  # LSE <= sum(u x + u0)
    p = torch.softmax(point, dim)
    lse = torch.logsumexp(point, dim, keepdim=True)
    g_bias = lse / n - p * point  # LSE >= sum(p x + g0)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    up, down = pos.sum(dim, keepdim=True), neg.sum(dim, keepdim=True)
    coef = a - up * u_slope - down * p
    terms = -up * u_bias - down * g_bias
    width = hi - lo  # p's own rounding moves the tangent by ~1e-16 * width
    size = up.abs() * (u_bias.abs() + (u_slope * c).abs()) + down.abs() * (g_bias.abs() + width + 1) + a.abs()
    mine = ok.unsqueeze(1)
    coef, terms, size = (torch.where(mine, t, 0.0) for t in (coef, terms, size.expand_as(terms)))
    return coef, terms.flatten(2).sum(2), size.flatten(2).sum(2), ok


def _softmax_moved(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, chosen: Tensor | None) -> Moved | None:
    """``<A, softmax(x)>`` (or LogSoftmax) below by the planes of the module docstring;
    ``chosen`` ``(N, R, *shape, 1)``: Softmax's tangent points per row (:func:`_softmax_fold`)."""
    if not batched[0] or los[0] is None or his[0] is None:
        return None
    lo, hi = (softmax_view(node, t.double())[0] for t in (los[0], his[0]))
    grouped, dim = _grouped(node, a.double())
    if node.op == "Softmax" and grouped.numel() * lo.shape[dim - 1] > MAX_PAIR_ENTRIES:
        return None  # the n x n pair terms would not fit: cut at the exact range
    fine = torch.isfinite(lo) & torch.isfinite(hi) & (lo.abs() <= LARGE) & (hi.abs() <= LARGE)
    ok = fine.all(dim - 1, keepdim=True).expand_as(lo)
    lo, hi = torch.where(ok, lo, 0.0), torch.where(ok, hi, 1.0)
    tau = None if chosen is None else _grouped(node, chosen[..., 0].double())[0]
    fold = _lse_fold if node.op == "LogSoftmax" else _softmax_fold
    coef, bias, size, ok = fold(grouped, dim, lo, hi, ok, tau)
    with torch.no_grad():  # the exact range, for the groups without planes
        (y_lo,), (y_hi,) = REGISTRY[node.op].interval(node, [los[0].double()], [his[0].double()], [True])
    y_lo, y_hi = (softmax_view(node, t)[0].unsqueeze(1) for t in (y_lo, y_hi))
    rest = ~ok.unsqueeze(1) & (grouped != 0)  # these elements: the exact range, slope 0
    end = torch.where(grouped > 0, y_lo, y_hi)
    cut = torch.where(rest & torch.isfinite(end), grouped * torch.where(torch.isfinite(end), end, 0.0), 0.0)
    bias = bias + cut.flatten(2).sum(2)
    bias = torch.where((rest & ~torch.isfinite(end)).flatten(2).any(2), -math.inf, bias)
    mags = torch.maximum(lo.abs(), hi.abs()).unsqueeze(1)
    rounded = coef.to(a.dtype)
    relative = max(SLACK, gamma(int(lo[0].numel()) + 16, UNIT64))  # sums over every element
    slack = relative * (1 + size + (coef.abs() * mags).flatten(2).sum(2)) \
        + ((coef - rounded.double()).abs() * mags).flatten(2).sum(2)
    bias = bias - slack
    if a.dtype != torch.float64:
        bias = bias - 2 * torch.finfo(a.dtype).eps * (bias.abs() + 1)
    shape = los[0].shape[1:]
    return Moved({0: rounded.reshape(*a.shape[:2], *shape)}, bias.to(a.dtype))


def _softmax_backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
    return _softmax_moved(node, a, los, his, batched, None)


def _softmax_seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
    """The default points ``(N, *shape, 1)``: Softmax's tangent at ``W_hi`` (``tau = 0``),
    LogSoftmax's at the box centre (``tau = 1/2``); None for an input without bounds."""
    if not batched[0] or los[0] is None:
        return None
    return torch.full((*los[0].shape, 1), 0.5 if node.op == "LogSoftmax" else 0.0, dtype=torch.float64,
                      device=los[0].device)


SOFTMAX_RULE = MultiRule(_softmax_backward, every_position, PlaneWeights(_softmax_seed, _softmax_moved))
"""The relaxation of Softmax and LogSoftmax (module docstring); alpha-CROWN moves Softmax's lower
tangent points and LogSoftmax's touching point per row."""


@register("Softmax", "LogSoftmax")
class Softmax(Op):
    """``exp(x_i) / sum_j exp(x_j)`` and its logarithm, along an axis (see :func:`_softmax_view`).

    Output ``i`` equals ``sigmoid(x_i - log sum_{j != i} exp(x_j))``: increasing in ``x_i`` and
    decreasing in every other input, so its exact range over a box puts ``x_i`` at one end and
    the others at the opposite end. LogSoftmax uses ``logsigmoid`` of the same argument. Linear
    relaxation: :data:`SOFTMAX_RULE`.
    """

    multi_relaxation = SOFTMAX_RULE

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = batched_input(args, batched)
        v, dim = softmax_view(node, x)
        fn = torch.log_softmax if node.op == "LogSoftmax" else torch.softmax
        return (fn(v, dim).reshape(x.shape),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = batched_input(lower, batched), batched_input(upper, batched)
        (v_lo, dim), (v_hi, _) = softmax_view(node, lo), softmax_view(node, hi)
        z_lo = v_lo - _others_lse(v_hi, dim)
        z_hi = v_hi - _others_lse(v_lo, dim)
        if node.op == "LogSoftmax":
            f = torch.nn.functional.logsigmoid
            out_lo, out_hi = f(z_lo), f(z_hi)
            floor, ceil = -math.inf, 0.0
        else:
            out_lo, out_hi = torch.sigmoid(z_lo), torch.sigmoid(z_hi)
            floor, ceil = 0.0, 1.0
        out_lo = torch.where(torch.isnan(out_lo), floor, out_lo).reshape(lo.shape)
        out_hi = torch.where(torch.isnan(out_hi), ceil, out_hi).reshape(lo.shape)
        return (out_lo,), (out_hi,)

    def float_range(self, node: Node) -> tuple[float, float] | None:
        """Softmax's float value lies in ``[0, 1]``: ``e_i = exp(x_i - m) >= 0`` and the sum
        ``S`` of non-negative floats is at least each of its terms (rounding is monotone), so
        ``e_i / S`` rounds into ``[0, 1]``; so does ``e_i * fl(1 / S)``, since
        ``S * fl(1 / S) < 1 + u`` rounds to at most 1. LogSoftmax has no finite floor."""
        return (0.0, 1.0) if node.op == "Softmax" else None

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        """Error model of ``e_i = exp(x_i - m)``, ``S = sum e_j``, ``e_i / S`` or
        ``(x_i - m) - log S``: each ``e_j`` has relative error ``2**-16`` plus
        ``u |x_j - m|`` from the shift (``e_j u |x_j - m| <= u``), so ``S >= 1`` has relative
        error ``2**-16 + gamma(2n)``; the log and the division add their own."""
        lo = batched_input(lower, batched)
        v, dim = softmax_view(node, lo)
        g = gamma(2 * v.shape[dim] + 2, unit)
        scale = unit / FLOAT32_UNIT
        mag = magnitude(out[0][0], out[1][0])
        if node.op == "LogSoftmax":
            err = scale * (TRANSCENDENTAL_REL * (2 * mag + 2) + TRANSCENDENTAL_ABS) + g * (2 + mag)
        else:
            err = scale * (2 * TRANSCENDENTAL_REL * mag + TRANSCENDENTAL_ABS) + g * mag + unit
        return (err,)

