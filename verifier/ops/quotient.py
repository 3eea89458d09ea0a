"""The linear relaxation of ``x / y`` with a dynamic denominator (Div's :class:`MultiRule`).

Where the denominator's box has one sign (``l_y > 0`` or ``u_y < 0``) and every box is finite,
each output gets a lower and an upper plane ``c_x x + c_y y + b``; elsewhere slope 0 and the
interval bounds (infinite where the box touches 0).

Soundness does not rest on the slopes. For ANY slopes, ``g(x, y) = x / y - c_x x - c_y y`` is
linear in ``x``, so its extrema over the box lie at ``x`` in ``{l_x, u_x}``; for such an end
``e``, ``h(y) = e / y - c_y y`` is smooth on the one-signed ``[l_y, u_y]`` with one stationary
point, ``y^2 = -e / c_y`` (on the box's side of 0). The bias is the extremum of ``g`` over these
six points, evaluated in float64 for the slopes exactly as the traversal uses them (rounded to
its dtype first), less a margin ``1e-12 (1 + |terms|)`` and padded outward when cast to a
narrower dtype (as the free-slope lines of :mod:`verifier.bounds.free_lines`). A stationary
point computed slightly off moves ``g`` only to second order.

The slopes only decide tightness: ``x / y = x r`` with ``r = 1 / y`` in ``[1 / u_y, 1 / l_y]``
(for ``y > 0``; ``y < 0`` by symmetry); a McCormick plane of ``x r``, with ``r`` replaced by its
tangent at ``sqrt(l_y u_y)`` or its chord (the two are parallel; the bias settles the offset).
alpha-CROWN may move both per row (:class:`~verifier.ops.multi_relax.PlaneWeights`): a blend
``lam`` of the side's two McCormick planes and the point ``t`` of ``1 / y``'s slope ``-1 / t^2``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.activation import hull
from verifier.ops.base import Args, Flags
from verifier.ops.multi_relax import (
    LARGE,
    Moved,
    MultiRule,
    PlaneWeights,
    aligned_bounds,
    every_position,
    mag,
    reduce_to,
    rows_bias,
)
from verifier.ops.relax import MARGIN

Box = tuple[Tensor, Tensor, Tensor, Tensor]
"""``(lx, ux, ly, uy)`` in float64, broadcast to the output."""


def _usable(box: Box) -> Tensor:
    """Where planes apply: finite, not huge, the denominator's box of one sign."""
    ly, uy = box[2], box[3]
    ok = (ly > 0) | (uy < 0)
    for t in box:
        ok = ok & (t.abs() <= LARGE)
    return ok


def _stand_in(ok: Tensor, box: Box) -> Box:
    """The box where ``ok``, ``[0, 1] x [1, 2]`` elsewhere (never evaluated for a result)."""
    ends = (0.0, 1.0, 1.0, 2.0)
    lx, ux, ly, uy = (torch.where(ok, t, torch.full_like(t, e)) for t, e in zip(box, ends, strict=True))
    return lx, ux, ly, uy


def plane_bias(cx: Tensor, cy: Tensor, box: Box, upper: bool) -> Tensor:
    """The bias that makes ``cx x + cy y + b`` an upper (lower) bound of ``x / y`` on the box
    (float64, denominators of one sign; see the module docstring), for ANY finite slopes."""
    lx, ux, ly, uy = box
    gaps, sizes = [], []
    for e in (lx, ux):
        with torch.no_grad():  # the bias's gradient does not depend on how the point moves
            stationary = torch.sqrt(torch.nan_to_num((-e / cy).clamp(min=0), nan=0.0, posinf=math.inf))
            side = torch.where(ly > 0, stationary, -stationary)
            inside = torch.minimum(torch.maximum(side, ly), uy)
        for y in (ly, uy, inside):
            terms = (e / y, cx * e, cy * y)
            gaps.append(terms[0] - terms[1] - terms[2])
            sizes.append(terms[0].abs() + terms[1].abs() + terms[2].abs())
    stacked = torch.stack(gaps)
    margin = MARGIN * (1 + torch.stack(sizes).amax(0))
    return stacked.amax(0) + margin if upper else stacked.amin(0) - margin


def _frame(box: Box) -> tuple[Box, Tensor]:
    """The box with the denominator made positive (``x / y = (-x) / (-y)`` where ``u_y < 0``)
    and the sign mapping slopes found there back."""
    lx, ux, ly, uy = box
    flip = uy < 0
    framed = (torch.where(flip, -ux, lx), torch.where(flip, -lx, ux),
              torch.where(flip, -uy, ly), torch.where(flip, -ly, uy))
    return framed, torch.where(flip, -1.0, 1.0)


def default_weights(box: Box) -> tuple[Tensor, Tensor]:
    """The blend ``lam = 1`` (one McCormick plane) and the position ``tau`` of ``sqrt(l_y u_y)``
    in the (positive) denominator's box: the weights of the fixed planes."""
    (_, _, ly, uy), _ = _frame(box)
    width = uy - ly
    tau = torch.where(width > 0, (torch.sqrt(ly * uy) - ly) / torch.where(width > 0, width, 1.0), 0.5)
    return torch.ones_like(tau), tau.clamp(0, 1)


