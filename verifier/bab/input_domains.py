"""The domains of input-split branch and bound and how they are halved.

A :class:`Domains` batch holds sub-boxes of a region's proof box with what the search knows
on each (open clauses, intermediate and spec-row bounds, the next split dimension, the stall
count). :func:`split_one` halves each box along its chosen dimension; :func:`split_all`
halves it along every dimension for strong branching and returns the selector that keeps, per
box, the pair of halves to go on with.

Soundness: the two halves of a box, ``[l, m]`` and ``[m, u]`` along one dimension, cover it;
a box's intermediate and row bounds hold on its halves, so the children carry them as priors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from verifier.bounds.forward import free_dimensions

Prior = dict[str, tuple[Tensor, Tensor]]



class Children(NamedTuple):
    """Children to bound: lower and upper corners, open clauses, priors, their parent's row
    bounds and stall count, for strong branching the selector of the children to keep (given
    their hardness), and their parent's proof-log node (:mod:`verifier.certificate.log`)."""

    lower: Tensor
    upper: Tensor
    open: Tensor
    prior: Prior
    rows: Tensor
    stall: Tensor
    pick: Callable[[Tensor], Tensor] | None
    node: Tensor


@dataclass(frozen=True)
class Domains:
    """A batch of sub-boxes ``(M, n)``, their open clauses ``(M, K)``, the dimension each splits
    next ``(M,)``, their intermediate bounds (name -> ``(M, size)`` pairs), their certified
    spec-row bounds ``(M, K, R)`` (both valid for their sub-boxes too) and the generations
    each has stalled ``(M,)``, and each one's node in the proof log ``(M,)`` (-1 when none is
    kept)."""

    lower: Tensor
    upper: Tensor
    open: Tensor
    dim: Tensor
    prior: Prior
    rows: Tensor
    stall: Tensor
    node: Tensor

    @property
    def size(self) -> int:
        """The number of boxes ``M``."""
        return int(self.lower.shape[0])


def select_domains(d: Domains, index: Tensor | slice) -> Domains:
    """The domains at ``index`` (a mask, indices or a slice)."""
    return Domains(d.lower[index], d.upper[index], d.open[index], d.dim[index],
                   {k: (v[0][index], v[1][index]) for k, v in d.prior.items()}, d.rows[index], d.stall[index],
                   d.node[index])


def cat_domains(parts: list[Domains]) -> Domains:
    """The batches ``parts`` (at least one, with the same prior names) as one."""
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].prior.keys()
    return Domains(torch.cat([p.lower for p in parts]), torch.cat([p.upper for p in parts]),
                   torch.cat([p.open for p in parts]), torch.cat([p.dim for p in parts]),
                   {k: (torch.cat([p.prior[k][0] for p in parts]), torch.cat([p.prior[k][1] for p in parts]))
                    for k in keys}, torch.cat([p.rows for p in parts]), torch.cat([p.stall for p in parts]),
                   torch.cat([p.node for p in parts]))


def pop_domains(stack: list[Domains], count: int) -> Domains:
    """Removes up to ``count`` domains from the top of a non-empty stack (depth first)."""
    parts: list[Domains] = []
    taken = 0
    while stack and taken < count:
        top = stack.pop()
        need = count - taken
        if top.size > need:
            stack.append(select_domains(top, slice(0, top.size - need)))
            top = select_domains(top, slice(top.size - need, top.size))
        parts.append(top)
        taken += top.size
    return cat_domains(parts)


def row_hardness(rows: Tensor, open_: Tensor) -> Tensor:
    """The bound ``(M,)`` of the best row of the hardest open clause (+inf: none open)."""
    best = torch.where(open_, rows.amax(dim=2), torch.inf)
    return best.amin(dim=1)


def split_one(batch: Domains) -> tuple[Children | None, int]:
    """Halves each box along its chosen dimension: the children (lower halves, then upper
    halves) with their parent's open clauses, priors, rows and stall counts (None when no box
    can be halved), and how many boxes could not be halved (they are dropped: the caller must
    not conclude ``unsat`` when there are any)."""
    lo, hi, dim = batch.lower, batch.upper, batch.dim
    rows = torch.arange(batch.size, device=lo.device)
    mid_value = lo[rows, dim] + (hi[rows, dim] - lo[rows, dim]) / 2
    splittable = (mid_value > lo[rows, dim]) & (mid_value < hi[rows, dim])
    unsplittable = int((~splittable).sum())
    batch, mid_value = select_domains(batch, splittable), mid_value[splittable]
    if batch.size == 0:
        return None, unsplittable
    lo, hi, dim = batch.lower, batch.upper, batch.dim
    rows = torch.arange(batch.size, device=lo.device)
    left_hi, right_lo = hi.clone(), lo.clone()
    left_hi[rows, dim] = mid_value
    right_lo[rows, dim] = mid_value
    prior = {k: (torch.cat([v[0], v[0]]), torch.cat([v[1], v[1]])) for k, v in batch.prior.items()}
    return Children(torch.cat([lo, right_lo]), torch.cat([left_hi, hi]), torch.cat([batch.open, batch.open]), prior,
                    torch.cat([batch.rows, batch.rows]), torch.cat([batch.stall, batch.stall]), None,
                    torch.cat([batch.node, batch.node])), unsplittable


