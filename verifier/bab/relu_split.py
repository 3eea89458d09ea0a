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
domain (BaBSR score, or filtered smart branching: the best few by that score are each tried
with one CROWN pass on both children, and the neuron whose worse child is best wins), and
bounds both children together. A child is discarded once every open clause has a row with a
positive certified bound.

Soundness:
- the children ``x_j >= 0`` and ``x_j <= 0`` cover their parent, so once every domain is
  refuted the region is;
- clamping ``x_j``'s bounds to the split's side is valid on the child's domain;
- every bound is a CROWN bound (sound for the float32 model, see
  :mod:`verifier.bounds.crown`) with slopes in their valid range (any such slope is sound)
  and ``beta >= 0`` (any such multiplier is sound: Lagrangian relaxation).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bab.common import BabOutcome, BabStats, CandidateSearch, Confirm
from verifier.bounds.crown import FINAL, Crown, CrownConfig
from verifier.bounds.objective import crown_rows, spec_rows, stack_clauses
from verifier.config import ReluSplitConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.ops.relax import relax_leaky
from verifier.result import Status
from verifier.spec.types import Clause, Region

Bounds = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class _Layer:
    """A splittable node: its name, input value, flat size, valid slope range and the offset of
    its neurons in the concatenation of all splittable nodes."""

    node: str
    value: str
    size: int
    span: tuple[float, float]
    offset: int


@dataclass(frozen=True)
class _Domains:
    """A batch of ``M`` domains (see the module docstring).

    ``bounds``: value -> flat ``(M, size)`` lower and upper bounds; ``split``: node -> ``(M,
    size)`` int8 (+1 active, -1 inactive, 0 not split); ``alpha`` and ``beta``: node -> ``(M,
    R, size)`` float32; ``open``: ``(M, K)`` clauses not refuted; ``hardness``: ``(M,)`` the
    hardest open clause's best row bound (lower: further from refuted)."""

    bounds: dict[str, Bounds]
    split: dict[str, Tensor]
    alpha: dict[str, Tensor]
    beta: dict[str, Tensor]
    open: Tensor
    hardness: Tensor

    @property
    def size(self) -> int:
        return int(self.open.shape[0])

    def take(self, index: Tensor) -> _Domains:
        """The domains at ``index`` (a bool mask or indices)."""
        return _Domains({k: (lo[index], hi[index]) for k, (lo, hi) in self.bounds.items()},
                        {k: v[index] for k, v in self.split.items()}, {k: v[index] for k, v in self.alpha.items()},
                        {k: v[index] for k, v in self.beta.items()}, self.open[index], self.hardness[index])

    def repeat(self, times: int) -> _Domains:
        """``times`` copies of the batch, one after the other."""
        def rep(t: Tensor) -> Tensor:
            return t.repeat(times, *([1] * (t.dim() - 1)))

        return _Domains({k: (rep(lo), rep(hi)) for k, (lo, hi) in self.bounds.items()},
                        {k: rep(v) for k, v in self.split.items()}, {k: rep(v) for k, v in self.alpha.items()},
                        {k: rep(v) for k, v in self.beta.items()}, rep(self.open), rep(self.hardness))


def _cat(parts: Sequence[_Domains]) -> _Domains:
    first = parts[0]
    if len(parts) == 1:
        return first
    return _Domains({k: (torch.cat([p.bounds[k][0] for p in parts]), torch.cat([p.bounds[k][1] for p in parts]))
                     for k in first.bounds},
                    {k: torch.cat([p.split[k] for p in parts]) for k in first.split},
                    {k: torch.cat([p.alpha[k] for p in parts]) for k in first.alpha},
                    {k: torch.cat([p.beta[k] for p in parts]) for k in first.beta},
                    torch.cat([p.open for p in parts]), torch.cat([p.hardness for p in parts]))


@dataclass(frozen=True)
class _Bounded:
    """What bounding a batch gives: best row bounds ``(M, K, R)``, the slopes and multipliers
    of the best iterate, the stored values' bounds, the final rows' coefficients on each
    splittable node's output ``(M, K*R, size)`` and the input corner minimising each row's
    linear bound ``(M, K*R, n)``."""

    rows: Tensor
    alpha: dict[str, Tensor]
    beta: dict[str, Tensor]
    bounds: dict[str, Bounds]
    coefficients: dict[str, Tensor]
    corners: Tensor


