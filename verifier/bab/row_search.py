"""Certified lower bounds of many single rows ``c_s . y`` of one network's output over one box,
by ReLU-split branch and bound (beta-CROWN, :mod:`verifier.bab.relu_split`'s bounding and
branching) with the domains of every row bounded in shared batches.

Intermediate-bound tightening (:mod:`verifier.bab.tighten`) asks, for each unstable neuron of a
layer, whether one sign holds on the whole box. One search per row spends most of its time in
rounds of a handful of domains (MNIST 256x6: 3-7 rounds of 5-10 domains per refuted side, about
0.05 s a round); here each domain carries the index of its row (``_Domains.objective``), and a
round bounds up to ``2 * batch`` domains of any rows: each open row's lowest domains first,
the rows with the fewest domains bounded so far first.

A row ends *refuted* once all of its domains are (its bound: ``+inf``, i.e. ``c_s . y > 0`` on
the box), *violated* when the input corner minimising one of its domains' linear bounds gives
``c_s . y <= 0`` (no search can refute it; the float64 forward pass only stops the work), or
*capped* after ``domains_per_bound`` domains, or with no unstable neuron left in a domain;
an ended row's bound is the lowest certified bound of its domains at that moment. The whole
search is *left* (its open rows keep their lowest bound) when a window of ``probe_seconds``
neither refuted a row per ``seconds_per_stable`` nor brought the open rows' bounds closer to
zero (median ratio of a row's bound to its bound a window before above ``gap_ratio``): rows
that stall are not worth the search's time, rows converging on zero are.

Soundness: the children of a split cover their parent and every bound is beta-CROWN's
certified bound of the domain's own row (``_BetaBounder`` with objectives), so the lowest bound
over a row's open domains bounds the row over the box; refuted domains have positive bounds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.bab.common import BabStats
from verifier.bab.domain_store import DomainStore
from verifier.bab.relu_bounding import _BetaBounder, _bound
from verifier.bab.relu_branching import _apply_split, _Brancher
from verifier.bab.relu_domains import Bounds, _batch_size, _cat, _Domains, _root, splittable_layers
from verifier.bab.relu_log import log_bounded, log_splits
from verifier.bounds.crown import Crown, CrownConfig
from verifier.certificate.log import ProofLog
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.search_config import ReluSplitConfig, TightenConfig
from verifier.spec.types import Clause


@dataclass
class RowSearchStats:
    """How the rows ended, and the work: rounds, domains bounded, seconds; ``left``: the search
    stopped by the payoff rule (``TightenConfig.probe_seconds``) with rows still open."""

    rows: int = 0
    refuted: int = 0
    violated: int = 0
    capped: int = 0
    rounds: int = 0
    domains_bounded: int = 0
    seconds: float = 0.0
    left: bool = False

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def row_lower_bounds(tgraph: TorchGraph, lower: Tensor, upper: Tensor, prior: dict[str, Bounds], rows: Tensor,
                     deadline: Deadline, config: TightenConfig, split: ReluSplitConfig | None = None,
                     log: ProofLog | None = None) -> tuple[Tensor, RowSearchStats]:
    """Certified lower bounds ``(S,)`` (float64) of ``rows[s] . y`` over the box ``lower`` ..
    ``upper`` (each ``(1, *input shape)``) for the flattened output ``y`` of ``tgraph`` (one
    input): ``+inf`` where the row is positive on the whole box, ``-inf`` where nothing is known.

    ``prior``: certified bounds of intermediate values (e.g. the tightened earlier layers);
    they are the root domain's bounds. Stops at ``deadline``, after ``config.domains_per_bound``
    domains of a row, and by the payoff rule (a window of ``probe_seconds`` that refuted fewer
    rows than one per ``seconds_per_stable`` and left the open rows' median bound above
    ``gap_ratio`` of what it was). Holds for the float32 model wherever ``prior`` does (see
    the module docstring).

    ``log``: records the search as a forest, one root per row in order (its first node ids
    are the roots), every bounded domain with its slopes and multipliers (data only)."""
    began, stats = time.monotonic(), RowSearchStats(rows=int(rows.shape[0]))
    split = split or ReluSplitConfig()
    layers = splittable_layers(tgraph)
    count = int(rows.shape[0])
    best = torch.full((count,), -torch.inf, dtype=torch.float64)
    if not layers or not count:
        return best, stats
    template = Clause(np.zeros((1, int(rows.shape[1]))), np.zeros(1), np.zeros(1, dtype=bool), exact=True)
    bounder = _BetaBounder(tgraph, layers, lower.reshape(1, -1), upper.reshape(1, -1), [template], split,
                           objectives=rows.unsqueeze(1))
    with torch.no_grad():
        root = Crown(tgraph, [lower], [upper], CrownConfig(intermediate=False), prior=prior)
    base = _root(tgraph, layers, root, 1, 1)
    every = base.repeat(count).with_state(objective=torch.arange(count, device=base.open.device),
                                          node=None if log is None else log.roots(count))
    search = _RowSearch(bounder, _Brancher(layers, bounder, split), count, config, stats, log)
    search.run(every, _batch_size(layers, tgraph, 1, split), deadline, began)
    best = search.bounds()
    stats.refuted = int((best == torch.inf).sum())
    stats.seconds = time.monotonic() - began
    return best, stats


class _RowSearch:
    """The rounds of :func:`row_lower_bounds`: the store of open domains (each with its row),
    each row's domains bounded so far and, for ended rows, the bound they ended with. Every
    domain of a row not ended is in the store or was refuted."""

    def __init__(self, bounder: _BetaBounder, brancher: _Brancher, count: int, config: TightenConfig,
                 stats: RowSearchStats, log: ProofLog | None = None) -> None:
        self.bounder, self.brancher, self.config, self.stats = bounder, brancher, config, stats
        self.log = log
        self.store = DomainStore()
        self.bounded = torch.zeros(count, dtype=torch.long)
        self.ended = torch.full((count,), torch.nan, dtype=torch.float64)  # nan: still open
        self.window: tuple[float, Tensor] = (0.0, self.ended)  # the payoff window's start, bounds then

    def run(self, roots: _Domains, batch: int, deadline: Deadline, began: float) -> None:
        """Bounds the roots (``2 * batch`` at a time; rows whose root is not bounded by
        ``deadline`` end with ``-inf``), then rounds until every row has ended, ``deadline``
        or the payoff rule (checked once per window of ``probe_seconds``)."""
        device = roots.open.device
        for start in range(0, roots.size, 2 * batch):
            if deadline.expired():
                self.ended[start:] = -torch.inf
                return
            chunk = roots.take(torch.arange(start, min(start + 2 * batch, roots.size), device=device))
            self._round(chunk, self.bounder.config.root_iterations, deadline)
        self.window = (began, self.bounds())
        while self.store.size and not deadline.expired():
            order = self._next_batch(2 * batch)
            self._round(self.store.take(order.to(device)), self.bounder.config.iterations, deadline)
            if not self._pays(time.monotonic()):
                self.stats.left = bool(self.store.size)
                return

    def _pays(self, now: float) -> bool:
        """The payoff rule: True until a window of ``probe_seconds`` has passed; then whether
        that window refuted at least one row per ``seconds_per_stable`` or brought the median
        open row's bound to at most ``gap_ratio`` of its bound at the window's start (and the
        next window starts)."""
        since, then = self.window
        if now - since < self.config.probe_seconds:
            return True
        current = self.bounds()
        gained = int((current == torch.inf).sum()) - int((then == torch.inf).sum())
        both = torch.isnan(self.ended) & torch.isfinite(current) & torch.isfinite(then) & (then < 0)
        ratio = float((current[both] / then[both]).median()) if bool(both.any()) else 1.0
        self.window = (now, current)
        return gained * self.config.seconds_per_stable >= now - since or ratio <= self.config.gap_ratio

    def bounds(self) -> Tensor:
        """Each row's certified lower bound: the ended rows' recorded bound, else the lowest
        bound of its stored domains (``+inf`` when none is left: every one was refuted)."""
        return torch.where(torch.isnan(self.ended), self._lowest(), self.ended)

    def _round(self, todo: _Domains, iterations: int, deadline: Deadline) -> None:
        """Bounds ``todo``, ends the rows found violated, capped or with a leaf, and stores the
        children of the other rows' open domains."""
        pending, corners, row = _bound(self.bounder, todo, iterations, deadline, BabStats(), self.log)
        log_bounded(self.log, pending.domains, self.bounder.layers)
        self.stats.rounds += 1
        self.stats.domains_bounded += todo.size
        self.bounded += torch.bincount(_objective(todo).cpu(), minlength=self.bounded.numel())
        objective = _objective(pending.domains).cpu()
        violated = self._violated(pending.domains, corners)
        neuron = self.brancher.choose(pending.domains, pending.coefficients, row) if pending.size else row
        ending = torch.zeros_like(self.bounded, dtype=torch.bool)
        ending[objective[violated]] = True
        self.stats.violated += int(ending.sum())
        ending[objective[neuron.cpu() < 0]] = True
        capped = (self.bounded >= self.config.domains_per_bound) & torch.isnan(self.ended) & ~ending
        self.stats.capped += int(capped.sum())
        ending |= capped
        self._end(ending, pending.domains)
        keep = ~ending[objective].to(neuron.device)
        if bool(keep.any()):
            parents, chosen = pending.domains.take(keep), neuron[keep]
            coefficients = {key: value[keep] for key, value in pending.coefficients.items()}
            layers = self.brancher.layers
            children = _cat([_apply_split(parents, layers, chosen, +1, coefficients),
                             _apply_split(parents, layers, chosen, -1, coefficients)])
            self.store.add(log_splits(self.log, parents, chosen, layers, children))

    def _violated(self, domains: _Domains, corners: Tensor) -> Tensor:
        """``(P,)``: whether the corner minimising each domain's linear bound gives its row a
        value ``<= 0`` (float64 forward pass: only stops work, never a bound)."""
        if not domains.size:
            return torch.zeros(0, dtype=torch.bool)
        tgraph = self.bounder.tgraph
        with torch.no_grad():
            y = tgraph.forward_flat(corners.to(tgraph.place.device, tgraph.place.dtype))
        rows = self.bounder.rows_of(domains)[:, 0]
        return ((rows * y).sum(dim=1) <= 0).cpu()

    def _end(self, ending: Tensor, pending: _Domains) -> None:
        """Records the rows ``ending`` (mask) with the lowest bound of their stored and pending
        domains, and drops their stored domains."""
        if not bool(ending.any()):
            return
        lowest = self._lowest()
        if pending.size:
            lowest.scatter_reduce_(0, _objective(pending).cpu(), pending.hardness.cpu().double(), "amin")
        self.ended = torch.where(ending, lowest, self.ended)
        if self.store.size:
            drop = ending[self.store.objectives().cpu()]
            if bool(drop.any()):
                self.store.take(torch.nonzero(drop).flatten().to(self.store.hardness().device))

    def _lowest(self) -> Tensor:
        """Per row, the lowest hardness of its stored domains (``+inf``: none stored)."""
        lowest = torch.full_like(self.ended, torch.inf)
        if self.store.size:
            lowest.scatter_reduce_(0, self.store.objectives().cpu(), self.store.hardness().cpu().double(), "amin")
        return lowest

    def _next_batch(self, take: int) -> Tensor:
        """Store positions of up to ``take`` domains: per row its lowest domains first, the rows
        with the fewest domains bounded so far first."""
        hardness, objective = self.store.hardness().cpu(), self.store.objectives().cpu()
        by_bound = torch.argsort(hardness, stable=True)
        rows = objective[by_bound]
        grouped = torch.argsort(rows, stable=True)
        _, counts = torch.unique_consecutive(rows[grouped], return_counts=True)
        starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        rank = torch.empty_like(rows)
        rank[grouped] = torch.arange(rows.numel()) - starts
        key = rank * (int(self.bounded.max()) + 1) + self.bounded[rows]
        return by_bound[torch.argsort(key, stable=True)[:take]]


def _objective(domains: _Domains) -> Tensor:
    """The domains' rows (every domain of this search has one)."""
    assert domains.objective is not None
    return domains.objective