def split_floor(root_width: Tensor, relative: float = 1e-6) -> Tensor:
    """Per input dimension ``(n,)``, the width below which a box is not halved along it any
    more: ``relative`` times the root box's width along the free dimensions
    (:func:`verifier.bounds.forward.free_dimensions`, the forms' rule), +inf along the others
    (fixed inputs, and those that only rounding to the input type widened, such as a fixed
    pixel between two float32 neighbours: splitting them cannot help)."""
    free = free_dimensions(root_width.unsqueeze(0), relative)
    return torch.where(free, root_width * relative, torch.inf)


def split_all(batch: Domains, floor: Tensor) -> tuple[Children | None, int]:
    """Strong branching: both halves of each box along every free dimension (finite ``floor``
    ``(n,)``, see :func:`split_floor`; ``k`` of them) that is wider than its floor and can be
    halved (``(M, 2k)`` children: lower halves, then upper halves, box by box), and the selector
    that keeps, per box, the two halves of the dimension with the largest summed hardness of
    its halves (a refuted half counts 0, its best possible value). The sum, not the worse half
    alone: near a hard point one half keeps the parent's hardness whatever the dimension, and
    the worse half alone then picks dimensions by rounding noise. Also returns how many boxes
    could not be halved (dropped, as in :func:`split_one`)."""
    dims = torch.isfinite(floor).nonzero().reshape(-1)
    lo, hi = batch.lower[:, dims], batch.upper[:, dims]
    k = int(dims.numel())
    mid = lo + (hi - lo) / 2
    eligible = (mid > lo) & (mid < hi) & (hi - lo > floor[dims])
    splittable = eligible.any(dim=1)
    unsplittable = int((~splittable).sum())
    batch, mid, eligible = select_domains(batch, splittable), mid[splittable], eligible[splittable]
    m = batch.size
    if m == 0:
        return None, unsplittable
    idx = torch.arange(k, device=lo.device)
    child_lo = batch.lower.unsqueeze(1).repeat(1, 2 * k, 1)
    child_hi = batch.upper.unsqueeze(1).repeat(1, 2 * k, 1)
    child_hi[:, idx, dims] = mid
    child_lo[:, k + idx, dims] = mid
    n = batch.lower.shape[1]
    prior = {key: (v[0].repeat_interleave(2 * k, dim=0), v[1].repeat_interleave(2 * k, dim=0))
             for key, v in batch.prior.items()}
    # the smear's dimension as a position among the free ones (-1: not free)
    position = torch.full((n,), -1, dtype=torch.long, device=lo.device)
    position[dims] = idx
    fallback = position[batch.dim]

    def pick(found: Tensor) -> Tensor:
        # a refuted half (hardness +inf) counts 0: an open one's hardness is at most 0
        score = found.reshape(m, 2, k).clamp(max=0.0).sum(dim=1)
        score = torch.where(eligible, score, -torch.inf)
        top = score.amax(dim=1, keepdim=True)
        # ties (e.g. every dimension equally hopeless) keep the smear's dimension when eligible
        usable = fallback >= 0
        safe = fallback.clamp(min=0).unsqueeze(1)
        keep = usable.unsqueeze(1) & eligible.gather(1, safe) & (score.gather(1, safe) >= top)
        dim = torch.where(keep.squeeze(1), fallback, score.argmax(dim=1))
        base = torch.arange(m, device=lo.device) * 2 * k
        return torch.cat([base + dim, base + k + dim])

    return Children(child_lo.reshape(m * 2 * k, n), child_hi.reshape(m * 2 * k, n),
                    batch.open.repeat_interleave(2 * k, dim=0), prior, batch.rows.repeat_interleave(2 * k, dim=0),
                    batch.stall.repeat_interleave(2 * k, dim=0), pick,
                    batch.node.repeat_interleave(2 * k, dim=0)), unsplittable
