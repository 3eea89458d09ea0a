"""Random sampling and projected gradient descent on the spec's violation margin.

The margin of a point is ``min over clauses of max over rows (C_r y - d_r)``: it is <= 0
exactly when some clause holds, i.e. when the point is a counterexample. Sampling and PGD
minimise it over the region's box, batched over restarts. Points whose margin is <= 0 in
torch are only *candidates*: ``confirm`` (the onnxruntime re-check) decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.objective import stack_clauses
from verifier.config import AttackConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Region

Confirm = Callable[[np.ndarray], bool]
_CANDIDATES_PER_CHECK = 4


@dataclass
class FalsifyStats:
    """Counters of one falsification run."""

    evaluated: int = 0
    pgd_steps: int = 0
    candidates_checked: int = 0
    best_margin: float = float("inf")


@dataclass
class AttackProgress:
    """Where a region's falsification stopped, so that a later call resumes there instead of
    drawing again what was drawn: the first round not completed, the points of its sample
    drawn so far and the best ``restarts`` of them with their margins (None: none yet)."""

    round: int = 0
    drawn: int = 0
    best_x: Tensor | None = None
    best_m: Tensor | None = None

    def next(self) -> None:
        """Marks the current round completed."""
        self.round, self.drawn, self.best_x, self.best_m = self.round + 1, 0, None, None


class MarginObjective:
    """The violation margin of a region, batched: ``(B, m) outputs -> (B,) margins``."""

    def __init__(self, region: Region, device: torch.device, dtype: torch.dtype) -> None:
        self.trivial = any(c.num_rows == 0 for c in region.clauses)
        self.c, d, self.mask, _ = stack_clauses(region.clauses, device, dtype)
        self.d = d.to(dtype)  # the margin only ranks points: the oracle re-checks every candidate

    def __call__(self, y: Tensor) -> Tensor:
        return self.with_violation(y)[0]

    def with_violation(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """The margins ``(B,)`` and the summed violations ``(B,)``: per clause the sum over its
        rows of ``max(0, row + 1e-4 (1 + |d|))`` (zero only a little inside every bound),
        least over the clauses; a smooth target where a point must satisfy several rows."""
        if self.trivial or self.c.shape[0] == 0:
            fill = -torch.inf if self.trivial else torch.inf
            margin = torch.full((y.shape[0],), fill, dtype=y.dtype, device=y.device)
            return margin, margin
        rows = self.rows(y)
        offset = torch.where(torch.isfinite(self.d), 1e-4 * (1 + self.d.abs()), 0.0)
        pushed = torch.relu(rows + offset).masked_fill(~self.mask, 0.0).sum(dim=2)
        return rows.amax(dim=2).amin(dim=1), pushed.amin(dim=1)

    def rows(self, y: Tensor) -> Tensor:
        """The rows ``C y - d`` of every clause ``(B, K, R)``, ``-inf`` at padded rows (a clause
        is violated where all of its rows are ``<= 0``)."""
        rows = torch.einsum("krm,bm->bkr", self.c.to(y.dtype), y) - self.d.to(y.dtype)
        return rows.masked_fill(~self.mask, -torch.inf)


def batch_size(tgraph: TorchGraph, cfg: AttackConfig) -> int:
    """Points per batch so that one batch's activations fit ``cfg.batch_memory`` bytes."""
    graph = tgraph.graph
    per_point = sum(int(np.prod(shape)) for shape in graph.shapes.values()) + graph.input_size
    itemsize = torch.finfo(tgraph.place.dtype).bits // 8
    fits = cfg.batch_memory // max(1, per_point * itemsize * 2)  # x2: autograd keeps activations
    return int(min(cfg.max_batch, max(16, fits)))


