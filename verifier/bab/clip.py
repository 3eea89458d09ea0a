"""Shrinking a sub-box to the part where a counterexample can still be (domain clipping).

CROWN bounds each spec row ``g_r(x) = C_r y(x) - d_r`` of a clause from below by a linear
function of the input, ``g_r(x) >= a_r·x + b_r`` on the box, and certifies the bound
``B_r <= min_box(a_r·x) + b_r``. A counterexample of the clause has every ``g_r(x) <= 0``, so
it lies where ``a_r·x <= S_r - B_r`` with ``S_r = sum_j min(a_rj l_j, a_rj u_j)`` (exact
arithmetic). Taking the other dimensions at their minimising ends, for each dimension ``j``:

    a_rj > 0:  x_j <= l_j + (-B_r) / a_rj          a_rj < 0:  x_j >= u_j - (-B_r) / |a_rj|

which is the tightest box around ``box ∩ {a_r·x <= S_r - B_r}``. A clause's counterexamples
lie in the intersection of its rows' boxes (an empty one refutes the clause on the box), and
the domain's in the hull of its open clauses' boxes. Each new end is rounded outward, so the
clipped box contains every counterexample of the original one: it is a sub-box, so the
intermediate bounds and row bounds known on the original box still hold on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.rounding import unit_roundoff


def clip_boxes(lower: Tensor, upper: Tensor, coefficients: Tensor, rows: Tensor,
               open_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Clips boxes to the part where their open clauses can still be violated.

    Args:
        lower, upper: boxes ``(M, n)`` (float64).
        coefficients: input coefficients ``(M, K, R, n)`` of CROWN's linear lower bound of
            each spec row on its box.
        rows: the certified lower bounds ``(M, K, R)`` of those rows *from those same linear
            bounds* (not improved by other means; padding rows ``-inf``).
        open_: the clauses ``(M, K)`` not refuted yet.

    Returns:
        the clipped boxes ``(M, n)`` and the clauses still open ``(M, K)`` (those whose
        clipped box came out empty are refuted). A box whose clauses are all refuted keeps
        its original ends.

    Soundness: see the module docstring; every point of the original box at which an open
    clause holds (all its rows ``<= 0``) lies in the clipped box.
    """
    lo, hi = lower.unsqueeze(1).unsqueeze(1), upper.unsqueeze(1).unsqueeze(1)  # (M, 1, 1, n)
    slack = torch.where(torch.isfinite(rows) & (rows < 0), -rows, torch.inf).unsqueeze(3)  # (M, K, R, 1)
    a = coefficients
    span = torch.where(a != 0, slack / a.abs(), torch.inf)  # how far from the minimising end
    u = unit_roundoff(torch.float64)
    pos_hi = lo + span
    neg_lo = hi - span
    pos_hi = pos_hi + 4 * u * (lo.abs() + span)  # outward: covers the rounding of + and /
    neg_lo = neg_lo - 4 * u * (hi.abs() + span)
    row_hi = torch.where(a > 0, torch.minimum(pos_hi, hi), hi)
    row_lo = torch.where(a < 0, torch.maximum(neg_lo, lo), lo)
    clause_lo = row_lo.amax(dim=2)  # (M, K, n)
    clause_hi = row_hi.amin(dim=2)
    empty = (clause_lo > clause_hi).any(dim=2)
    still_open = open_ & ~empty
    weight = still_open.unsqueeze(2)
    new_lo = torch.where(weight, clause_lo, torch.inf).amin(dim=1)
    new_hi = torch.where(weight, clause_hi, -torch.inf).amax(dim=1)
    any_open = still_open.any(dim=1, keepdim=True)
    new_lo = torch.where(any_open, torch.maximum(new_lo, lower), lower)
    new_hi = torch.where(any_open, torch.minimum(new_hi, upper), upper)
    return new_lo, new_hi, still_open