class _BetaBounder:
    """beta-CROWN on batches of domains of one region."""

    def __init__(self, tgraph: TorchGraph, layers: Sequence[_Layer], lower: Tensor, upper: Tensor,
                 clauses: Sequence[Clause], config: ReluSplitConfig) -> None:
        self.tgraph, self.layers, self.config = tgraph, tuple(layers), config
        place = tgraph.place
        self.lower, self.upper = lower.to(place.device, place.dtype), upper.to(place.device, place.dtype)
        self.c, self.d, self.mask, self.strict = stack_clauses(tuple(clauses), place.device, place.dtype)
        self.k, self.r = self.d.shape
        self.rows = self.c.reshape(self.k * self.r, -1)
        self.input = tgraph.graph.inputs[0]

    def crown(self, domains: _Domains, refine: bool) -> Crown:
        """CROWN over ``domains.size`` copies of the box with the domains' intermediate bounds
        (recomputed by CROWN from them with ``refine``)."""
        m = domains.size
        shape = self.input.shape
        lo = self.lower.reshape(1, *shape).expand(m, *shape)
        hi = self.upper.reshape(1, *shape).expand(m, *shape)
        return Crown(self.tgraph, [lo], [hi], CrownConfig(intermediate=refine), prior=domains.bounds)

    def _set(self, crown: Crown, domains: _Domains, alpha: Mapping[str, Tensor], beta: Mapping[str, Tensor]) -> None:
        for layer in self.layers:
            shape = self.tgraph.graph.shapes[layer.value]
            m = domains.size
            crown.alpha[(layer.node, FINAL)] = alpha[layer.node].reshape(m, -1, *shape)
            sign = domains.split[layer.node].to(crown.tgraph.place.dtype).unsqueeze(1)
            crown.beta[layer.node] = (beta[layer.node] * sign).reshape(m, -1, *shape)

    def spec_rows(self, crown: Crown) -> Tensor:
        """Certified lower bounds ``(M, K, R)`` of the spec rows ``C y - d`` (padding -inf)."""
        raw = crown.lower_bound(self.rows).reshape(-1, self.k, self.r)
        return spec_rows(raw, self.d, self.mask, self.strict)

    def quick(self, domains: _Domains) -> Tensor:
        """Row bounds ``(M, K, R)`` with the domains' own slopes and multipliers, no optimisation."""
        with torch.no_grad():
            crown = self.crown(domains, refine=False)
            dtype = self.tgraph.place.dtype
            self._set(crown, domains, {k: v.to(dtype) for k, v in domains.alpha.items()},
                      {k: v.to(dtype) for k, v in domains.beta.items()})
            return self.spec_rows(crown)

    def __call__(self, domains: _Domains, iterations: int, deadline: Deadline) -> _Bounded:
        """Optimises ``alpha`` and ``beta`` of every domain for ``iterations`` Adam steps (fewer
        once every domain is refuted, or at ``deadline``); every iterate's bound is certified
        and the best per row is kept."""
        dtype = self.tgraph.place.dtype
        crown = self.crown(domains, refine=self.config.refine_intermediate)
        alpha = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in domains.alpha.items()}
        beta = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in domains.beta.items()}
        optimiser = torch.optim.Adam([{"params": list(alpha.values()), "lr": self.config.learning_rate_alpha},
                                      {"params": list(beta.values()), "lr": self.config.learning_rate_beta}])
        best = torch.full((domains.size, self.k, self.r), -torch.inf, dtype=dtype, device=self.lower.device)
        keep_alpha = {k: v.detach().clone() for k, v in alpha.items()}
        keep_beta = {k: v.detach().clone() for k, v in beta.items()}
        best_score = torch.full((domains.size,), -torch.inf, dtype=dtype, device=self.lower.device)
        with torch.enable_grad():
            for step in range(iterations):
                self._set(crown, domains, alpha, beta)
                rows = self.spec_rows(crown)
                best = torch.maximum(best, rows.detach())
                score = _score(rows.detach(), domains.open)
                better = score > best_score
                best_score = torch.where(better, score, best_score)
                for store, source in ((keep_alpha, alpha), (keep_beta, beta)):
                    for key, value in source.items():
                        where = better.reshape(-1, *([1] * (value.dim() - 1)))
                        store[key] = torch.where(where, value.detach(), store[key])
                active = domains.open & ~(best > 0).any(dim=2)
                if not bool(active.any()) or deadline.expired() or step == iterations - 1:
                    break
                objective = torch.where(active.unsqueeze(2) & self.mask, rows, 0.0).sum()
                if not objective.requires_grad:
                    break
                optimiser.zero_grad()
                (-objective).backward()
                optimiser.step()
                with torch.no_grad():
                    for layer in self.layers:
                        alpha[layer.node].clamp_(*layer.span)
                        beta[layer.node].clamp_(min=0.0)
        with torch.no_grad():  # the kept iterate once more: its coefficients guide branching
            crown.record.relu = True
            self._set(crown, domains, keep_alpha, keep_beta)
            best = torch.maximum(best, self.spec_rows(crown))
            relaxed = crown.record.relaxed
            coefficients = {layer.node: relaxed[layer.node].reshape(domains.size, self.k * self.r, -1)
                            for layer in self.layers if layer.node in relaxed}
            a = crown.input_coefficients[self.input.name].reshape(domains.size, self.k * self.r, -1)
            corners = torch.where(a > 0, self.lower.reshape(1, 1, -1), self.upper.reshape(1, 1, -1))
            bounds = {name: (crown.bounds[name][0].reshape(domains.size, -1), crown.bounds[name][1].reshape(domains.size, -1))
                      for name in domains.bounds}
        return _Bounded(best, {k: v.float() for k, v in keep_alpha.items()}, {k: v.float() for k, v in keep_beta.items()},
                        bounds, coefficients, corners)


