"""Branch and bound on the input box: split sub-boxes until CROWN refutes every clause.

A domain is a sub-box of the region's proof box with the set of clauses not yet refuted on it.
Each round pops a batch of domains, halves each along one input dimension, and bounds all the
children in one batched CROWN pass over the spec rows of their open clauses (starting from
their parent's intermediate bounds, by default). A child is discarded once every clause has a
row with a positive certified lower bound (no counterexample in that sub-box); the others go
back on the stack. The dimension: with strong branching (the default) every dimension's two
halves are bounded and each box keeps the pair whose halves have the best summed hardness (the
bound of the row closest to refuting the hardest open clause); with smear branching, the one
with the largest ``|a_j| * width_j``, where ``a`` is the input coefficient of CROWN's linear
bound of that row (its "smear"), chosen when the box itself was bounded. Each bounded box is
clipped to the part where its open clauses' linear bounds can still be violated
(:mod:`verifier.bab.clip`). A box whose bound gap stopped shrinking for a generation is set
aside and, in batches, bounded again by alpha-CROWN (output-layer slopes) before going back.

Soundness: the two children of a box cover it (``[l, m]`` and ``[m, u]``, whichever dimension
is kept), and clipping only removes points where a certified linear bound refutes every open
clause, so when every domain is refuted the whole proof box is; each refutation is a
certified CROWN (or alpha-CROWN) bound (sound for the float32 model, see :mod:`verifier.bounds.crown`), and a
parent's intermediate bounds hold on its sub-boxes. Counterexamples: the corner minimising
each child's linear bound and the child's centre are evaluated, PGD runs inside the worst
domains from time to time, and every point that looks violating is passed to ``confirm`` (the
onnxruntime re-check); only a confirmed point ends the search with ``sat``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from verifier.bab.clip import clip_boxes
from verifier.bab.common import BabOutcome, BabStats, CandidateSearch, Confirm
from verifier.bab.input_domains import (
    Children,
    Domains,
    Prior,
    cat_domains,
    pop_domains,
    row_hardness,
    select_domains,
    split_all,
    split_floor,
    split_one,
)
from verifier.bab.input_log import (
    Scored,
    log_alpha,
    log_halves,
    log_rescored,
    log_root,
    lower_slopes,
    relu_ordinals,
)
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown, CrownConfig
from verifier.bounds.objective import spec_rows, stack_clauses
from verifier.certificate.log import ProofLog
from verifier.config import InputBranching, InputSplitConfig
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.torch_graph import TorchGraph
from verifier.progress import Progress, ProgressEvent
from verifier.result import Status
from verifier.spec.types import Clause, Region


class _Bounder:
    """Bounds batches of sub-boxes against the stacked rows of a region's clauses."""

    def __init__(self, tgraph: TorchGraph, clauses: Sequence[Clause], root_width: Tensor,
                 config: InputSplitConfig, deadline: Deadline | None = None, slopes: bool = False) -> None:
        """``deadline`` is checked inside every CROWN pass (they raise
        :class:`~verifier.deadline.DeadlineExceeded` once it has passed); ``slopes``: keep the
        lower slopes of each pass (for a proof log)."""
        self.tgraph, self.inherit, self.clip = tgraph, config.inherit_bounds, config.clip_domains
        self.deadline = deadline
        self.crown_config = CrownConfig(per_domain_rows=config.per_domain_rows,
                                        intermediate_method=config.intermediate_method)
        self.scoring_config = CrownConfig(per_domain_rows=config.per_domain_rows,
                                          intermediate_method=config.scoring_method)
        # a proof log holds ReLU-like slopes only: with one, multi-input planes keep CROWN's weights
        self.alpha = AlphaConfig(iterations=config.alpha_iterations, intermediate=False, plane_weights=not slopes)
        # dimensions narrower than this are not split any more (fixed ones: never)
        self.floor = split_floor(root_width)
        self.root_width = torch.where(root_width > 0, root_width, torch.ones_like(root_width))
        place = tgraph.place
        self.c, self.d, self.mask, self.strict = stack_clauses(tuple(clauses), place.device, place.dtype)
        self.k, self.r = self.d.shape
        self.rows = self.c.reshape(self.k * self.r, -1)
        self.shape = tgraph.graph.inputs[0].shape
        self.relus = relu_ordinals(tgraph) if slopes else {}

    def __call__(self, lower: Tensor, upper: Tensor, open_: Tensor,
                 prior: Prior, parent_rows: Tensor, scoring: bool = False) -> Bounded:
        """Bounds boxes ``(M, n)`` with open clauses ``(M, K)`` and row bounds ``(M, K, R)``
        known to hold on them (their parent's; -inf: none); see :class:`Bounded`. With
        clipping, each box is first shrunk to where its open clauses can still be violated
        (:func:`verifier.bab.clip.clip_boxes`)."""
        m = lower.shape[0]
        with torch.no_grad():
            crown = Crown(self.tgraph, [lower.reshape(m, *self.shape)], [upper.reshape(m, *self.shape)],
                          self.scoring_config if scoring else self.crown_config, prior=prior, deadline=self.deadline)
            own = self._rows(crown, m)
            coeff = crown.input_coefficients[self.tgraph.graph.inputs[0].name].reshape(m, self.k * self.r, -1)
            # a parent's certified row bounds hold on its sub-boxes too: the children never
            # come out worse than their parent (CROWN's adaptive slopes alone do not ensure it)
            rows = torch.maximum(own, parent_rows)
            still_open = open_ & ~(rows > 0).any(dim=2)
            if self.clip:
                lower, upper, still_open = clip_boxes(lower, upper, coeff.reshape(m, self.k, self.r, -1), own,
                                                      still_open)
            # the hardest open clause, and its best row
            best_row, row_index = rows.max(dim=2)
            best_row = torch.where(still_open, best_row, torch.inf)
            clause = best_row.argmin(dim=1)
            row = row_index.gather(1, clause.unsqueeze(1)).squeeze(1)
            a = coeff[torch.arange(m, device=lower.device), clause * self.r + row]
            width = upper - lower
            eligible = width > self.floor
            smear = torch.where(eligible, a.abs() * width, 0.0)
            relative = torch.where(eligible, width / self.root_width, 0.0)
            dim = torch.where(smear.amax(dim=1) > 0, smear.argmax(dim=1), relative.argmax(dim=1))
            corner = torch.where(a > 0, lower, upper)
            hardness = best_row.gather(1, clause.unsqueeze(1)).squeeze(1)
        return Bounded(lower, upper, still_open, corner, dim, hardness, crown.best if self.inherit else {}, rows,
                       lower_slopes(crown, self.relus, m))

    def tighten(self, lower: Tensor, upper: Tensor, open_: Tensor, prior: Prior, rows: Tensor,
                record: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """alpha-CROWN (final-layer slopes) on boxes ``(M, n)`` with their intermediate bounds:
        the row bounds ``(M, K, R)`` (the better of those and ``rows``) and the clauses still
        open; ``record`` receives the slopes of each row's bound (see
        :func:`~verifier.bounds.alpha.alpha_lower_bound`)."""
        m = lower.shape[0]
        crown = Crown(self.tgraph, [lower.reshape(m, *self.shape)], [upper.reshape(m, *self.shape)],
                      self.crown_config, prior=prior, deadline=self.deadline)
        raw = alpha_lower_bound(crown, self.rows, self.alpha, record=record).detach().reshape(m, self.k, self.r)
        better = torch.maximum(spec_rows(raw, self.d, self.mask, self.strict), rows)
        return better, open_ & ~(better > 0).any(dim=2)

    def _rows(self, crown: Crown, m: int) -> Tensor:
        """Certified lower bounds ``(m, K, R)`` of the spec rows ``C y - d`` (padding: -inf)."""
        raw = crown.lower_bound(self.rows).reshape(m, self.k, self.r)
        return spec_rows(raw, self.d, self.mask, self.strict)


class InputSplitSearch:
    """Input-split branch and bound over one region that can be resumed (see the module
    docstring): :meth:`run` works until its deadline and a later call continues with the
    domains left, so that time spent before an interruption is not lost.

    Args:
        bounds_graph: the model in the bound precision (float64), on the configured device.
        attack_graph: the model in the attack precision, same device.
        region: the region (its clauses define the violation that candidates must show).
        clauses: the region's clauses still open (not refuted on the whole box).
        lower, upper: the flattened proof box ``(1, n)`` (see :func:`verifier.problem.proof_box`).
        confirm: the onnxruntime re-check of a flattened point; True ends the search (``sat``).
        config: the options.
        progress: told the domains left and the lowest open bound between rounds.
        log: where the search records its tree for a proof certificate (None: not recorded).
    """

    def __init__(self, bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                 lower: Tensor, upper: Tensor, confirm: Confirm, config: InputSplitConfig | None = None,
                 progress: Progress | None = None, log: ProofLog | None = None) -> None:
        self.bounds_graph, self.attack_graph, self.region = bounds_graph, attack_graph, region
        self.clauses, self.confirm = tuple(clauses), confirm
        self.config = config or InputSplitConfig()
        self.device = bounds_graph.place.device
        self.lower = lower.to(self.device, torch.float64)
        self.upper = upper.to(self.device, torch.float64)
        self.floor = split_floor((self.upper - self.lower).reshape(-1))  # see _Bounder.floor
        self.free = int(torch.isfinite(self.floor).sum())  # the dimensions that can be split
        self.stack: list[Domains] | None = None  # None until the whole box has been bounded
        self.queued = 0
        self.aside: list[Domains] = []  # stalled domains waiting for alpha-CROWN
        self.aside_count = 0
        self.rounds = 0
        self.unsplittable = 0  # boxes that could not be halved (the search cannot end unsat)
        self.final: Status | None = None  # the outcome once decided (sat, unsat, unknown)
        self.progress = progress
        self.log = log

    def run(self, deadline: Deadline) -> BabOutcome:
        """Searches until the outcome is decided or ``deadline`` expires (``timeout``; a later
        call resumes). The statistics count this call's work only. ``unsat`` only when every
        sub-box is refuted."""
        stats = BabStats()
        if self.final is None:
            self.final = self._search(deadline, stats)
        return BabOutcome(self.final or Status.TIMEOUT, stats)

    def _search(self, deadline: Deadline, stats: BabStats) -> Status | None:
        """The search loop; returns the outcome, or None on timeout. A round that the deadline
        stops inside a bound pass puts its domains back, so that a later call searches them."""
        config = self.config
        if not self.clauses:
            return Status.UNSAT
        if len(self.bounds_graph.graph.inputs) != 1 or any(c.num_rows == 0 for c in self.clauses):
            return Status.UNKNOWN
        root_width = (self.upper - self.lower).reshape(-1)
        bound = _Bounder(self.bounds_graph, self.clauses, root_width, config, deadline, self.log is not None)
        search = CandidateSearch(self.attack_graph, self.region, self.confirm, stats, config.candidates_per_round,
                                 config.pgd_steps, config.stepped_per_round)
        try:
            if self.stack is None and self._bound_root(bound, search, stats):
                return Status.SAT
        except DeadlineExceeded:
            return None
        assert self.stack is not None
        stack = self.stack
        while self.queued or self.aside_count:
            if deadline.expired():
                return None
            if self.aside_count >= config.alpha_batch or (self.aside_count and not self.queued):
                if not self._tighten_aside(bound, stats, self.aside_count >= config.alpha_min_batch):
                    return None
                continue
            if self.queued > config.max_domains:
                stats.extra["gave_up_queue"] = self.queued
                return Status.UNKNOWN
            batch = pop_domains(stack, self._batch_size())
            self.queued -= batch.size
            try:
                found = self._round(batch, bound, search, stats)
            except DeadlineExceeded:  # nothing of the round was stored: its domains go back
                stack.append(batch)
                self.queued += batch.size
                return None
            if found:
                return Status.SAT
            if self.progress is not None and self.progress.due():
                self.progress.show(ProgressEvent("branch and bound", self.queued + self.aside_count,
                                                 self._lowest_bound()))
        if self.unsplittable:
            return Status.UNKNOWN
        return Status.UNSAT

    def _lowest_bound(self) -> float | None:
        """The lowest hardness over the open domains (stack and set aside); None when none."""
        parts = [row_hardness(d.rows, d.open).min() for d in [*(self.stack or []), *self.aside] if d.size]
        return float(torch.stack(parts).min()) if parts else None

    def _strong(self) -> bool:
        """Whether rounds use strong branching (few enough free dimensions for it)."""
        return self.config.branching is InputBranching.STRONG and self.free <= self.config.strong_max_dims

    def _batch_size(self) -> int:
        """Domains per round: ``batch``, fewer where ``batch_elements`` says so (at least one):
        each child costs ``2 (k + 1)`` vectors over the largest value (``k`` free dimensions),
        and a domain has 2 children, ``2k`` with strong branching."""
        per_child = 2 * (self.free + 1) * self.bounds_graph.graph.largest_value_size
        children = 2 * self.free if self._strong() else 2
        return max(1, min(self.config.batch, self.config.batch_elements // (children * per_child)))

    def _bound_root(self, bound: _Bounder, search: CandidateSearch, stats: BabStats) -> bool:
        """Bounds the whole proof box and starts the stack with it (when a clause is still
        open); True when its corner or centre is a confirmed counterexample."""
        device = self.device
        lower, upper = self.lower, self.upper
        open_ = torch.ones(1, bound.k, dtype=torch.bool, device=device)
        start = time.monotonic()
        unknown = torch.full((1, bound.k, bound.r), -torch.inf, dtype=torch.float64, device=device)
        root = bound(lower, upper, open_, {}, unknown)
        stats.seconds_bounding += time.monotonic() - start
        stats.domains_bounded += 1
        keep = root.open.any(dim=1)
        stall = torch.zeros(1, dtype=torch.long, device=device)
        node = log_root(self.log, (lower, upper), root)
        self.stack = [select_domains(Domains(root.lower, root.upper, root.open, root.dim, root.prior, root.rows, stall,
                                             node), keep)]
        self.queued = int(keep.sum())
        return search.offer(torch.cat([root.corner, (root.lower + root.upper) / 2]))

    def _round(self, batch: Domains, bound: _Bounder, search: CandidateSearch, stats: BabStats) -> bool:
        """Splits a popped batch, bounds the children in one pass and stores those still open
        (:meth:`_store`); True when a counterexample is confirmed."""
        config = self.config
        if self._strong():
            children_of, unsplittable = split_all(batch, self.floor)
        else:
            children_of, unsplittable = split_one(batch)
        stats.unsplittable += unsplittable
        self.unsplittable += unsplittable
        if children_of is None:
            return False
        halves, scored = children_of, None
        parent_hardness = row_hardness(children_of.rows, children_of.open)
        start = time.monotonic()
        if children_of.pick is not None and config.scoring_method != config.intermediate_method:
            children_of, kept, scored = self._rescore(children_of, bound, stats)
            parent_hardness = parent_hardness[kept]
            if children_of.lower.shape[0] == 0:  # the scoring bounds refuted every half kept
                assert children_of.pick is not None
                children_of.pick(children_of.rows.new_zeros(0))
                log_rescored(self.log, scored, None)
                self._count_round(stats, start)
                return False
        done = bound(children_of.lower, children_of.upper, children_of.open, children_of.prior, children_of.rows)
        stats.domains_bounded += done.lower.shape[0]
        child_stall = children_of.stall
        if children_of.pick is not None:  # strong branching: each box keeps the halves of its best dimension
            chosen = children_of.pick(done.hardness)
            done = done.select(chosen)
            parent_hardness, child_stall = parent_hardness[chosen], child_stall[chosen]
        else:
            chosen = None
        if scored is not None:
            node = log_rescored(self.log, scored, done)
        else:
            node = log_halves(self.log, halves, chosen, done)
        # a child whose gap did not shrink by a tenth is stalled one more generation
        progressed = done.hardness > parent_hardness * (1 - config.stall_progress)
        child_stall = torch.where(progressed, 0, child_stall + 1)
        self._count_round(stats, start)
        keep = done.open.any(dim=1)
        stats.domains_proven += int((~keep).sum())
        if not bool(keep.any()):
            return False
        children = select_domains(Domains(done.lower, done.upper, done.open, done.dim, done.prior, done.rows,
                                          child_stall, node), keep)
        return self._store(children, done.corner[keep], done.hardness[keep], search, stats)

    def _count_round(self, stats: BabStats, start: float) -> None:
        """Records one round of bounding that began at ``start``."""
        stats.seconds_bounding += time.monotonic() - start
        stats.rounds += 1
        self.rounds += 1

    def _rescore(self, children: Children, bound: _Bounder, stats: BabStats) -> tuple[Children, Tensor, Scored]:
        """Strong branching scored by the cheaper bounds (``scoring_method``): every half is
        bounded with them, and only the two halves of each box's best dimension by them go on
        to the full bounds (all its halves where every dimension ties), with their scored boxes,
        intermediate bounds and rows (all certified, so they are kept) and a selector among
        them; returns those children and their indices. Halves the scoring bounds refute are
        not among them (nothing is left to bound there); the selector counts those it picks
        as refuted. The :class:`~verifier.bab.input_log.Scored` record keeps the scoring pass
        and, once the selector has run, the halves it chose (for the proof log)."""
        lo, hi, open_, prior, rows, stall, pick, node = children
        assert pick is not None
        scored = bound(lo, hi, open_, prior, rows, scoring=True)
        stats.extra["domains_scored"] = stats.extra.get("domains_scored", 0) + lo.shape[0]
        # boxes where no dimension's halves beat their parent by the cheaper bounds get no
        # information from them (every dimension ties): all their halves get the full bounds
        n = self.free  # the halves come per free dimension (split_all)
        m = lo.shape[0] // (2 * n)
        score = scored.hardness.reshape(m, 2, n).clamp(max=0.0).sum(dim=1).amax(dim=1)
        tied = ~(score > 2 * row_hardness(rows, open_).reshape(m, 2 * n)[:, 0])
        kept = pick(scored.hardness)
        kept = kept[~tied[kept // (2 * n)]]
        every = (torch.nonzero(tied).flatten().unsqueeze(1) * 2 * n + torch.arange(2 * n, device=lo.device)).flatten()
        kept = torch.cat([kept, every]).sort().values
        # halves the scoring bounds already refute need no full bounds: they count as refuted
        total = lo.shape[0]
        refuted = torch.zeros(total, dtype=torch.bool, device=lo.device)
        refuted[kept] = ~scored.open[kept].any(dim=1)
        kept = kept[~refuted[kept]]

        record = Scored(children, scored.lower, scored.upper, refuted, scored.slopes)

        def pick_kept(hardness: Tensor) -> Tensor:
            full = torch.full((total,), -torch.inf, dtype=hardness.dtype, device=hardness.device)
            full[refuted] = torch.inf  # the halves neither kept nor refuted are never picked
            full[kept] = hardness
            chosen = pick(full)
            record.chosen = chosen
            stats.domains_proven += int(refuted[chosen].sum())
            return torch.searchsorted(kept, chosen[~refuted[chosen]])

        return Children(scored.lower[kept], scored.upper[kept], scored.open[kept],
                        {k: (v[0][kept], v[1][kept]) for k, v in scored.prior.items()}, scored.rows[kept], stall[kept],
                        pick_kept, node[kept]), kept, record

    def _store(self, children: Domains, corner: Tensor, hardness: Tensor, search: CandidateSearch,
               stats: BabStats) -> bool:
        """Offers the open children's corners (``corner``) and centres, runs PGD inside the
        hardest ones every ``pgd_every`` rounds, sets the stalled ones aside for alpha-CROWN
        and pushes the rest on the stack; True when a counterexample is confirmed."""
        config = self.config
        centres = (children.lower + children.upper) / 2
        if search.offer(torch.cat([corner, centres])):
            return True
        if config.pgd_every and self.rounds % config.pgd_every == 0:
            worst = torch.argsort(hardness)[: config.pgd_domains]
            if search.pgd(children.lower[worst], children.upper[worst], corner[worst]):
                return True
        if config.alpha_after_stall:  # stalled children wait for a batched alpha-CROWN pass
            stalled = children.stall >= config.alpha_after_stall
            if bool(stalled.any()):
                self.aside.append(select_domains(children, stalled))
                self.aside_count += int(stalled.sum())
                children = select_domains(children, ~stalled)
        assert self.stack is not None
        self.stack.append(children)
        self.queued += children.size
        stats.max_queue = max(stats.max_queue, self.queued + self.aside_count)
        return False

    def _tighten_aside(self, bound: _Bounder, stats: BabStats, alpha: bool = True) -> bool:
        """Bounds the stalled domains set aside with alpha-CROWN (without ``alpha``: not at
        all) and puts those still open back on the stack (their stall count reset); False
        when the deadline stopped the bound pass (the domains stay aside)."""
        aside = cat_domains(self.aside)
        if not alpha:
            self.aside, self.aside_count = [], 0
            self.stack.append(replace(aside, stall=torch.zeros_like(aside.stall)))  # type: ignore[union-attr]
            self.queued += aside.size
            return True
        start = time.monotonic()
        record: dict[str, Tensor] | None = {} if self.log is not None else None
        try:
            rows, open_ = bound.tighten(aside.lower, aside.upper, aside.open, aside.prior, aside.rows, record)
        except DeadlineExceeded:
            return False
        node = log_alpha(self.log, aside.node, record, relu_ordinals(self.bounds_graph))
        self.aside, self.aside_count = [], 0
        stats.seconds_bounding += time.monotonic() - start
        stats.extra["alpha_bounded"] = stats.extra.get("alpha_bounded", 0) + aside.size
        keep = open_.any(dim=1)
        stats.domains_proven += int((~keep).sum())
        if bool(keep.any()):
            back = Domains(aside.lower, aside.upper, open_, aside.dim, aside.prior, rows, torch.zeros_like(aside.stall),
                           node)
            self.stack.append(select_domains(back, keep))  # type: ignore[union-attr]
            self.queued += int(keep.sum())
        return True


def input_split_search(bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                lower: Tensor, upper: Tensor, confirm: Confirm, deadline: Deadline,
                config: InputSplitConfig | None = None) -> BabOutcome:
    """Input-split branch and bound over one region until ``deadline`` (see
    :class:`InputSplitSearch`, which this runs once).

    Returns:
        the outcome and statistics. ``unsat`` only when every sub-box is refuted.
    """
    return InputSplitSearch(bounds_graph, attack_graph, region, clauses, lower, upper, confirm, config).run(deadline)


@dataclass(frozen=True)
class Bounded:
    """What bounding a batch of boxes ``(M, n)`` gives: the boxes (clipped, or as given), the
    clauses still open ``(M, K)``, the minimising corner of the hardest row's linear bound
    ``(M, n)``, the smear's split dimension ``(M,)``, the hardness ``(M,)`` (that row's bound:
    the lower, the further from refuted; +inf once every clause is refuted), the intermediate
    bounds found (valid priors for sub-boxes) and the row bounds ``(M, K, R)`` (the better of
    CROWN's and the parent's), and the lower slopes ``(M, size)`` of the ReLU-like layers
    (by position among them) that CROWN's row bounds used (for the proof log)."""

    lower: Tensor
    upper: Tensor
    open: Tensor
    corner: Tensor
    dim: Tensor
    hardness: Tensor
    prior: Prior
    rows: Tensor
    slopes: dict[int, Tensor]

    def select(self, index: Tensor) -> Bounded:
        """The boxes at ``index``."""
        return Bounded(self.lower[index], self.upper[index], self.open[index], self.corner[index], self.dim[index],
                       self.hardness[index], {k: (v[0][index], v[1][index]) for k, v in self.prior.items()},
                       self.rows[index], {k: v[index] for k, v in self.slopes.items()})
