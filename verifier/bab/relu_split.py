"""Branch and bound over ReLU splits, bounded with beta-CROWN.

A domain is the region's input box together with split constraints, one per split neuron:
``x_j >= 0`` (active) or ``x_j <= 0`` (inactive) on the input ``x`` of a ReLU-like node
(Relu, LeakyRelu). It stores the bounds of the intermediate values (the pre-activations, and
every other value the root's CROWN refined), with the split ones clamped to their side; the
lower slopes ``alpha`` of its unstable neurons and the multipliers ``beta >= 0`` of its split
constraints, one per objective row.

Bounding a batch of domains is one CROWN object over copies of the box, whose intermediate
bounds are the domains' stored ones (intersected with what intervals give from them), with
Adam steps on ``alpha`` and ``beta`` jointly (beta-CROWN): the rows bounded are
``C y - d - sum_j beta_j s_j x_j`` with ``s_j = +1`` for an active split and ``-1`` for an
inactive one, so the extra term is ``<= 0`` wherever the splits hold.

Each round pops the domains with the lowest bound (best first), picks one unstable neuron per
domain (filtered smart branching: the best few by two scores are each tried with one CROWN
pass on both children, and the neuron whose better child is best wins; or the best BaBSR
score alone), and bounds both children together. A child is discarded once every open clause
has a row with a positive certified bound.

Soundness:
- the children ``x_j >= 0`` and ``x_j <= 0`` cover their parent, so once every domain is
  refuted the region is;
- clamping ``x_j``'s bounds to the split's side is valid on the child's domain;
- every bound is a CROWN bound (sound for the float32 model, see
  :mod:`verifier.bounds.crown`) with slopes in their valid range (any such slope is sound)
  and ``beta >= 0`` (any such multiplier is sound: Lagrangian relaxation). The Adam steps and
  the branching trials may run on float32 estimates (``estimated_steps``, ``Crown.tiled``):
  they only choose slopes, multipliers and splits; the bound that refutes a domain is always
  the float64 pass with every rounding allowance.

A domain where no unstable neuron is left yet not refuted (beta did not reach the linear
program's optimum) is a linear program: it goes to the MILP engine
(:func:`verifier.exact.milp.milp_check`) with its splits as sign constraints; one that engine
cannot decide makes the search end ``unknown`` unless a counterexample is found.
Counterexamples: the input corner minimising each child's linear bound is evaluated, PGD runs
from the worst domains' corners from time to time, and only a point that ``confirm`` (the
onnxruntime re-check) accepts ends the search with ``sat``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from verifier.bab.common import BabOutcome, BabStats, CandidateSearch, Confirm, hardest_rows
from verifier.bab.domain_store import DomainStore
from verifier.bab.neuron_split import NeuronSplitSearch, smooth_layers
from verifier.bab.relu_bounding import _BetaBounder, _bound, _Pending
from verifier.bab.relu_branching import _apply_split, _Brancher
from verifier.bab.relu_domains import (
    _batch_size,
    _cat,
    _Domains,
    _Layer,
    _root,
    count_unstable,
    splittable_layers,
)
from verifier.bab.relu_log import log_exact_leaves, log_refuted, log_root, log_splits
from verifier.bounds.crown import Crown, CrownConfig
from verifier.bounds.objective import crown_rows
from verifier.certificate.log import ProofLog
from verifier.config import ReluSplitConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.progress import Progress, ProgressEvent
from verifier.result import Status
from verifier.spec.types import Clause, Region

__all__ = ["ReluSplitSearch", "count_unstable", "relu_split_search", "splittable_layers"]


class ReluSplitSearch:
    """ReLU-split branch and bound with beta-CROWN over one region that can be resumed (see
    the module docstring): :meth:`run` works until its deadline, and a later call continues
    with the domains left (the store of each clause's search, the batch bounded but not yet
    split, and leaves not yet decided), so that time spent before an interruption is not lost.

    Args:
        bounds_graph: the graph for bounds (float64), attack_graph: for candidate checks.
        region: the region (its clauses define the violation margin of candidates).
        clauses: the region's clauses still open (not refuted on the whole box).
        root: CROWN over the region's proof box (batch 1), e.g. after alpha-CROWN: its bounds
            are the root domain's intermediate bounds.
        confirm: the onnxruntime re-check of a flattened point; True ends the search (``sat``).
        config: the options.
        progress: told the domains left and the lowest open bound between rounds.
        logs: a new proof log for a clause's search (:mod:`verifier.bab.relu_log`; None: the
            searches are not recorded).
    """

    def __init__(self, bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                 root: Crown, confirm: Confirm, config: ReluSplitConfig | None = None,
                 progress: Progress | None = None, logs: Callable[[Clause], ProofLog] | None = None) -> None:
        self.bounds_graph, self.attack_graph, self.region, self.confirm = bounds_graph, attack_graph, region, confirm
        self.config = config or ReluSplitConfig()
        self.progress = progress
        self.clauses = tuple(clauses)
        self.layers = splittable_layers(bounds_graph)
        self.final: Status | None = None  # the outcome once decided (sat, unsat, unknown)
        self.verdict = Status.UNSAT  # unknown once a clause's search ended unknown
        self.unresolved = 0  # leaves the exact engine could not decide, over every clause
        self.searches: list[_ClauseSearch] = []  # the clauses not finished, the current one first
        if not self.clauses:
            self.final = Status.UNSAT
        elif len(bounds_graph.graph.inputs) != 1 or any(c.num_rows == 0 for c in self.clauses) or not self.layers:
            self.final = Status.UNKNOWN
        else:
            # one search per clause (each bounds its own rows only); the clause furthest from
            # refuted first, where a counterexample is likeliest
            with torch.no_grad():
                order = sorted(self.clauses, key=lambda c: float(crown_rows(root, c).max()))
            self.searches = [_ClauseSearch(bounds_graph, self.layers, root, clause, self.config,
                                           None if logs is None else logs(clause)) for clause in order]

    def run(self, deadline: Deadline) -> BabOutcome:
        """Searches until the outcome is decided or ``deadline`` expires (``timeout``; a later
        call resumes). The statistics count this call's work only. ``unsat`` only when every
        domain of every clause is refuted."""
        stats = BabStats()
        if self.final is None:
            search = CandidateSearch(self.attack_graph, self.region, self.confirm, stats,
                                     self.config.candidates_per_round, self.config.pgd_steps,
                                     self.config.stepped_per_round)
            while self.searches:
                current = self.searches[0]
                before = current.unresolved
                status = current.run(search, deadline, stats, self.progress)
                self.unresolved += current.unresolved - before
                if status is None:
                    break
                if status == Status.SAT:
                    self.final = Status.SAT
                    break
                if status == Status.UNKNOWN:
                    self.verdict = Status.UNKNOWN
                self.searches.pop(0)
            else:
                self.final = self.verdict
        stats.extra["unresolved_leaves"] = self.unresolved
        return BabOutcome(self.final or Status.TIMEOUT, stats)

    def lower_bound(self) -> float:
        """A certified lower bound, over the whole region, of the best row of the one clause
        still searched (``inf`` once every clause is refuted, ``-inf`` when none is known: the
        root not bounded yet, several clauses open, or leaves the exact engine has not decided).

        Sound because every open domain is in the store or the batch just bounded (each with its
        last certified bound, which holds on its sub-domains too) and every other domain was
        refuted (its rows positive)."""
        if self.final is Status.UNSAT:
            return float("inf")
        if self.final is not None or self.unresolved or len(self.searches) != 1:
            return -float("inf")
        return self.searches[0].lower_bound()

def relu_split_search(bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                      root: Crown, confirm: Confirm, deadline: Deadline,
                      config: ReluSplitConfig | None = None) -> BabOutcome:
    """ReLU-split branch and bound over one region until ``deadline`` (see
    :class:`ReluSplitSearch`, which this runs once).

    Returns:
        the outcome and statistics. ``unsat`` only when every domain is refuted.
    """
    return ReluSplitSearch(bounds_graph, attack_graph, region, clauses, root, confirm, config).run(deadline)


class _ClauseSearch:
    """The search on one clause, resumable: the root is bounded on the first call; then each
    round splits the bounded domains still open (``pending``) into the store and bounds the
    store's lowest domains. Leaves (no unstable neuron left) go to the exact engine; those not
    tried before a deadline wait in ``leaves`` for the next call."""

    def __init__(self, bounds_graph: TorchGraph, layers: Sequence[_Layer], root: Crown, clause: Clause,
                 config: ReluSplitConfig, log: ProofLog | None = None) -> None:
        self.layers, self.root, self.clause, self.config, self.log = tuple(layers), root, clause, config, log
        lower, upper = root.input_bounds[bounds_graph.graph.inputs[0].name]
        self.bounder = _BetaBounder(bounds_graph, layers, lower.reshape(1, -1), upper.reshape(1, -1), [clause], config)
        self.brancher = _Brancher(layers, self.bounder, config)
        self.batch = _batch_size(layers, bounds_graph, self.bounder.k * self.bounder.r, config)
        self.pending: _Pending | None = None  # None until the root has been bounded
        self.row = torch.zeros(0, dtype=torch.long)
        self.store = DomainStore()
        self.leaves: _Domains | None = None
        self.unresolved = 0
        self.rounds = 0
        # the last round's bounding and branching seconds (see _fits)
        self.round_seconds = self.split_seconds = 0.0

    def run(self, search: CandidateSearch, deadline: Deadline, stats: BabStats,
            progress: Progress | None = None) -> Status | None:
        """Continues the search until it ends (``sat``, ``unsat``, ``unknown``) or ``deadline``
        expires (None); ``progress`` is told the domains left and the lowest bound between rounds."""
        config, bounder = self.config, self.bounder
        stats.extra["batch"] = self.batch
        rounds_here = 0
        if self.pending is None:
            start = time.monotonic()
            domains = log_root(self.log, _root(bounder.tgraph, self.layers, self.root, bounder.k, bounder.r))
            self.pending, corners, self.row = _bound(bounder, domains, config.root_iterations, deadline, stats,
                                                     self.log)
            stats.seconds_bounding += time.monotonic() - start
            if self.pending.size and search.offer(corners):
                return Status.SAT
        while True:
            if self.leaves is not None:
                found, self.leaves = self._solve_leaves(self.leaves, search, deadline, stats)
                if found:
                    return Status.SAT
                if self.leaves is not None:
                    return None
            if self.pending.size:
                if not _fits(deadline, self.split_seconds, rounds_here == 0):
                    return None  # not split in time: they stay pending (and in lower_bound) for the next call
                self._split_pending(stats)
            size = self.store.size
            stats.max_queue = max(stats.max_queue, size)
            if self.leaves is not None:
                continue
            if size == 0:
                break
            if not _fits(deadline, self.round_seconds, rounds_here == 0):
                return None
            popped = self._next_batch(stats)
            if popped is None:
                return Status.UNKNOWN
            if progress is not None and progress.due():
                progress.show(ProgressEvent("branch and bound", size, stats.extra["lowest_open_bound"]))
            begin = time.monotonic()
            self.pending, corners, self.row = _bound(bounder, popped, config.iterations, deadline, stats, self.log)
            self.round_seconds = time.monotonic() - begin
            stats.seconds_bounding += self.round_seconds
            stats.rounds += 1
            self.rounds += 1
            rounds_here += 1
            if self.pending.size and search.offer(corners):
                return Status.SAT
            if config.pgd_every and self.rounds % config.pgd_every == 0 and self.pending.size:
                worst = torch.argsort(self.pending.domains.hardness)[: config.candidates_per_round * 4]
                starts = corners[worst]
                box_lo = bounder.lower.expand(starts.shape[0], -1)
                box_hi = bounder.upper.expand(starts.shape[0], -1)
                if search.pgd(box_lo, box_hi, starts):
                    return Status.SAT
        return Status.UNKNOWN if self.unresolved else Status.UNSAT

    def lower_bound(self) -> float:
        """The lowest certified bound of the open domains (see :meth:`ReluSplitSearch.lower_bound`)."""
        if self.pending is None or self.leaves is not None or self.unresolved:
            return -float("inf")
        parts = [h for h in (self.store.hardness(), self.pending.domains.hardness) if h.numel()]
        return float(torch.cat(parts).min()) if parts else float("inf")

    def _next_batch(self, stats: BabStats) -> _Domains | None:
        """The domains to bound next, taken out of the store: lowest bound first (best first)
        while the store is within its cap (``max_domains``, or the domains ``queue_memory``
        holds, whichever is fewer); past it, nearest to refuted first, so that the store drains
        instead of growing. None once the store outgrew twice its cap (the search gives up)."""
        store = self.store
        cap = min(self.config.max_domains, self.config.queue_memory // store.bytes_per_domain)
        if store.size > 2 * cap:
            stats.extra["gave_up_queue"] = store.size
            return None
        draining = store.size > cap
        if draining:
            stats.extra["draining_rounds"] = stats.extra.get("draining_rounds", 0) + 1
        hardness = store.hardness()
        order = torch.argsort(hardness, descending=draining)
        stats.extra["lowest_open_bound"] = float(hardness.min())  # the clause's certified bound
        return store.take(order[: 2 * self.batch])

    def _split_pending(self, stats: BabStats) -> None:
        """Moves the bounded domains still open into the store as children (and those with no
        unstable neuron left into ``leaves``)."""
        assert self.pending is not None
        pending = self.pending
        begin = time.monotonic()
        neuron = self.brancher.choose(pending.domains, pending.coefficients, self.row)
        self.split_seconds = time.monotonic() - begin
        stats.extra["seconds_branching"] = stats.extra.get("seconds_branching", 0.0) + self.split_seconds
        leaf = neuron < 0
        if bool(leaf.any()):
            found = pending.domains.take(leaf)
            self.leaves = found if self.leaves is None else _cat([self.leaves, found])
        keep = ~leaf
        if bool(keep.any()):
            parents, chosen = pending.domains.take(keep), neuron[keep]
            coeffs = {key: value[keep] for key, value in pending.coefficients.items()}
            children = _cat([_apply_split(parents, self.layers, chosen, +1, coeffs),
                             _apply_split(parents, self.layers, chosen, -1, coeffs)])
            self.store.add(log_splits(self.log, parents, chosen, self.layers, children))
        self.pending = _Pending(pending.domains.take(torch.zeros(0, dtype=torch.long, device=neuron.device)),
                                {k: v[:0] for k, v in pending.coefficients.items()})

    def _solve_leaves(self, leaves: _Domains, search: CandidateSearch, deadline: Deadline,
                      stats: BabStats) -> tuple[bool, _Domains | None]:
        """Decides domains with no unstable neuron left: first by beta-CROWN with the
        multipliers of the domain's linear program (:meth:`_refuted_by_multipliers`, exact on a
        ReLU-family network), then exactly: the network is affine on each, so the MILP engine,
        with the domain's bounds and its splits as sign constraints, is a linear program (a
        MaxPool window still open adds binaries). Returns whether a counterexample was confirmed, and the leaves not
        tried before ``deadline`` (None when all were); a leaf the engine cannot decide (it
        gave up, or the network has ops the exact encoding lacks and a short general-split
        search did not refute it either) counts as unresolved."""
        from verifier.exact import ExactUnsupported, MilpConfig, milp_check

        bounder = self.bounder
        tgraph, shape = bounder.tgraph, bounder.input.shape
        for i in range(leaves.size):
            if deadline.expired():
                return False, leaves.take(torch.arange(i, leaves.size, device=leaves.open.device))
            if self._refuted_by_multipliers(leaves.take(torch.tensor([i], device=leaves.open.device)), stats):
                continue
            log_exact_leaves(self.log)
            prior = {name: (lo[i : i + 1], hi[i : i + 1]) for name, (lo, hi) in leaves.bounds.items()}
            crown = Crown(tgraph, [bounder.lower.reshape(1, *shape)], [bounder.upper.reshape(1, *shape)],
                          CrownConfig(intermediate=False), prior=prior)
            signs = {layer.value: leaves.split[layer.node][i].cpu().numpy() for layer in self.layers}
            try:
                outcome = milp_check(crown.table, [self.clause], MilpConfig(time_limit=deadline.remaining()),
                                     deadline, signs)
            except ExactUnsupported:
                if not self._general_splits_refute(crown, deadline, stats):
                    self.unresolved += 1
                continue
            stats.extra["leaves_exact"] = stats.extra.get("leaves_exact", 0) + 1
            if outcome.status == Status.SAT and outcome.x is not None:
                stats.candidates_checked += 1
                if search.confirm(outcome.x):
                    return True, None
            if outcome.status != Status.UNSAT:
                self.unresolved += 1
        return False, None

    def _refuted_by_multipliers(self, leaf: _Domains, stats: BabStats) -> bool:
        """Whether beta-CROWN refutes the clause on one leaf with the multipliers that solve its
        linear program (:meth:`~verifier.bab.relu_bounding._BetaBounder.leaf_multipliers`):
        exact where every neuron's line is (ReLU family), so the exact engine is left only the
        leaves whose optimum does not refute the clause; the bound is certified, and the proof
        log records the multipliers like any refuted domain's (a checkable leaf)."""
        beta = self.bounder.leaf_multipliers(leaf)
        if beta is None:
            return False
        domain = leaf.with_state(beta=beta)
        still_open, _, _ = hardest_rows(self.bounder.quick(domain) - self.bounder.config.refute_margin, domain.open)
        if bool(still_open.any()):
            return False
        log_refuted(self.log, domain, torch.ones(1, dtype=torch.bool, device=domain.open.device), domain.alpha, beta,
                    self.layers)
        stats.extra["leaves_by_multipliers"] = stats.extra.get("leaves_by_multipliers", 0) + 1
        return True

    def _general_splits_refute(self, leaf: Crown, deadline: Deadline, stats: BabStats) -> bool:
        """Whether the neuron-split search (:mod:`verifier.bab.neuron_split`) refutes the clause
        on a leaf the exact engine cannot encode (a network with Sigmoid, Tanh... neurons; its
        ReLU-like ones are all decided on the leaf), within ``config.leaf_seconds``. Sound: that
        search's ``unsat`` holds for every input of the box whose values lie in ``leaf``'s
        intervals, which hold every input of the leaf (the splits are in them)."""
        tgraph = self.bounder.tgraph
        if self.config.leaf_seconds <= 0 or not smooth_layers(tgraph):
            return False
        search = NeuronSplitSearch(tgraph, self.bounder.lower, self.bounder.upper, [self.clause], leaf)
        outcome = search.run(deadline.sooner(self.config.leaf_seconds))
        stats.extra["leaves_general"] = stats.extra.get("leaves_general", 0) + 1
        return outcome.status is Status.UNSAT


def _fits(deadline: Deadline, seconds: float, first: bool) -> bool:
    """Whether a search step that last took ``seconds`` (a round of bounding, a branching step:
    neither is interrupted) may begin: not past ``deadline``, and ending before it by that
    measure unless it is the call's ``first`` round (a call shorter than a round still makes
    progress; a run's long last call is not affected)."""
    return not deadline.expired() and (first or deadline.remaining() >= seconds)
