"""Certified lower bounds of spec rows ``C_r y - d_r`` from output bounds."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.rounding import unit_roundoff
from verifier.deadline import Deadline
from verifier.spec.types import Clause

_UNIT64 = 2.0**-53


def clause_row_lower(clause: Clause, y_lower: Tensor, y_upper: Tensor) -> Tensor:
    """Lower bounds of every row ``C_r y - d_r`` over the output box, for a batch of boxes.

    Computed in float64 as ``C+ y_lo + C- y_hi - d``, then lowered by a bound on the float64
    rounding of that computation, so the result is a certified lower bound for every ``y``
    in the box. Returns ``(B, rows)``.
    """
    c = torch.as_tensor(clause.C, dtype=torch.float64, device=y_lower.device)
    d = torch.as_tensor(clause.d, dtype=torch.float64, device=y_lower.device)
    lo, hi = y_lower.to(torch.float64), y_upper.to(torch.float64)
    pos, neg = c.clamp(min=0), c.clamp(max=0)
    with torch.no_grad():
        value = lo @ pos.T + hi @ neg.T - d
        mag = torch.maximum(lo.abs(), hi.abs())
        scale = mag @ c.abs().T + d.abs()
    gamma = (c.shape[1] + 2) * _UNIT64 / (1 - (c.shape[1] + 2) * _UNIT64)
    return torch.nan_to_num(value - gamma * scale, nan=-torch.inf)


def clause_refuted(clause: Clause, y_lower: Tensor, y_upper: Tensor) -> Tensor:
    """``(B,)`` bool: True where some row of the clause is certainly violated (> 0).

    A clause with no rows is never refuted (its output part is trivially true).
    """
    if clause.num_rows == 0:
        return torch.zeros(y_lower.shape[0], dtype=torch.bool, device=y_lower.device)
    rows = clause_row_lower(clause, y_lower, y_upper)
    return (rows > 0).any(dim=1)


def stack_clauses(clauses: tuple[Clause, ...], device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Pads the clauses of a region into ``C (K, R, m)``, ``d (K, R)`` and a row mask ``(K, R)``."""
    rows = max((c.num_rows for c in clauses), default=0)
    width = clauses[0].C.shape[1] if clauses else 0
    cs = np.zeros((len(clauses), rows, width))
    ds = np.zeros((len(clauses), rows))
    mask = np.zeros((len(clauses), rows), dtype=bool)
    for k, clause in enumerate(clauses):
        cs[k, : clause.num_rows] = clause.C
        ds[k, : clause.num_rows] = clause.d
        mask[k, : clause.num_rows] = True
    def move(a: np.ndarray, t: torch.dtype) -> Tensor:
        return torch.as_tensor(a, dtype=t, device=device)

    return move(cs, dtype), move(ds, dtype), move(mask, torch.bool)


def spec_rows(raw: Tensor, d: Tensor, mask: Tensor | None = None) -> Tensor:
    """Certified lower bounds of ``C_r y - d_r`` from certified lower bounds ``raw`` of ``C_r y``
    (float64): ``raw - d`` lowered by the rounding of that subtraction; padded rows (``mask``
    False, broadcast against ``raw``) become ``-inf`` (they never refute a clause)."""
    d = d.to(dtype=raw.dtype, device=raw.device)
    rows = raw - d - 2 * unit_roundoff(torch.float64) * (raw.abs() + d.abs())
    return rows if mask is None else torch.where(mask, rows, -torch.inf)


def crown_rows(crown: Crown, clause: Clause, optimise: bool = False, deadline: Deadline | None = None) -> torch.Tensor:
    """Certified lower bounds ``(N, rows)`` of ``C_r y - d_r`` by CROWN, or by alpha-CROWN with
    ``optimise`` (stopping once a row is positive); the rounding of ``- d`` is included."""
    c = torch.as_tensor(clause.C)
    d = torch.as_tensor(clause.d)
    if optimise:
        lower = alpha_lower_bound(crown, c, AlphaConfig(stop_above=0.0), deadline, offset=-d.to(crown.tgraph.place.device))
    else:
        with torch.no_grad():
            lower = crown.lower_bound(c)
    return spec_rows(lower, d)
