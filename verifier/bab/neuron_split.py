"""Branch and bound on the pre-activation intervals of neurons with free slopes (Sigmoid, Tanh,
...), and of the ReLU-like neurons of the same network in one search (in the spirit of GenBaB,
branch and bound for general nonlinearities). Networks with ReLU-like neurons only use the
ReLU-split search (:mod:`verifier.bab.relu_split`, with beta-CROWN) instead.

A ReLU-like neuron is split at 0 (its interval's two sides are linear pieces: CROWN's relaxation
on either child's interval is exact) and scored by ``|a| * (-l u / (u - l))``; its slopes are
CROWN's on the domain's interval (not optimised here).

A *domain* is the region's box together with bounds on the inputs of every node whose op has
free slopes (:attr:`verifier.ops.relax.Relaxation.free_slopes`), and its own lower and upper
slopes of those neurons for every spec row. A round takes the domains with the lowest bound,
splits each at the midpoint of the interval of the neuron with the largest score (its
coefficient in the domain's hardest row times the gap between its relaxation's lines), and
bounds the children together: CROWN over the box with the children's intervals as prior bounds
(later intervals tighten by interval propagation), with the parent's slopes as the start of a
few Adam steps on the slopes (:mod:`verifier.bounds.free_lines`).

Soundness: a domain's bound holds for every input of the box whose pre-activations lie in the
domain's intervals (the lines are valid on those intervals, for whatever slopes; float errors
as in every CROWN pass); the two children of a split cover their parent (closed intervals
meeting at the split point). So a clause refuted on every domain is refuted on the box: the
search answers ``unsat`` only when no domain is left. Each round offers the box corner that
minimises each new domain's hardest row's linear bound (where the domain's relaxation is
tight, where the row is lowest); ``sat`` only when onnxruntime confirms one (``confirm``).
A domain whose certified bounds of some value cross (``lo > hi``) contains no input: dropped.
A child's bound is at least its parent's (kept per row): the parent's bound holds on it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.attack.guides import minimising_corners
from verifier.bab.common import BabOutcome, BabStats, CandidateSearch, Confirm, hardest_rows
from verifier.bounds.ascent import Adam
from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import FINAL, Crown, CrownConfig
from verifier.bounds.objective import spec_rows, stack_clauses
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.ops.relax import free_boxes
from verifier.result import Status
from verifier.search_config import NeuronSplitConfig
from verifier.spec.types import Clause, Region

Bounds = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class SmoothLayer:
    """A node split by this search, on one dynamic input: its name, input value and that
    value's shape; ``kink``: a ReLU-like op (linear on each side of 0), split at 0 and relaxed
    by CROWN on the domain's interval (exact once split), instead of a node with free slopes
    split at the interval's midpoint with its slopes optimised per domain."""

    node: str
    value: str
    shape: tuple[int, ...]
    kink: bool = False


def smooth_layers(tgraph: TorchGraph) -> list[SmoothLayer]:
    """The nodes whose op has free slopes, on one dynamic input, in graph order."""
    return [layer for layer in split_layers(tgraph) if not layer.kink]


def split_layers(tgraph: TorchGraph) -> list[SmoothLayer]:
    """The nodes this search splits, in graph order: those whose op has free slopes and the
    ReLU-like ones (``Op.kink_at_zero``), each on one dynamic input."""
    found = []
    for node, op in zip(tgraph.graph.nodes, tgraph.ops, strict=True):
        rule = op.relaxation
        if rule is None or not node.inputs or node.inputs[0] in tgraph.constants:
            continue
        if rule.free_slopes or op.kink_at_zero:
            found.append(SmoothLayer(node.name, node.inputs[0], tuple(tgraph.graph.shapes[node.inputs[0]]),
                                     kink=not rule.free_slopes))
    return found


@dataclass(frozen=True)
class _Domains:
    """``M`` domains: value -> flat bounds ``(M, size)``; node -> slopes ``(M, K*R, size, 2)``
    (float32: every slope gets its certified bias, so the narrower type loses nothing but
    tightness); row bounds ``(M, K, R)`` (the best certified so far); branching scores
    ``(M, neurons)`` over the layers' neurons in order."""

    bounds: dict[str, Bounds]
    slopes: dict[str, Tensor]
    rows: Tensor
    scores: Tensor

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def take(self, index: Tensor) -> _Domains:
        return _Domains({k: (lo[index], hi[index]) for k, (lo, hi) in self.bounds.items()},
                        {k: v[index] for k, v in self.slopes.items()}, self.rows[index], self.scores[index])

    @staticmethod
    def cat(parts: list[_Domains]) -> _Domains:
        first = parts[0]
        return _Domains({k: (torch.cat([p.bounds[k][0] for p in parts]), torch.cat([p.bounds[k][1] for p in parts]))
                         for k in first.bounds},
                        {k: torch.cat([p.slopes[k] for p in parts]) for k in first.slopes},
                        torch.cat([p.rows for p in parts]), torch.cat([p.scores for p in parts]))