def _slopes(box: Box, upper: bool, weights: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Slopes ``(cx, cy)`` from the McCormick planes of ``x r``, ``r = 1 / y`` (module
    docstring) with weights ``(lam, tau)`` in ``[0, 1]`` (default :func:`default_weights`):
    ``lam`` blends the two planes of the side, ``r`` is replaced by a line of slope
    ``-1 / t^2``, ``t = l_y + tau (u_y - l_y)`` (its tangent at ``t``; the bias settles the offset)."""
    (lx, ux, ly, uy), sign = _frame(box)
    if weights is None:  # the fixed planes: t^2 = l_y u_y exactly
        lam, squared = torch.ones_like(ly), ly * uy
    else:
        lam, tau = weights
        squared = (ly + tau * (uy - ly)) ** 2
    lr, ur = 1 / uy, 1 / ly
    # Below: x r >= ur x + ux r - ux ur and x r >= lr x + lx r - lx lr; above: x r <= lr x + ux r
    # - ux lr and x r <= ur x + lx r - lx ur. lam = 1 takes the first of each side.
    near, far = (lr, ur) if upper else (ur, lr)
    sx = lam * near + (1 - lam) * far
    cy = (lam * ux + (1 - lam) * lx) * (-1 / squared)
    return sx * sign, cy * sign


def div_planes(box: Box, dtype: torch.dtype, x_dynamic: bool = True,
               weights: tuple[Tensor, ...] | None = None) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor]:
    """Lower and upper planes ``(cx, cy, b)`` of ``x / y`` (slopes in ``dtype``, biases padded
    for it; ``cx = 0`` for a constant numerator) and the mask where they apply (elsewhere the
    caller uses interval bounds). ``weights``: ``(lam, tau)`` of the lower plane, then of the
    upper (:func:`_slopes`; default the fixed planes); any weights give valid planes."""
    ok = _usable(box)
    safe = _stand_in(ok, box)
    planes = []
    for upper in (False, True):
        chosen = None if weights is None else (weights[2 * upper], weights[2 * upper + 1])
        cx, cy = (s.to(dtype) for s in _slopes(safe, upper, chosen))
        cx = cx if x_dynamic else torch.zeros_like(cx)
        bias = plane_bias(cx.double(), cy.double(), safe, upper)
        if dtype != torch.float64:
            pad = 2 * torch.finfo(dtype).eps * (bias.abs() + 1)
            bias = bias + pad if upper else bias - pad
        planes.append((cx, cy, bias.to(dtype)))
    return planes[0], planes[1], ok


def _interval(box: Box) -> tuple[Tensor, Tensor]:
    """The range of ``x / y`` (corner quotients; infinite where the denominator's box touches 0)."""
    lx, ux, ly, uy = box
    low, high = hull([x / y for x in (lx, ux) for y in (ly, uy)])
    safe = (ly > 0) | (uy < 0)
    inf = torch.full_like(low, math.inf)
    return torch.where(safe, low, -inf), torch.where(safe, high, inf)


def _div_moved(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, weights: Tensor | None) -> Moved | None:
    """``<A, x / y>`` below by the planes of :func:`div_planes` (a constant numerator: slope 0
    on it, so the planes are in ``y`` alone; a constant denominator is affine, not this rule),
    shared by every row (``weights`` None) or with the weights ``(N, R, *out, 4)`` of each row."""
    aligned = aligned_bounds(los, his, batched, torch.float64)
    if aligned is None or len(batched) != 2 or not batched[1]:
        return None
    (lx, ly), (ux, uy) = aligned
    box = (lx.unsqueeze(1), ux.unsqueeze(1), ly.unsqueeze(1), uy.unsqueeze(1))  # (N, 1, ...): one per row
    chosen = None if weights is None else weights.double().unbind(-1)
    lower, upper, ok = div_planes(box, a.dtype, batched[0], chosen)
    low, high = (t.detach().to(a.dtype) for t in _interval(box))
    zero = torch.zeros((), dtype=a.dtype)
    lcx, lcy, ucx, ucy = (torch.where(ok, t, zero) for t in (lower[0], lower[1], upper[0], upper[1]))
    lb, ub = torch.where(ok, lower[2], low), torch.where(ok, upper[2], high)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    scale = (torch.maximum(lcx.abs(), ucx.abs()) * mag(box[0], box[1]).to(a.dtype)
             + torch.maximum(lcy.abs(), ucy.abs()) * mag(box[2], box[3]).to(a.dtype))
    coefficients = {}
    for i, (lc, uc, value) in enumerate(((lcx, ucx, lx), (lcy, ucy, ly))):
        source = los[i]
        if batched[i] and source is not None:
            coefficients[i] = reduce_to(pos * lc + neg * uc, value, source.shape[1:])
    return Moved(coefficients, rows_bias(a, lb, ub, scale))


def _div_backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
    return _div_moved(node, a, los, his, batched, None)


def _div_seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
    """The fixed planes' weights ``(N, *out, 4)`` where the denominator is dynamic and some
    element's planes apply (a one-signed, finite box)."""
    aligned = aligned_bounds(los, his, batched, torch.float64)
    if aligned is None or len(batched) != 2 or not batched[1]:
        return None
    (lx, ly), (ux, uy) = aligned
    box = (lx, ux, ly, uy)
    ok = _usable(box)
    if not bool(ok.any()):
        return None
    lam, tau = default_weights(_stand_in(ok, box))
    out = torch.broadcast_shapes(lx.shape, ly.shape)
    return torch.stack([w.expand(out) for w in (lam, tau, lam, tau)], dim=-1)


DIV_RULE = MultiRule(_div_backward, every_position, PlaneWeights(_div_seed, _div_moved))
"""The relaxation of ``x / y`` with a dynamic denominator; alpha-CROWN optimises each plane's
McCormick blend and the point of ``1 / y``'s slope per row."""
