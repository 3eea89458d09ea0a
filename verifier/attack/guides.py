"""Attack starting points read off certified linear bounds: the input corner that minimises a
clause row's linear lower bound.

CROWN bounds a row ``C_r y`` from below by ``a . x + b`` over the box; the corner with
``x_i = lower_i`` where ``a_i > 0`` and ``upper_i`` elsewhere minimises that linear function, and
where the relaxation is tight it is where the row itself is lowest. On networks whose
counterexamples sit at one corner of a high-dimensional box (planted corner detectors: a bump
that fires only in a thin slab next to one corner, `verify soundness`), random sampling and
gradient steps never get there, while the bound's coefficients point straight at it: on the
bundled soundness suite the corner of the violated clause's row was the planted
counterexample on every Sigmoid network (24 of 24), where sampling and PGD had found 5.

The points only choose where the attack looks: every one is a candidate, re-checked by
onnxruntime before ``sat`` (nothing here is a bound).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from verifier.bounds.crown import Crown


def minimising_corners(coefficients: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """For linear functions ``a . x`` (``coefficients`` ``(..., n)``), the corners of the box
    ``lower`` .. ``upper`` (each broadcastable, last dimension ``n``) minimising them: ``x_i`` at
    its lower end where ``a_i > 0``, else at its upper end."""
    return torch.where(coefficients > 0, lower, upper)


def row_corners(crown: Crown, lower: Tensor, upper: Tensor) -> Tensor:
    """``(R + 1, n)``: for each row of ``crown``'s last :meth:`~Crown.lower_bound` (first batch
    entry; the graph's one input, flattened), the box corner minimising its linear lower bound,
    then the corner minimising the rows' sum (a point that must satisfy every row of a clause at
    once). ``lower``/``upper``: the box, ``(1, n)`` or ``(n,)``. No rows recorded: ``(0, n)``."""
    lo, hi = lower.reshape(1, -1), upper.reshape(1, -1)
    recorded = crown.input_coefficients
    if len(recorded) != 1:
        return lo.new_zeros(0, lo.shape[1])
    coefficients = next(iter(recorded.values()))
    a = coefficients[0].reshape(coefficients.shape[1], -1).to(lo)
    if a.shape[0] == 0 or a.shape[1] != lo.shape[1]:
        return lo.new_zeros(0, lo.shape[1])
    a = torch.cat([a, a.sum(dim=0, keepdim=True)]) if a.shape[0] > 1 else a
    return minimising_corners(a, lo, hi)


def distinct_points(parts: Sequence[Tensor]) -> Tensor | None:
    """The points of ``parts`` (each ``(P_i, n)``) without repeats, first occurrence first;
    None when there are none."""
    parts = [p for p in parts if p.shape[0]]
    if not parts:
        return None
    points = torch.cat(parts)
    _, inverse = torch.unique(points, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), points.shape[0], dtype=torch.long, device=points.device)
    first.scatter_reduce_(0, inverse, torch.arange(points.shape[0], device=points.device), "amin")
    return points[torch.sort(first).values]