@dataclass(frozen=True)
class Candidates:
    """Where a search's candidate points are checked: the attack-precision graph, the region
    (its clauses give the margin) and the onnxruntime re-check."""

    attack_graph: TorchGraph
    region: Region
    confirm: Confirm


class NeuronSplitSearch:
    """The search on a region's open clauses (see the module docstring); :meth:`run` resumes
    where the last call stopped. Without ``candidates`` no point is checked (never ``sat``)."""

    def __init__(self, bounds_graph: TorchGraph, lower: Tensor, upper: Tensor, clauses: list[Clause], root: Crown,
                 config: NeuronSplitConfig | None = None, candidates: Candidates | None = None) -> None:
        self.tgraph, self.config, self.candidates = bounds_graph, config or NeuronSplitConfig(), candidates
        self.layers = split_layers(bounds_graph)
        self.free = [layer for layer in self.layers if not layer.kink]  # the layers with slopes
        self.nodes = {node.name: node for node in bounds_graph.graph.nodes}
        place = bounds_graph.place
        self.lower, self.upper = lower.to(place.device, place.dtype), upper.to(place.device, place.dtype)
        self.c, self.d, self.mask, self.strict = stack_clauses(tuple(clauses), place.device, place.dtype)
        self.k, self.r = self.d.shape
        self.rows = self.c.reshape(self.k * self.r, -1)
        names = {layer.value for layer in self.layers} | set(root.refined)
        bounds = {name: (root.bounds[name][0].reshape(1, -1).detach(), root.bounds[name][1].reshape(1, -1).detach())
                  for name in names if name in root.bounds}
        self.store: _Domains | None = None
        self.root = _Domains(bounds, {}, torch.full((1, self.k, self.r), -torch.inf, dtype=torch.float64,
                                                    device=place.device), torch.zeros(1, 0, device=place.device))
        self.final: Status | None = None if clauses and self.layers else Status.UNKNOWN
        if not clauses:
            self.final = Status.UNSAT
        self.round_seconds = 0.0
        self.unsplittable = 0
        self.aside = float("inf")  # the lowest bound of the domains set aside as unsplittable

    def run(self, deadline: Deadline) -> BabOutcome:
        """Searches until decided or ``deadline`` (``timeout``; a later call resumes): ``sat``
        when a domain's corner was confirmed; ``unsat`` when every domain refuted every
        clause; ``unknown`` when the store outgrew
        ``config.max_domains``, or when the domains left were set aside as unsplittable (no
        neuron with a positive score: a point interval, or no coefficient in the hardest row)."""
        stats = BabStats()
        rounds_here = 0
        check = None if self.candidates is None else CandidateSearch(
            self.candidates.attack_graph, self.candidates.region, self.candidates.confirm, stats,
            self.config.candidates_per_round, 0, self.config.stepped_per_round)
        while self.final is None:
            if deadline.expired() or (rounds_here and deadline.remaining() < self.round_seconds):
                break
            began = time.monotonic()
            if self.store is None:
                self.store = self._bound(self.root, self.config.root_iterations, deadline, stats, check)
            else:
                self._round(deadline, stats, check)
            self.round_seconds = time.monotonic() - began
            stats.seconds_bounding += self.round_seconds
            stats.rounds += 1
            rounds_here += 1
            if self.final is Status.SAT:
                break
            if self.store.size == 0:
                self.final = Status.UNKNOWN if self.unsplittable else Status.UNSAT
            elif self.store.size > self.config.max_domains:
                stats.extra["gave_up_queue"] = self.store.size
                self.final = Status.UNKNOWN
        stats.max_queue = self.store.size if self.store is not None else 0
        stats.unsplittable = self.unsplittable
        stats.extra["lowest_bound"] = self.lowest_bound()
        return BabOutcome(self.final or Status.TIMEOUT, stats)

    def lowest_bound(self) -> float:
        """The lowest hardness (best row of the hardest open clause) over the stored domains and
        those set aside: a certified lower bound over the region of that clause's best row
        (``inf`` once none is left, ``-inf`` before the root is bounded)."""
        if self.store is None:
            return -float("inf")
        if self.store.size == 0:
            return self.aside
        return min(self.aside, float(hardest_rows(self.store.rows, self._open(self.store.rows))[1].min()))

    def _open(self, rows: Tensor) -> Tensor:
        """Clauses ``(M, K)`` with no positive row."""
        return ~(rows > 0).any(dim=2)

    def _round(self, deadline: Deadline, stats: BabStats, check: CandidateSearch | None) -> None:
        """Splits the ``config.batch`` domains with the lowest bound and bounds their children."""
        store = self.store
        assert store is not None
        hardness = hardest_rows(store.rows, self._open(store.rows))[1]
        order = torch.argsort(hardness)
        take, keep = order[: self.config.batch], order[self.config.batch:]
        parents, rest = store.take(take), store.take(keep)
        splittable = (parents.scores > 0).any(dim=1)
        if not bool(splittable.all()):  # set aside: no neuron whose split could help
            self.unsplittable += int((~splittable).sum())
            self.aside = min(self.aside, float(hardness[take][~splittable].min()))
        parents = parents.take(torch.nonzero(splittable).flatten())
        if parents.size == 0:
            self.store = rest
            return
        children = self._split(parents)
        bounded = self._bound(children, self.config.iterations, deadline, stats, check)
        self.store = _Domains.cat([rest, bounded]) if bounded.size else rest

    def _crown(self, domains: _Domains) -> Crown:
        """CROWN over ``domains.size`` copies of the box with the domains' intervals."""
        shape = self.tgraph.graph.inputs[0].shape
        m = domains.size
        lo = self.lower.reshape(1, *shape).expand(m, *shape)
        hi = self.upper.reshape(1, *shape).expand(m, *shape)
        config = CrownConfig(intermediate=self.config.refine_intermediate)
        return Crown(self.tgraph, [lo], [hi], config, prior=domains.bounds)

    def _start(self, crown: Crown, domains: _Domains) -> dict[str, Tensor]:
        """The slopes to start from: the domains' own, else CROWN's lines on their intervals."""
        out = {}
        for layer in self.free:
            kept = domains.slopes.get(layer.node)
            if kept is not None:
                out[layer.node] = kept.to(crown.tgraph.place.dtype)
                continue
            relaxation = crown.table.relaxation(self.nodes[layer.node], crown.config.relu_mode)
            assert relaxation is not None
            both = torch.stack([relaxation.lower_slope, relaxation.upper_slope], dim=-1).reshape(domains.size, 1, -1, 2)
            out[layer.node] = both.expand(-1, self.k * self.r, -1, -1).clone()
        return out

    def _multipliers(self, domains: _Domains, slopes: dict[str, Tensor]) -> Multipliers:
        mult = Multipliers()
        for layer in self.free:
            mult.slopes[(layer.node, FINAL)] = slopes[layer.node].reshape(domains.size, -1, *layer.shape, 2)
        return mult

    def _spec_rows(self, crown: Crown, mult: Multipliers) -> Tensor:
        raw = crown.lower_bound(self.rows, mult).to(self.d.dtype).reshape(-1, self.k, self.r)
        return spec_rows(raw, self.d, self.mask, self.strict)

    def _bound(self, domains: _Domains, iterations: int, deadline: Deadline, stats: BabStats,
               check: CandidateSearch | None = None) -> _Domains:
        """The domains with their best rows (at least their stored ones), slopes and branching
        scores after ``iterations`` Adam steps, less those refuted or empty; their corners
        are offered to ``check`` (a confirmed one sets :attr:`final` to ``sat``)."""
        crown = self._crown(domains)
        crown.record.relu = True  # the last pass's coefficients guide branching (kept by reference: free)
        best, kept = self._optimise(crown, domains, iterations, deadline)
        stats.domains_bounded += domains.size
        alive = self._open(best).any(dim=1) & ~self._empty(crown, domains.size)
        corners = self._corners(crown, best) if check is not None and bool(alive.any()) else None
        if check is not None and corners is not None and check.offer(corners[alive]):
            self.final = Status.SAT
        stats.domains_proven += int((~alive).sum())
        index = torch.nonzero(alive).flatten()
        bounds = {name: (crown.bounds[name][0].reshape(domains.size, -1)[index],
                         crown.bounds[name][1].reshape(domains.size, -1)[index]) for name in domains.bounds}
        out = _Domains(bounds, {k: v[index] for k, v in kept.items()}, best[index], best.new_zeros(index.numel(), 0))
        scores = self._scores(crown, out, index)
        return _Domains(out.bounds, {k: v.float() for k, v in out.slopes.items()}, out.rows, scores)

    def _optimise(self, crown: Crown, domains: _Domains, iterations: int,
                  deadline: Deadline) -> tuple[Tensor, dict[str, Tensor]]:
        """Adam steps on the slopes from the domains' own; returns the best rows ``(M, K, R)``
        (at least the stored ones: a parent's bound holds on its children) and the slopes of
        each domain's best iterate."""
        slopes = {k: v.detach().clone().requires_grad_(True) for k, v in self._start(crown, domains).items()}
        spans = self._spans(crown, domains)
        optimiser = Adam([([slopes[k]], self.config.learning_rate * float((hi - lo).mean().clamp(min=1e-6)))
                          for k, (lo, hi) in spans.items()])
        best, kept = domains.rows.clone(), {k: v.detach().clone() for k, v in slopes.items()}
        with torch.enable_grad():
            for step in range(iterations + 1):
                rows = self._spec_rows(crown, self._multipliers(domains, slopes))
                better = rows.detach().amax(dim=2).clamp(max=0).sum(dim=1) > best.amax(dim=2).clamp(max=0).sum(dim=1)
                for key, value in slopes.items():
                    kept[key] = torch.where(better.reshape(-1, 1, 1, 1), value.detach(), kept[key])
                best = torch.maximum(best, rows.detach())
                wanted = self._open(best)
                if step == iterations or not bool(wanted.any()) or deadline.expired() or not rows.requires_grad:
                    break
                optimiser.zero_grad()
                (-torch.where(wanted.unsqueeze(2) & self.mask, rows, 0.0).sum()).backward()
                optimiser.step()
                with torch.no_grad():
                    for key, (lo, hi) in spans.items():
                        slopes[key].clamp_(lo, hi)
        return best, kept

    def _corners(self, crown: Crown, rows: Tensor) -> Tensor | None:
        """``(M, n)``: per domain, the box corner minimising the linear bound of its hardest open
        row in ``crown``'s last pass (a candidate point only, never a bound); None when that
        pass recorded no input coefficients."""
        recorded = list(crown.input_coefficients.values())
        if len(recorded) != 1:
            return None
        coefficients = recorded[0]
        a = coefficients.reshape(coefficients.shape[0], coefficients.shape[1], -1)
        row = hardest_rows(rows, self._open(rows))[2].clamp(max=a.shape[1] - 1).to(a.device)
        a = a[torch.arange(a.shape[0], device=a.device), row]
        return minimising_corners(a, self.lower.reshape(1, -1), self.upper.reshape(1, -1))

    def _empty(self, crown: Crown, m: int) -> Tensor:
        """``(M,)``: domains with a crossed interval (``lo > hi``) among the stored values:
        certified bounds of a value over a domain cross only when no input reaches the domain."""
        empty = torch.zeros(m, dtype=torch.bool, device=self.lower.device)
        for name in self.root.bounds:
            lo, hi = crown.bounds[name]
            empty |= (lo > hi).reshape(m, -1).any(dim=1)
        return empty

    def _spans(self, crown: Crown, domains: _Domains) -> dict[str, Bounds]:
        """Per layer, the slopes' search range ``(M, 1, size, 1)`` on the domains' intervals."""
        out = {}
        for layer in self.free:
            rule = crown.tgraph.op_of[layer.node].relaxation
            assert rule is not None and rule.span is not None
            lo, hi = crown.bounds[layer.value]
            node = self.nodes[layer.node]
            flat_lo, flat_hi = lo.reshape(domains.size, -1), hi.reshape(domains.size, -1)
            _, safe_lo, safe_hi = free_boxes(node, flat_lo, flat_hi, rule.domain)
            least, most = rule.span(node, safe_lo, safe_hi)
            dtype = crown.tgraph.place.dtype
            out[layer.node] = (least.to(dtype).reshape(domains.size, 1, -1, 1),
                               most.to(dtype).reshape(domains.size, 1, -1, 1))
        return out

    def _split(self, parents: _Domains) -> _Domains:
        """Two children per parent (the first ``M`` below the split point, the next ``M``
        above), split at the neuron with the largest score: at its interval's midpoint, or at 0
        for a ReLU-like neuron (its score is 0 unless its interval holds 0 inside)."""
        best = parents.scores.argmax(dim=1)
        ends = torch.tensor([0] + [math.prod(layer.shape) for layer in self.layers]).cumsum(0).tolist()
        low, high = {}, {}
        for name, (lo, hi) in parents.bounds.items():
            low[name], high[name] = (lo.clone(), hi.clone()), (lo.clone(), hi.clone())
        rows = torch.arange(parents.size, device=best.device)
        for i, layer in enumerate(self.layers):
            mine = (best >= ends[i]) & (best < ends[i + 1])
            if not bool(mine.any()):
                continue
            where, neuron = rows[mine], best[mine] - ends[i]
            lo, hi = parents.bounds[layer.value]
            mid = lo[where, neuron] / 2 + hi[where, neuron] / 2
            if layer.kink:
                mid = torch.zeros_like(mid).clamp(lo[where, neuron], hi[where, neuron])
            low[layer.value][1][where, neuron] = mid
            high[layer.value][0][where, neuron] = mid
        return _Domains({k: (torch.cat([low[k][0], high[k][0]]), torch.cat([low[k][1], high[k][1]])) for k in low},
                        {k: torch.cat([v, v]) for k, v in parents.slopes.items()},
                        torch.cat([parents.rows, parents.rows]), torch.cat([parents.scores, parents.scores]))

    def _scores(self, crown: Crown, domains: _Domains, index: Tensor) -> Tensor:
        """``(M, neurons)``: ``|a| * gap`` of every neuron of ``domains`` (rows ``index`` of
        ``crown``'s batch), ``a`` its coefficient in the domain's hardest row in ``crown``'s
        last pass, ``gap`` the largest distance between that row's two lines (the domain's
        slopes) on the neuron's interval (0 where the interval has no width)."""
        row = hardest_rows(domains.rows, self._open(domains.rows))[2]
        out = []
        with torch.no_grad():
            for layer in self.layers:
                relaxed = crown.record.relaxed.get(layer.node)
                size = math.prod(layer.shape)
                if relaxed is None:  # no coefficient reached the node (all stable or cut)
                    out.append(torch.zeros(index.numel(), size, dtype=torch.float64, device=index.device))
                    continue
                coeff = relaxed.reshape(crown.batch, self.k * self.r, -1)[index]
                a = coeff.gather(1, row.reshape(-1, 1, 1).expand(-1, 1, coeff.shape[2])).squeeze(1)
                if layer.kink:
                    out.append(a.abs() * _kink_gap(*domains.bounds[layer.value]))
                    continue
                mine = domains.slopes[layer.node]
                pick = mine.gather(1, row.reshape(-1, 1, 1, 1).expand(-1, 1, *mine.shape[2:])).squeeze(1)
                out.append(a.abs() * self._gap(layer, pick, *domains.bounds[layer.value]))
        return torch.cat(out, dim=1).float()

    def _gap(self, layer: SmoothLayer, slopes: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """``(M, size)``: the largest distance between the lines of ``slopes`` ``(M, size, 2)``
        on ``[lo, hi]`` (0 where the interval is not finite with ``lo < hi``)."""
        rule = self.tgraph.op_of[layer.node].relaxation
        assert rule is not None and rule.line is not None
        node = self.nodes[layer.node]
        free, lo64, hi64 = free_boxes(node, lo, hi, rule.domain)
        a_l, a_u = slopes[..., 0].double(), slopes[..., 1].double()
        b_l, b_u = rule.line(node, a_l, lo64, hi64, False), rule.line(node, a_u, lo64, hi64, True)
        gap = torch.maximum((a_u - a_l) * lo64 + b_u - b_l, (a_u - a_l) * hi64 + b_u - b_l)
        return torch.where(free, torch.nan_to_num(gap, nan=0.0, posinf=0.0), 0.0).to(lo.dtype)


def _kink_gap(lo: Tensor, hi: Tensor) -> Tensor:
    """``(M, size)``: the largest distance ``-lo hi / (hi - lo)`` between a ReLU and the upper
    line of its relaxation on ``[lo, hi]`` where the interval holds 0 inside, else 0."""
    unstable = (lo < 0) & (hi > 0)
    width = torch.where(unstable, hi - lo, 1.0)
    return torch.where(unstable, -lo * hi / width, 0.0).nan_to_num(nan=0.0, posinf=0.0)