def _score(rows: Tensor, open_: Tensor) -> Tensor:
    """Per domain, the sum over open clauses of their best row, capped at 0 (a refuted clause
    counts as 0): the quantity whose best iterate is kept."""
    best_row = rows.amax(dim=2).clamp(max=0.0)
    return torch.where(open_, best_row, 0.0).sum(dim=1)


def _hardest(rows: Tensor, open_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For row bounds ``(M, K, R)``: the clauses still open ``(M, K)``, the hardness ``(M,)``
    (the hardest open clause's best row; +inf when none is open) and that row's flat index
    ``k * R + r`` ``(M,)``."""
    still_open = open_ & ~(rows > 0).any(dim=2)
    best_row, row_index = rows.max(dim=2)
    best_row = torch.where(still_open, best_row, torch.inf)
    hardness, clause = best_row.min(dim=1)
    row = row_index.gather(1, clause.unsqueeze(1)).squeeze(1)
    return still_open, hardness, clause * rows.shape[2] + row


class _Brancher:
    """Chooses the neuron to split in each domain (BaBSR scores, filtered by FSB)."""

    def __init__(self, layers: Sequence[_Layer], bounder: _BetaBounder, config: ReluSplitConfig) -> None:
        self.layers, self.bounder, self.config = tuple(layers), bounder, config

    def scores(self, domains: _Domains, coefficients: Mapping[str, Tensor], row: Tensor) -> Tensor:
        """BaBSR-style scores ``(M, total)`` of every neuron; -inf where not splittable.

        For an unstable neuron with input bounds ``l < 0 < u``, the upper line's intercept
        ``-l u / (u - l)`` is what the relaxation loses; it weighs the row's coefficient on the
        neuron's output (fully when negative: that side uses the upper line)."""
        parts = []
        m = domains.size
        for layer in self.layers:
            lo, hi = domains.bounds[layer.value]
            unstable = (lo < 0) & (hi > 0) & (domains.split[layer.node] == 0)
            coeff = coefficients.get(layer.node)
            if coeff is None:
                parts.append(torch.full_like(lo, -torch.inf))
                continue
            a = coeff[torch.arange(m, device=lo.device), row]
            intercept = torch.where(unstable, -lo * hi / torch.where(unstable, hi - lo, 1.0), 0.0)
            score = (a.clamp(max=0).neg() + 0.25 * a.clamp(min=0)) * intercept
            parts.append(torch.where(unstable, score, -torch.inf))
        return torch.cat(parts, dim=1)

    def choose(self, domains: _Domains, coefficients: Mapping[str, Tensor], row: Tensor) -> Tensor:
        """The neuron (flat index over all splittable nodes) to split in each domain; -1 where
        no neuron is unstable."""
        scores = self.scores(domains, coefficients, row)
        k = min(self.config.candidates if self.config.branching == "fsb" else 1, scores.shape[1])
        top_scores, top = scores.topk(k, dim=1)
        valid = top_scores > -torch.inf
        none_left = ~valid[:, 0]
        if k == 1:
            return torch.where(none_left, -1, top[:, 0])
        # filtered smart branching: bound both children of every candidate with one pass
        m = domains.size
        flat = top.T.reshape(-1)  # candidate-major: (k * m,)
        parents = domains.repeat(k)
        coeffs = {key: value.repeat(k, 1, 1) for key, value in coefficients.items()}
        children = _cat([_apply_split(parents, self.layers, flat, +1, coeffs),
                         _apply_split(parents, self.layers, flat, -1, coeffs)])
        rows = self.bounder.quick(children)
        _, hardness, _ = _hardest(rows, children.open)
        worse = torch.minimum(hardness[: k * m], hardness[k * m:]).reshape(k, m).T
        worse = torch.where(valid, worse, -torch.inf)
        # the BaBSR order breaks ties (topk is sorted, argmax picks the first maximum)
        pick = worse.argmax(dim=1)
        chosen = top.gather(1, pick.unsqueeze(1)).squeeze(1)
        return torch.where(none_left, -1, chosen)


def _apply_split(domains: _Domains, layers: Sequence[_Layer], neuron: Tensor, side: int,
                 coefficients: Mapping[str, Tensor]) -> _Domains:
    """Copies of ``domains`` with neuron ``neuron`` (flat index, one per domain, all valid) split
    on ``side`` (+1: ``x >= 0``, -1: ``x <= 0``): its bounds are clamped and its split recorded.

    Its multiplier starts where the child's bound repeats the parent's lower line: with the
    parent's coefficient ``a`` on the neuron's output and lower slope ``alpha`` (leak
    ``lam``), the child's exact piece gives ``x`` the coefficient ``a - beta`` (active) or
    ``a lam + beta`` (inactive); ``beta = relu(a) (1 - alpha)`` or ``relu(a) (alpha - lam)``
    makes it ``a alpha`` where the parent used the lower line (``a > 0``). Where ``a < 0`` the
    exact piece already lies below the parent's upper line on ``[l, u]`` and beta starts at 0.
    Any ``beta >= 0`` is sound; this only warm-starts the optimisation."""
    bounds, split, beta = dict(domains.bounds), dict(domains.split), dict(domains.beta)
    rows = torch.arange(domains.size, device=neuron.device)
    for layer in layers:
        inside = (neuron >= layer.offset) & (neuron < layer.offset + layer.size)
        if not bool(inside.any()):
            continue
        r, p = rows[inside], neuron[inside] - layer.offset
        lo, hi = bounds[layer.value]
        lo, hi = lo.clone(), hi.clone()
        if side > 0:
            lo[r, p] = torch.clamp(lo[r, p], min=0.0)
        else:
            hi[r, p] = torch.clamp(hi[r, p], max=0.0)
        bounds[layer.value] = (lo, hi)
        marks = split[layer.node].clone()
        marks[r, p] = side
        split[layer.node] = marks
        coeff = coefficients.get(layer.node)
        if coeff is not None:
            a = coeff[r, :, p].clamp(min=0).float()
            alpha = domains.alpha[layer.node][r, :, p]
            start = a * ((1.0 - alpha) if side > 0 else (alpha - layer.span[0]))
            multipliers = beta[layer.node].clone()
            multipliers[r, :, p] = start.clamp(min=0.0)
            beta[layer.node] = multipliers
    return _Domains(bounds, split, domains.alpha, beta, domains.open, domains.hardness)


def splittable_layers(tgraph: TorchGraph) -> list[_Layer]:
    """The ReLU-like nodes (a :meth:`~verifier.ops.base.Op.lower_slope_range`) on one dynamic input."""
    layers: list[_Layer] = []
    offset = 0
    for node, op in zip(tgraph.graph.nodes, tgraph.ops, strict=True):
        span = op.lower_slope_range(node)
        if span is None or not node.inputs or node.inputs[0] in tgraph.constants:
            continue
        size = int(torch.Size(tgraph.graph.shapes[node.inputs[0]]).numel())
        layers.append(_Layer(node.name, node.inputs[0], size, span, offset))
        offset += size
    return layers


def count_unstable(bounds: Mapping[str, Bounds], tgraph: TorchGraph) -> int:
    """Unstable neurons (``l < 0 < u``) of the splittable nodes under ``bounds`` (value ->
    bounds of any shape, batch 1)."""
    total = 0
    for layer in splittable_layers(tgraph):
        if layer.value in bounds:
            lo, hi = bounds[layer.value]
            total += int(((lo < 0) & (hi > 0)).sum())
    return total


def _root(tgraph: TorchGraph, layers: Sequence[_Layer], crown: Crown, k: int, r: int) -> _Domains:
    """The root domain from a CROWN object over the region's box (batch 1): its bounds of the
    pre-activations and of every value it refined, CROWN's slopes, zero multipliers."""
    names = {layer.value for layer in layers} | set(crown.refined)
    bounds = {name: (crown.bounds[name][0].reshape(1, -1).detach(), crown.bounds[name][1].reshape(1, -1).detach())
              for name in names if name in crown.bounds}
    split, alpha, beta = {}, {}, {}
    for layer in layers:
        lo, hi = bounds[layer.value]
        leak = layer.span[0] if layer.span[0] > 0 else 0.0
        slope = relax_leaky(lo, hi, leak).lower_slope.clamp(*layer.span)
        split[layer.node] = torch.zeros(1, layer.size, dtype=torch.int8, device=lo.device)
        alpha[layer.node] = slope.unsqueeze(1).expand(1, k * r, layer.size).float().clone()
        beta[layer.node] = torch.zeros(1, k * r, layer.size, dtype=torch.float32, device=lo.device)
    device = tgraph.place.device
    return _Domains(bounds, split, alpha, beta, torch.ones(1, k, dtype=torch.bool, device=device),
                    torch.full((1,), -torch.inf, dtype=torch.float64, device=device))


def _batch_size(layers: Sequence[_Layer], tgraph: TorchGraph, rows: int, config: ReluSplitConfig) -> int:
    """Domains per round so that one round's tensors fit ``config.batch_memory`` bytes: each of
    the ``2`` children (``2 * candidates`` in the branching pass) holds slopes, multipliers,
    their gradients and optimiser state, and backward coefficients for every value, per row."""
    neurons = sum(layer.size for layer in layers)
    values = sum(int(torch.Size(s).numel()) for s in tgraph.graph.shapes.values())
    itemsize = torch.finfo(tgraph.place.dtype).bits // 8
    per_child = rows * (12 * neurons + 3 * values) * itemsize
    children = 2 * max(1, config.candidates if config.branching == "fsb" else 1)
    return int(max(1, min(config.batch, config.batch_memory // max(1, per_child * children))))


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
    """

    def __init__(self, bounds_graph: TorchGraph, attack_graph: TorchGraph, region: Region, clauses: Sequence[Clause],
                 root: Crown, confirm: Confirm, config: ReluSplitConfig | None = None) -> None:
        self.bounds_graph, self.attack_graph, self.region, self.confirm = bounds_graph, attack_graph, region, confirm
        self.config = config or ReluSplitConfig()
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
            self.searches = [_ClauseSearch(bounds_graph, self.layers, root, clause, self.config) for clause in order]

    def run(self, deadline: Deadline) -> BabOutcome:
        """Searches until the outcome is decided or ``deadline`` expires (``timeout``; a later
        call resumes). The statistics count this call's work only. ``unsat`` only when every
        domain of every clause is refuted."""
        stats = BabStats()
        if self.final is None:
            search = CandidateSearch(self.attack_graph, self.region, self.confirm, stats,
                                     self.config.candidates_per_round, self.config.pgd_steps)
            while self.searches:
                current = self.searches[0]
                before = current.unresolved
                status = current.run(search, deadline, stats)
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
                 config: ReluSplitConfig) -> None:
        self.layers, self.root, self.clause, self.config = tuple(layers), root, clause, config
        lower, upper = root.input_bounds[bounds_graph.graph.inputs[0].name]
        self.bounder = _BetaBounder(bounds_graph, layers, lower.reshape(1, -1), upper.reshape(1, -1), [clause], config)
        self.brancher = _Brancher(layers, self.bounder, config)
        self.batch = _batch_size(layers, bounds_graph, self.bounder.k * self.bounder.r, config)
        self.pending: _Pending | None = None  # None until the root has been bounded
        self.row = torch.zeros(0, dtype=torch.long)
        self.store: _Domains | None = None
        self.leaves: _Domains | None = None
        self.unresolved = 0
        self.rounds = 0

    def run(self, search: CandidateSearch, deadline: Deadline, stats: BabStats) -> Status | None:
        """Continues the search until it ends (``sat``, ``unsat``, ``unknown``) or ``deadline``
        expires (None)."""
        config, bounder = self.config, self.bounder
        stats.extra["batch"] = self.batch
        if self.pending is None:
            start = time.monotonic()
            domains = _root(bounder.tgraph, self.layers, self.root, bounder.k, bounder.r)
            self.pending, corners, self.row = _bound(bounder, domains, config.root_iterations, deadline, stats)
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
                self._split_pending(stats)
            size = 0 if self.store is None else self.store.size
            stats.max_queue = max(stats.max_queue, size)
            if self.leaves is not None:
                continue
            if size == 0 or self.store is None:
                break
            if deadline.expired():
                return None
            if size > config.max_domains:
                stats.extra["gave_up_queue"] = size
                return Status.UNKNOWN
            order = torch.argsort(self.store.hardness)
            stats.extra["lowest_open_bound"] = float(self.store.hardness[order[0]])  # the clause's certified bound
            popped, rest = self.store.take(order[: 2 * self.batch]), self.store.take(order[2 * self.batch:])
            self.store = rest if rest.size else None
            begin = time.monotonic()
            self.pending, corners, self.row = _bound(bounder, popped, config.iterations, deadline, stats)
            stats.seconds_bounding += time.monotonic() - begin
            stats.rounds += 1
            self.rounds += 1
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

    def _split_pending(self, stats: BabStats) -> None:
        """Moves the bounded domains still open into the store as children (and those with no
        unstable neuron left into ``leaves``)."""
        assert self.pending is not None
        pending = self.pending
        begin = time.monotonic()
        neuron = self.brancher.choose(pending.domains, pending.coefficients, self.row)
        stats.extra["seconds_branching"] = stats.extra.get("seconds_branching", 0.0) + time.monotonic() - begin
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
            self.store = children if self.store is None else _cat([self.store, children])
        self.pending = _Pending(pending.domains.take(torch.zeros(0, dtype=torch.long, device=neuron.device)),
                                {k: v[:0] for k, v in pending.coefficients.items()})

    def _solve_leaves(self, leaves: _Domains, search: CandidateSearch, deadline: Deadline,
                      stats: BabStats) -> tuple[bool, _Domains | None]:
        """Decides domains with no unstable neuron left exactly: the network is affine on each,
        so the MILP engine, with the domain's bounds and its splits as sign constraints, is a
        linear program. Returns whether a counterexample was confirmed, and the leaves not
        tried before ``deadline`` (None when all were); a leaf the engine cannot decide (it
        gave up, or the network has ops the exact encoding lacks) counts as unresolved."""
        from verifier.exact import ExactUnsupported, MilpConfig, milp_check

        bounder = self.bounder
        tgraph, shape = bounder.tgraph, bounder.input.shape
        for i in range(leaves.size):
            if deadline.expired():
                return False, leaves.take(torch.arange(i, leaves.size, device=leaves.open.device))
            prior = {name: (lo[i : i + 1], hi[i : i + 1]) for name, (lo, hi) in leaves.bounds.items()}
            crown = Crown(tgraph, [bounder.lower.reshape(1, *shape)], [bounder.upper.reshape(1, *shape)],
                          CrownConfig(intermediate=False), prior=prior)
            signs = {layer.value: leaves.split[layer.node][i].cpu().numpy() for layer in self.layers}
            try:
                outcome = milp_check(crown.table, [self.clause], MilpConfig(time_limit=deadline.remaining()), deadline, signs)
            except ExactUnsupported:
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


@dataclass(frozen=True)
class _Pending:
    """Bounded domains not refuted, with their coefficients for branching."""

    domains: _Domains
    coefficients: dict[str, Tensor]

    @property
    def size(self) -> int:
        return self.domains.size


def _bound(bounder: _BetaBounder, domains: _Domains, iterations: int, deadline: Deadline,
           stats: BabStats) -> tuple[_Pending, Tensor, Tensor]:
    """Bounds a batch; returns the domains not refuted (with their new bounds, slopes,
    multipliers, open clauses and hardness), the corner of each one's hardest row ``(P, n)``
    and that row's index ``(P,)``."""
    bounded = bounder(domains, iterations, deadline)
    still_open, hardness, row = _hardest(bounded.rows, domains.open)
    stats.domains_bounded += domains.size
    keep = still_open.any(dim=1)
    stats.domains_proven += int((~keep).sum())
    updated = _Domains(bounded.bounds, domains.split, bounded.alpha, bounded.beta, still_open, hardness).take(keep)
    coefficients = {k: v[keep] for k, v in bounded.coefficients.items()}
    row = row[keep]
    corners = bounded.corners[keep]
    corner = corners[torch.arange(corners.shape[0], device=corners.device), row]
    return _Pending(updated, coefficients), corner, row
