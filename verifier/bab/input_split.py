"""Branch and bound on the input box: split sub-boxes until CROWN refutes every clause.

A domain is a sub-box of the region's proof box with the set of clauses not yet refuted on it.
Each round pops a batch of domains, halves each along one input dimension, and bounds all the
children in one batched CROWN pass over the spec rows of their open clauses. A child is
discarded once every clause has a row with a positive certified lower bound (no counterexample
in that sub-box); the others go back on the stack with the dimension to split next: the one
with the largest ``|a_j| * width_j``, where ``a`` is the input coefficient of CROWN's linear
bound of the row closest to refuting the hardest open clause (its "smear").

Soundness: the two children of a box cover it (``[l, m]`` and ``[m, u]``), so when every
domain is refuted the whole proof box is; each refutation is a certified CROWN bound (sound for
the float32 model, see :mod:`verifier.bounds.crown`). Counterexamples: the corner minimising
each child's linear bound and the child's centre are evaluated, PGD runs inside the worst
domains from time to time, and every point that looks violating is passed to ``confirm`` (the
onnxruntime re-check); only a confirmed point ends the search with ``sat``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bab.common import BabOutcome, BabStats, CandidateSearch, Confirm
from verifier.bounds.crown import Crown
from verifier.bounds.objective import spec_rows, stack_clauses
from verifier.config import InputSplitConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause, Region


class _Bounder:
    """Bounds batches of sub-boxes against the stacked rows of a region's clauses."""

    def __init__(self, tgraph: TorchGraph, clauses: Sequence[Clause], root_width: Tensor, inherit: bool) -> None:
        self.tgraph, self.inherit = tgraph, inherit
        # dimensions narrower than this fraction of their root width are not split any more
        self.floor = root_width * 1e-6
        self.root_width = torch.where(root_width > 0, root_width, torch.ones_like(root_width))
        place = tgraph.place
        self.c, self.d, self.mask = stack_clauses(tuple(clauses), place.device, place.dtype)
        self.k, self.r = self.d.shape
        self.rows = self.c.reshape(self.k * self.r, -1)
        self.shape = tgraph.graph.inputs[0].shape

    def __call__(self, lower: Tensor, upper: Tensor, open_: Tensor,
                 prior: dict[str, tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor, Prior]:
        """For boxes ``(M, n)`` with open clauses ``(M, K)``: the clauses still open, the
        minimising corner of the hardest row's linear bound ``(M, n)``, the split dimension
        ``(M,)`` and the hardness ``(M,)`` (that row's bound: the lower, the further from
        refuted), and the intermediate bounds found (valid priors for sub-boxes)."""
        m = lower.shape[0]
        with torch.no_grad():
            crown = Crown(self.tgraph, [lower.reshape(m, *self.shape)], [upper.reshape(m, *self.shape)], prior=prior)
            raw = crown.lower_bound(self.rows).reshape(m, self.k, self.r)
            rows = spec_rows(raw, self.d, self.mask)
            still_open = open_ & ~(rows > 0).any(dim=2)
            # the hardest open clause, and its best row
            best_row, row_index = rows.max(dim=2)
            best_row = torch.where(still_open, best_row, torch.inf)
            clause = best_row.argmin(dim=1)
            row = row_index.gather(1, clause.unsqueeze(1)).squeeze(1)
            coeff = crown.input_coefficients[self.tgraph.graph.inputs[0].name].reshape(m, self.k * self.r, -1)
            a = coeff[torch.arange(m, device=lower.device), clause * self.r + row]
            width = upper - lower
            eligible = width > self.floor
            smear = torch.where(eligible, a.abs() * width, 0.0)
            relative = torch.where(eligible, width / self.root_width, 0.0)
            dim = torch.where(smear.amax(dim=1) > 0, smear.argmax(dim=1), relative.argmax(dim=1))
            corner = torch.where(a > 0, lower, upper)
            hardness = best_row.gather(1, clause.unsqueeze(1)).squeeze(1)
        return still_open, corner, dim, hardness, (crown.best if self.inherit else {})


def input_split_search(bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                lower: Tensor, upper: Tensor, confirm: Confirm, deadline: Deadline,
                config: InputSplitConfig | None = None) -> BabOutcome:
    """Input-split branch and bound over one region (see the module docstring).

    Args:
        bounds_graph: the model in the bound precision (float64), on the configured device.
        attack_graph: the model in the attack precision, same device.
        region: the region (its clauses define the violation that candidates must show).
        clauses: the region's clauses still open (not refuted on the whole box).
        lower, upper: the flattened proof box ``(1, n)`` (see :func:`verifier.problem.proof_box`).
        confirm: the onnxruntime re-check of a flattened point; True ends the search (``sat``).
        deadline: the search stops with ``timeout`` when it expires.

    Returns:
        the outcome and statistics. ``unsat`` only when every sub-box is refuted.
    """
    config = config or InputSplitConfig()
    stats = BabStats()
    if not clauses:
        return BabOutcome("unsat", stats)
    if len(bounds_graph.graph.inputs) != 1 or any(c.num_rows == 0 for c in clauses):
        return BabOutcome("unknown", stats)
    root_width = (upper - lower).reshape(-1).to(bounds_graph.place.device, torch.float64)
    bound = _Bounder(bounds_graph, clauses, root_width, config.inherit_bounds)
    search = CandidateSearch(attack_graph, region, confirm, stats, config.candidates_per_round, config.pgd_steps)
    device = bounds_graph.place.device
    lower, upper = lower.to(device, torch.float64), upper.to(device, torch.float64)
    open_ = torch.ones(1, bound.k, dtype=torch.bool, device=device)
    start = time.monotonic()
    open_, corner, dims, _, prior = bound(lower, upper, open_, {})
    stats.seconds_bounding += time.monotonic() - start
    stats.domains_bounded += 1
    keep = open_.any(dim=1)
    stack = [_select(Domains(lower, upper, open_, dims, prior), keep)]
    queued = int(keep.sum())
    if search.offer(torch.cat([corner, (lower + upper) / 2])):
        return BabOutcome("sat", stats)
    while queued:
        if deadline.expired():
            return BabOutcome("timeout", stats)
        if queued > config.max_domains:
            stats.extra["gave_up_queue"] = queued
            return BabOutcome("unknown", stats)
        batch = _pop(stack, config.batch)
        queued -= batch.size
        lo, hi, dim = batch.lower, batch.upper, batch.dim
        rows = torch.arange(batch.size, device=device)
        mid_value = lo[rows, dim] + (hi[rows, dim] - lo[rows, dim]) / 2
        splittable = (mid_value > lo[rows, dim]) & (mid_value < hi[rows, dim])
        stats.unsplittable += int((~splittable).sum())
        batch, mid_value = _select(batch, splittable), mid_value[splittable]
        if batch.size == 0:
            continue
        lo, hi, dim = batch.lower, batch.upper, batch.dim
        rows = torch.arange(batch.size, device=device)
        left_hi, right_lo = hi.clone(), lo.clone()
        left_hi[rows, dim] = mid_value
        right_lo[rows, dim] = mid_value
        child_lo, child_hi = torch.cat([lo, right_lo]), torch.cat([left_hi, hi])
        child_prior = {k: (torch.cat([v[0], v[0]]), torch.cat([v[1], v[1]])) for k, v in batch.prior.items()}
        start = time.monotonic()
        child_open, corner, child_dim, hardness, found = bound(child_lo, child_hi, torch.cat([batch.open, batch.open]),
                                                               child_prior)
        stats.seconds_bounding += time.monotonic() - start
        stats.domains_bounded += child_lo.shape[0]
        stats.rounds += 1
        keep = child_open.any(dim=1)
        stats.domains_proven += int((~keep).sum())
        if bool(keep.any()):
            children = _select(Domains(child_lo, child_hi, child_open, child_dim, found), keep)
            centres = (children.lower + children.upper) / 2
            if search.offer(torch.cat([corner[keep], centres])):
                return BabOutcome("sat", stats)
            if config.pgd_every and stats.rounds % config.pgd_every == 0:
                worst = torch.argsort(hardness[keep])[: config.pgd_domains]
                if search.pgd(children.lower[worst], children.upper[worst], corner[keep][worst]):
                    return BabOutcome("sat", stats)
            stack.append(children)
            queued += children.size
            stats.max_queue = max(stats.max_queue, queued)
    if stats.unsplittable:
        return BabOutcome("unknown", stats)
    return BabOutcome("unsat", stats)


Prior = dict[str, tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Domains:
    """A batch of sub-boxes ``(M, n)``, their open clauses ``(M, K)``, the dimension each splits
    next ``(M,)`` and their intermediate bounds (name -> ``(M, size)`` pairs), valid priors
    for their sub-boxes."""

    lower: Tensor
    upper: Tensor
    open: Tensor
    dim: Tensor
    prior: Prior

    @property
    def size(self) -> int:
        return int(self.lower.shape[0])


def _select(d: Domains, index: Tensor | slice) -> Domains:
    return Domains(d.lower[index], d.upper[index], d.open[index], d.dim[index],
                   {k: (v[0][index], v[1][index]) for k, v in d.prior.items()})


def _cat(parts: list[Domains]) -> Domains:
    if len(parts) == 1:
        return parts[0]
    keys = parts[0].prior.keys()
    return Domains(torch.cat([p.lower for p in parts]), torch.cat([p.upper for p in parts]),
                   torch.cat([p.open for p in parts]), torch.cat([p.dim for p in parts]),
                   {k: (torch.cat([p.prior[k][0] for p in parts]), torch.cat([p.prior[k][1] for p in parts]))
                    for k in keys})


def _pop(stack: list[Domains], count: int) -> Domains:
    """Removes up to ``count`` domains from the top of the stack (depth first)."""
    parts: list[Domains] = []
    taken = 0
    while stack and taken < count:
        top = stack.pop()
        need = count - taken
        if top.size > need:
            stack.append(_select(top, slice(0, top.size - need)))
            top = _select(top, slice(top.size - need, top.size))
        parts.append(top)
        taken += top.size
    return _cat(parts)