class _Search:
    """State shared by the sampling and PGD phases of one region."""

    def __init__(self, tgraph: TorchGraph, region: Region, cfg: AttackConfig, deadline: Deadline,
                 confirm: Confirm, gen: torch.Generator) -> None:
        place = tgraph.place
        self.tgraph, self.cfg, self.deadline, self.confirm, self.gen = tgraph, cfg, deadline, confirm, gen
        self.lower = torch.as_tensor(region.lower, dtype=place.dtype, device=place.device)
        self.upper = torch.as_tensor(region.upper, dtype=place.dtype, device=place.device)
        self.width = self.upper - self.lower
        self.objective = MarginObjective(region, place.device, place.dtype)
        self.stats = FalsifyStats()
        self.found: np.ndarray | None = None
        self.batch = batch_size(tgraph, cfg)

    def uniform(self, count: int) -> Tensor:
        """``count`` points drawn uniformly from the box."""
        noise = torch.rand((count, self.lower.numel()), generator=self.gen, dtype=torch.float64)
        return self.lower + noise.to(self.lower) * self.width

    def margins(self, x: Tensor) -> Tensor:
        """Margins of a batch of points, evaluated in chunks of ``max_batch``."""
        return self.targets(x)[0]

    def targets(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Margins and summed violations (:meth:`MarginObjective.with_violation`) of a batch of
        points, evaluated in chunks of ``max_batch``."""
        parts = [self.objective.with_violation(self.tgraph.forward_flat(chunk)) for chunk in x.split(self.batch)]
        self.stats.evaluated += x.shape[0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def offer(self, x: Tensor, margin: Tensor) -> bool:
        """Sends the best points with margin <= 0 to ``confirm``; True once one is confirmed."""
        margin = margin.detach()
        best = float(margin.min())
        self.stats.best_margin = min(self.stats.best_margin, best)
        if not best <= 0:
            return False
        order = torch.argsort(margin)[:_CANDIDATES_PER_CHECK]
        for i in order.tolist():
            if not float(margin[i]) <= 0:
                break
            point = x[i].detach().to(torch.float64).cpu().numpy()
            self.stats.candidates_checked += 1
            if self.confirm(point):
                self.found = point
                return True
        return False

    def sample(self, count: int, progress: AttackProgress) -> Tensor:
        """Draws uniform points (the box centre first) until ``count`` are drawn in this round
        (``progress`` counts and keeps them across calls); returns the best ``restarts``, or
        the confirmed counterexample's batch."""
        with torch.no_grad():
            best_x = self._keep_best(progress)[0]
            while progress.drawn < count and not self.deadline.expired():
                points = self.uniform(min(count - progress.drawn, self.batch))
                progress.drawn += points.shape[0]
                margin = self.margins(points)
                if self.offer(points, margin):
                    return points
                best_x = self._keep_best(progress, points, margin)[0]
        return best_x.clone()

    def _keep_best(self, progress: AttackProgress, points: Tensor | None = None,
                   margin: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The round's best ``restarts`` points and margins (the box centre's first), with
        ``points`` and their ``margin`` merged in when given; stored in ``progress``."""
        if progress.best_x is None or progress.best_m is None:
            progress.best_x = ((self.lower + self.upper) / 2).unsqueeze(0)
            progress.best_m = self.margins(progress.best_x)
        if points is not None and margin is not None:
            best_x, best_m = torch.cat([progress.best_x, points]), torch.cat([progress.best_m, margin])
            keep = torch.argsort(best_m)[: self.cfg.restarts]
            progress.best_x, progress.best_m = best_x[keep], best_m[keep]
        return progress.best_x, progress.best_m

    def guide(self, points: Tensor, progress: AttackProgress) -> bool:
        """Offers ``points`` (flattened, e.g. :mod:`verifier.attack.guides`' corners) and keeps
        the best of them, with the round's best points so far, as PGD starts; True once one is
        confirmed."""
        with torch.no_grad():
            points = points.to(self.lower).reshape(points.shape[0], -1)
            points = torch.minimum(torch.maximum(points, self.lower), self.upper)
            margin = self.margins(points)
            if self.offer(points, margin):
                return True
            self._keep_best(progress, points, margin)
        return False

    def pgd(self, x: Tensor) -> bool:
        """PGD from the points ``x``, restart ``i`` with member ``i % (k + a + w)`` of the
        portfolio ``step_fractions + adam_rates + walk_rates``: signed steps on the margin
        (initial step that fraction of the box width, decaying), Adam steps on the summed
        violations (learning rate that fraction of the width) or a random walk on the margin
        (:class:`_Walk`); True once a candidate is confirmed."""
        cfg = self.cfg
        steps = max(1, cfg.steps)
        decay = 0.01 ** (1.0 / max(steps, 100))
        members = torch.tensor(cfg.step_fractions + cfg.adam_rates + cfg.walk_rates, dtype=self.width.dtype,
                               device=self.width.device)
        chosen = torch.arange(x.shape[0], device=members.device) % members.numel()
        step = members[chosen].unsqueeze(1) * self.width
        adam = (chosen >= len(cfg.step_fractions)).unsqueeze(1)
        walk = _Walk(x, chosen >= len(cfg.step_fractions) + len(cfg.adam_rates), step, self.gen)
        adam &= ~walk.rows
        moments = torch.zeros_like(x), torch.zeros_like(x)
        for t in range(1, steps + 1):
            if self.deadline.expired():
                return False
            x.requires_grad_(True)
            margin, violation = self.targets(x)
            (grad,) = torch.autograd.grad(torch.where(adam.squeeze(1), violation, margin).sum(), x)
            if self.offer(x, margin):
                return True
            with torch.no_grad():
                moments = _adam_moments(moments, grad)
                move = torch.where(adam, step * _adam_direction(moments, t), step * grad.sign())
                x = torch.minimum(torch.maximum(x - move, self.lower), self.upper)
                if walk.active:
                    x = torch.where(walk.rows, walk.propose(margin, self.lower, self.upper), x)
            step = torch.where(adam, step, step * decay)
            self.stats.pgd_steps += 1
        with torch.no_grad():
            return self.offer(x, self.margins(x))


class _Walk:
    """The gradient-free members of the PGD portfolio (:attr:`AttackConfig.walk_rates`): per row,
    the best point so far and a step (per coordinate, a fraction of the box width); each
    proposal moves the best point by Gaussian noise on a random subset of about 1, 2, 4 or 8
    coordinates (by row, in turn; all of them for small inputs). A proposal whose margin is no
    worse becomes the best point (ties too, so the walk drifts across the plateaus of step
    networks) and the step grows by 1.5; otherwise it shrinks by 0.7 (down to 1e-4 of its start)."""

    def __init__(self, x: Tensor, rows: Tensor, step: Tensor, gen: torch.Generator) -> None:
        self.rows = rows.unsqueeze(1)
        self.best = x.detach().clone()
        self.best_m = torch.full((x.shape[0],), torch.inf, dtype=x.dtype, device=x.device)
        self.step, self.floor, self.gen = step.clone(), step * 1e-4, gen
        counts = 2.0 ** (torch.cumsum(rows.long(), 0) % 4).to(x.dtype)  # 1, 2, 4, 8 coordinates
        self.share = (counts / max(1, x.shape[1])).clamp(max=1.0).unsqueeze(1).cpu()
        self.last: Tensor | None = None
        self.active = bool(rows.any())

    def propose(self, margin: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
        """Takes the margins of the rows' current points (the last proposals; the starts at
        first) and returns the next proposals."""
        current = self.best if self.last is None else self.last
        better = (margin.detach() <= self.best_m).unsqueeze(1)
        self.best = torch.where(better, current, self.best)
        self.best_m = torch.where(better.squeeze(1), margin.detach(), self.best_m)
        self.step = torch.maximum(torch.where(better, self.step * 1.5, self.step * 0.7), self.floor)
        noise = torch.randn(self.best.shape, generator=self.gen, dtype=torch.float64).to(self.best)
        chosen = torch.rand(self.best.shape, generator=self.gen) < self.share
        proposal = self.best + self.step * noise * chosen.to(self.best)
        self.last = torch.minimum(torch.maximum(proposal, lower), upper)
        return self.last


def _adam_moments(moments: tuple[Tensor, Tensor], grad: Tensor) -> tuple[Tensor, Tensor]:
    """Adam's running first and second moments of the gradient (0.9, 0.999)."""
    return 0.9 * moments[0] + 0.1 * grad, 0.999 * moments[1] + 0.001 * grad * grad


def _adam_direction(moments: tuple[Tensor, Tensor], t: int) -> Tensor:
    """Adam's bias-corrected step direction at step ``t`` (entries of magnitude about 1)."""
    first, second = moments[0] / (1 - 0.9**t), moments[1] / (1 - 0.999**t)
    return first / (second.sqrt() + 1e-12)


def falsify_region(tgraph: TorchGraph, region: Region, cfg: AttackConfig, deadline: Deadline,
                   confirm: Confirm, seed: int | torch.Generator,
                   progress: AttackProgress | None = None, guides: Tensor | None = None
                   ) -> tuple[np.ndarray | None, FalsifyStats]:
    """Searches ``region`` for a counterexample that ``confirm`` accepts.

    Args:
        tgraph: the model in the attack precision, on the configured device.
        region: the input box and output clauses.
        cfg: the sampling/PGD budget.
        deadline: stops the search when reached.
        confirm: the onnxruntime re-check; gets a flattened float64 point.
        seed: seeds the random starts (reproducible runs); a generator is used as is, so a
            caller can continue one random stream across calls.
        progress: where an earlier call on this region stopped (updated in place): the
            search resumes in the round it was in, with the points it had drawn, so that a
            round cut by the deadline is not drawn again (None: from round 0).
        guides: points ``(P, n)`` to offer first and to start PGD from when they are among the
            round's best (the corners of certified linear bounds, :mod:`verifier.attack.guides`).

    Returns:
        the confirmed point (or None) and counters.
    """
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    deadline = deadline.sooner(cfg.time_limit)
    search = _Search(tgraph, region, cfg, deadline, confirm, gen)
    progress = progress if progress is not None else AttackProgress()
    if guides is not None and guides.shape[0] and search.guide(guides, progress):
        return search.found, search.stats
    while progress.round < cfg.rounds and not deadline.expired():
        count = cfg.samples * cfg.growth**progress.round
        starts = search.sample(count, progress)
        if search.found is not None or search.pgd(starts):
            break
        if deadline.expired():  # PGD cut short: the round runs its PGD again when resumed
            break
        progress.next()
    return search.found, search.stats
