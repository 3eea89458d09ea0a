"""Certified lower bounds of spec rows ``C_r y - d_r`` from output bounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.rounding import next_down
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
    bound = torch.nan_to_num(value - gamma * scale, nan=-torch.inf)
    return torch.maximum(bound, _single_term_rows(c, d, lo, hi))


def _single_term_rows(c: Tensor, d: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Tight lower bounds ``(B, rows)`` of ``C_r y - d_r`` for rows with one coefficient, a
    power of two (``±1`` in bounds like ``y_i <= d``): the product ``c y_i`` of the box end is
    exact when it is a normal float (checked), so only the subtraction rounds
    (:func:`difference_lower`). Other rows get ``-inf``."""
    if c.shape[0] == 0 or c.shape[1] == 0:
        return torch.full((lo.shape[0], c.shape[0]), -torch.inf, dtype=torch.float64, device=lo.device)
    nonzero = c != 0
    mantissa, _ = torch.frexp(c)
    single = (nonzero.sum(dim=1) == 1) & ((mantissa.abs() == 0.5) | ~nonzero).all(dim=1)
    index = nonzero.to(torch.int64).argmax(dim=1)
    coeff = c.gather(1, index.unsqueeze(1)).squeeze(1)
    end = torch.where(coeff > 0, lo[:, index], hi[:, index])
    product = end * coeff
    normal = torch.isfinite(product) & ((product == 0) == (end == 0))
    normal &= (product == 0) | (product.abs() >= torch.finfo(torch.float64).tiny)
    rows = difference_lower(product, d)
    return torch.where(single & normal, torch.nan_to_num(rows, nan=-torch.inf), -torch.inf)


def clause_refuted(clause: Clause, y_lower: Tensor, y_upper: Tensor) -> Tensor:
    """``(B,)`` bool: True where some row of the clause certainly fails (``> 0``, or ``>= 0``
    for a strict row).

    A clause with no rows is never refuted (its output part is trivially true).
    """
    if clause.num_rows == 0:
        return torch.zeros(y_lower.shape[0], dtype=torch.bool, device=y_lower.device)
    rows = clause_row_lower(clause, y_lower, y_upper)
    strict = torch.as_tensor(clause.strict, device=rows.device)
    return ((rows > 0) | (strict & (rows >= 0))).any(dim=1)


def stack_clauses(clauses: tuple[Clause, ...], device: torch.device,
                  dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pads the clauses of a region into ``C (K, R, m)`` (in ``dtype``), ``d (K, R)`` (float64,
    as the spec wrote it), a row mask ``(K, R)`` and a strict-row mask ``(K, R)``."""
    rows = max((c.num_rows for c in clauses), default=0)
    width = clauses[0].C.shape[1] if clauses else 0
    cs = np.zeros((len(clauses), rows, width))
    ds = np.zeros((len(clauses), rows))
    mask = np.zeros((len(clauses), rows), dtype=bool)
    strict = np.zeros((len(clauses), rows), dtype=bool)
    for k, clause in enumerate(clauses):
        cs[k, : clause.num_rows] = clause.C
        ds[k, : clause.num_rows] = clause.d
        mask[k, : clause.num_rows] = True
        strict[k, : clause.num_rows] = clause.strict

    def move(a: np.ndarray, t: torch.dtype) -> Tensor:
        return torch.as_tensor(a, dtype=t, device=device)

    return move(cs, dtype), move(ds, torch.float64), move(mask, torch.bool), move(strict, torch.bool)


def difference_lower(a: Tensor, b: Tensor) -> Tensor:
    """A certified lower bound of the exact ``a - b`` for float64 tensors (broadcast).

    The float difference ``s`` is kept when it is exact or rounded down, else it is stepped
    one float down; the rounding error ``(a - b) - s`` comes exactly from Knuth's TwoSum
    (round-to-nearest, no overflow). Where that error is not finite (infinite or NaN
    operands) ``s`` is stepped down too, and NaN stays NaN.
    """
    s = a - b
    bb = s - a
    err = (a - (s - bb)) + (-b - bb)
    return torch.where(err >= 0, s, next_down(s))


def spec_rows(raw: Tensor, d: Tensor, mask: Tensor | None = None, strict: Tensor | None = None) -> Tensor:
    """Refutation margins of the spec rows ``C_r y - d_r`` from certified lower bounds ``raw``
    of ``C_r y``: a value ``> 0`` means that the row certainly fails (the clause cannot hold).

    The value is ``raw - d`` computed in float64 and rounded down
    (:func:`difference_lower`), a certified lower bound of ``C_r y - d_r``; except that a
    strict row (``strict`` True: ``C_r y < d_r``) whose bound is ``>= 0`` already fails, and
    reports at least the smallest positive float64. Padded rows (``mask`` False, broadcast
    against ``raw``) become ``-inf`` (they never refute a clause).
    """
    raw = raw.to(torch.float64)
    rows = difference_lower(raw, d.to(dtype=torch.float64, device=raw.device))
    if strict is not None:
        tiny = torch.finfo(torch.float64).tiny
        rows = torch.where(strict.to(raw.device) & (rows >= 0), rows.clamp(min=tiny), rows)
    return rows if mask is None else torch.where(mask, rows, -torch.inf)


def crown_rows(crown: Crown, clause: Clause, optimise: bool = False, deadline: Deadline | None = None,
               alpha: AlphaConfig | None = None, record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Certified lower bounds ``(N, rows)`` of ``C_r y - d_r`` by CROWN, or by alpha-CROWN with
    ``optimise`` (options ``alpha``, stopping once a row is positive; ``record``: the slopes
    behind each row's bound, see :func:`~verifier.bounds.alpha.alpha_lower_bound`); the
    rounding of ``- d`` is included."""
    c = torch.as_tensor(clause.C)
    d = torch.as_tensor(clause.d)
    if optimise:
        options = replace(alpha or AlphaConfig(), stop_above=0.0)
        lower = alpha_lower_bound(crown, c, options, deadline, offset=-d.to(crown.tgraph.place.device), record=record)
    else:
        with torch.no_grad():
            lower = crown.lower_bound(c)
    return spec_rows(lower, d, strict=torch.as_tensor(clause.strict))


def joint_alpha_rows(crown: Crown, clauses: Sequence[Clause], deadline: Deadline | None = None,
                     alpha: AlphaConfig | None = None) -> list[torch.Tensor]:
    """Per clause, certified lower bounds ``(N, rows)`` of ``C_r y - d_r`` by one alpha-CROWN
    run over the rows of all ``clauses`` together (options ``alpha``): the intermediate slopes
    are optimised once for all of them, and a clause stops pulling on them once one of its
    rows is positive (the run stops when every clause has one)."""
    c = torch.cat([torch.as_tensor(clause.C) for clause in clauses])
    d = torch.cat([torch.as_tensor(clause.d) for clause in clauses])
    groups = torch.cat([torch.full((len(clause.d),), i, dtype=torch.int64) for i, clause in enumerate(clauses)])
    options = replace(alpha or AlphaConfig(), stop_above=0.0)
    lower = alpha_lower_bound(crown, c, options, deadline, offset=-d.to(crown.tgraph.place.device), groups=groups)
    rows = spec_rows(lower, d, strict=torch.cat([torch.as_tensor(clause.strict) for clause in clauses]))
    return list(rows.split([len(clause.d) for clause in clauses], dim=1))
