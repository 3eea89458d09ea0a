"""What both branch-and-bound searches share: statistics, outcome, and the concrete checks
(candidate points and PGD inside domains, confirmed by onnxruntime)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.attack.linear_step import linear_steps
from verifier.attack.pgd import MarginObjective
from verifier.graph.torch_graph import TorchGraph
from verifier.result import Status
from verifier.spec.types import Region

Confirm = Callable[[np.ndarray], bool]


@dataclass
class BabStats:
    """Counters of a branch-and-bound run (reported in ``--json``)."""

    domains_bounded: int = 0
    domains_proven: int = 0
    rounds: int = 0
    max_queue: int = 0
    unsplittable: int = 0
    candidates_checked: int = 0
    seconds_bounding: float = 0.0
    seconds_searching: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {k: v for k, v in vars(self).items() if k != "extra"}
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class BabOutcome:
    """``status`` is UNSAT (every sub-box refuted), SAT (a point was confirmed by onnxruntime),
    UNKNOWN (gave up: stack limit or unsplittable boxes) or TIMEOUT."""

    status: Status
    stats: BabStats


class CandidateSearch:
    """Concrete checks inside domains: candidate points and PGD, confirmed by onnxruntime.

    Only ``confirm`` (the onnxruntime re-check of a flattened point) decides; a point is
    offered to it only when its margin in the attack precision is <= 0.
    """

    def __init__(self, tgraph: TorchGraph, region: Region, confirm: Confirm, stats: BabStats,
                 candidates_per_round: int, pgd_steps: int, stepped_per_round: int) -> None:
        """``stepped_per_round``: of an offer's points that violate nothing, the ones with the
        least margin also take linearised steps (:mod:`verifier.attack.linear_step`), when the
        nearest of them is nearer than every point stepped from before (a step costs a few
        backward passes and an LP: on ACAS Xu, taken every round, 2-8 % of the run)."""
        self.tgraph, self.confirm, self.stats = tgraph, confirm, stats
        self.candidates_per_round, self.pgd_steps = candidates_per_round, pgd_steps
        self.stepped_per_round = stepped_per_round
        self.nearest_miss = float("inf")  # the least margin of a point stepped from so far
        self.objective = MarginObjective(region, tgraph.place.device, tgraph.place.dtype)
        place = tgraph.place
        self.lower = torch.as_tensor(region.lower, dtype=place.dtype, device=place.device)
        self.upper = torch.as_tensor(region.upper, dtype=place.dtype, device=place.device)

    def offer(self, points: Tensor, step: bool = True) -> bool:
        """Sends the most violating of the flattened ``points`` (margin <= 0) to confirm, at most
        ``candidates_per_round``; when none is confirmed (and ``step``), the
        ``stepped_per_round`` nearest misses take linearised steps and are offered in turn, if
        the nearest is nearer than every point stepped from before.
        True once one is confirmed."""
        start = time.monotonic()
        try:
            found, margins = self._confirm_violating(points)
            if found or not step:
                return found
            near = torch.argsort(margins)[: self.stepped_per_round]
            near = near[torch.isfinite(margins[near])]
            if near.numel() == 0 or not float(margins[near[0]]) < self.nearest_miss:
                return False
            self.nearest_miss = float(margins[near[0]])
            moved = linear_steps(self.tgraph, self.objective, points[near], self.lower, self.upper)
            self.stats.extra["linear_steps"] = self.stats.extra.get("linear_steps", 0) + near.numel()
            return self._confirm_violating(moved.to(points.dtype))[0]
        finally:
            self.stats.seconds_searching += time.monotonic() - start

    def _confirm_violating(self, points: Tensor) -> tuple[bool, Tensor]:
        """Whether one of the ``candidates_per_round`` most violating ``points`` (margin <= 0)
        is confirmed; and every point's margin."""
        with torch.no_grad():
            margins = self.objective(self.tgraph.forward_flat(points.to(self.tgraph.place.dtype)))
        for i in torch.argsort(margins)[: self.candidates_per_round].tolist():
            if not float(margins[i]) <= 0:
                break
            self.stats.candidates_checked += 1
            if self.confirm(points[i].detach().to(torch.float64).cpu().numpy()):
                return True, margins
        return False, margins

    def pgd(self, lower: Tensor, upper: Tensor, start: Tensor) -> bool:
        """Signed-gradient descent on the margin from ``start``, each point kept inside its own
        box ``[lower, upper]`` (all ``(B, n)``); the end points are offered."""
        begin = time.monotonic()
        dtype = self.tgraph.place.dtype
        lo, hi = lower.to(dtype), upper.to(dtype)
        x = start.to(dtype).clone()
        step = (hi - lo) / 8
        for _ in range(self.pgd_steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                margin = self.objective(self.tgraph.forward_flat(x))
                (grad,) = torch.autograd.grad(margin.sum(), x)
            x = torch.minimum(torch.maximum(x.detach() - step * grad.sign(), lo), hi)
            step = step * 0.8
        self.stats.seconds_searching += time.monotonic() - begin
        return self.offer(x.detach().to(lower.dtype))


def hardest_rows(rows: Tensor, open_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For row bounds ``(M, K, R)``: the clauses still open ``(M, K)``, the hardness ``(M,)``
    (the hardest open clause's best row; +inf when none is open) and that row's flat index
    ``k * R + r`` ``(M,)``."""
    still_open = open_ & ~(rows > 0).any(dim=2)
    best_row, row_index = rows.max(dim=2)
    best_row = torch.where(still_open, best_row, torch.inf)
    hardness, clause = best_row.min(dim=1)
    row = row_index.gather(1, clause.unsqueeze(1)).squeeze(1)
    return still_open, hardness, clause * rows.shape[2] + row
