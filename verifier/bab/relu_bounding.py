"""Bounding a batch of ReLU-split domains with beta-CROWN (:mod:`verifier.bab.relu_split`):
Adam steps on the slopes ``alpha`` and the split multipliers ``beta`` jointly, keeping the
best certified iterate, and the domains left open afterwards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.attack.guides import minimising_corners
from verifier.bab.common import BabStats, hardest_rows
from verifier.bab.relu_domains import Bounds, _Domains, _Layer
from verifier.bab.relu_log import log_refuted
from verifier.bounds.ascent import Adam
from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import FINAL, Crown, CrownConfig
from verifier.bounds.objective import spec_rows, stack_clauses
from verifier.certificate.log import ProofLog
from verifier.config import ReluSplitConfig
from verifier.deadline import Deadline
from verifier.exact.small_lp import best_multipliers
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause


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
                 clauses: Sequence[Clause], config: ReluSplitConfig, objectives: Tensor | None = None) -> None:
        """``objectives`` ``(S, K*R, m)``: a domain with ``objective`` ``s`` bounds
        ``objectives[s]`` in place of the clauses' coefficient rows (their offsets, masks and
        strictness still apply); None: every domain bounds the clauses' rows."""
        self.tgraph, self.layers, self.config = tgraph, tuple(layers), config
        place = tgraph.place
        self.lower, self.upper = lower.to(place.device, place.dtype), upper.to(place.device, place.dtype)
        self.c, self.d, self.mask, self.strict = stack_clauses(tuple(clauses), place.device, place.dtype)
        self.k, self.r = self.d.shape
        rows = self.c.reshape(1, self.k * self.r, -1)
        self.objectives = rows if objectives is None else objectives.to(place.device, place.dtype)
        if self.objectives.shape[1:] != rows.shape[1:]:
            raise ValueError(f"objectives of shape {tuple(self.objectives.shape)}, rows {tuple(rows.shape[1:])}")
        self.input = tgraph.graph.inputs[0]

    def rows_of(self, domains: _Domains) -> Tensor:
        """The coefficient rows each domain bounds: ``(K*R, m)`` shared, or ``(M, K*R, m)``."""
        if domains.objective is None:
            return self.objectives[0]
        return self.objectives[domains.objective]

    def crown(self, domains: _Domains, refine: bool) -> Crown:
        """CROWN over ``domains.size`` copies of the box with the domains' intermediate bounds
        (recomputed by CROWN from them with ``refine``)."""
        m = domains.size
        shape = self.input.shape
        lo = self.lower.reshape(1, *shape).expand(m, *shape)
        hi = self.upper.reshape(1, *shape).expand(m, *shape)
        return Crown(self.tgraph, [lo], [hi], CrownConfig(intermediate=refine), prior=domains.bounds)

    def _set(self, crown: Crown, domains: _Domains, alpha: Mapping[str, Tensor],
             beta: Mapping[str, Tensor]) -> Multipliers:
        """The domains' slopes and split multipliers (``beta * s``) in the shapes CROWN takes."""
        mult = Multipliers()
        for layer in self.layers:
            shape = self.tgraph.graph.shapes[layer.value]
            m = domains.size
            mult.slopes[(layer.node, FINAL)] = alpha[layer.node].reshape(m, -1, *shape)
            sign = domains.split[layer.node].to(crown.tgraph.place.dtype).unsqueeze(1)
            mult.betas[layer.node] = (beta[layer.node] * sign).reshape(m, -1, *shape)
        return mult

    def spec_rows(self, crown: Crown, mult: Multipliers, domains: _Domains) -> Tensor:
        """Lower bounds ``(M, K, R)`` of the spec rows ``C y - d`` of ``domains`` (padding
        -inf), in this bounder's dtype: certified unless ``crown`` is an estimating copy
        (``Crown.tiled``)."""
        raw = crown.lower_bound(self.rows_of(domains).to(crown.tgraph.place.dtype), mult).to(self.d.dtype)
        raw = raw.reshape(-1, self.k, self.r)
        return spec_rows(raw, self.d, self.mask, self.strict)

    def quick(self, domains: _Domains, parents: _Domains | None = None, certified: bool = True) -> Tensor:
        """Row bounds ``(M, K, R)`` with the domains' own slopes and multipliers, no optimisation.

        ``certified=False`` (only with ``parents``): estimates in float32 real arithmetic,
        without the float-rounding allowances (:meth:`~verifier.bounds.crown.Crown.tiled`):
        for choosing splits only, never a verdict.

        ``parents``: domains of which these are sub-domains, tiled (domain ``j`` inside parent
        ``j mod parents.size``): the parents' table is built once and tiled
        (:meth:`~verifier.bounds.crown.Crown.tiled`) instead of an interval pass over every
        domain (filtered smart branching bounds 8 children per parent)."""
        with torch.no_grad():
            if parents is None:
                crown = self.crown(domains, refine=False)
            else:
                crown = self.crown(parents, refine=False).tiled(domains.size // parents.size, domains.bounds, certified,
                                                                None if certified else torch.float32)
            dtype = crown.tgraph.place.dtype
            mult = self._set(crown, domains, {k: v.to(dtype) for k, v in domains.alpha.items()},
                             {k: v.to(dtype) for k, v in domains.beta.items()})
            return self.spec_rows(crown, mult, domains)

    def leaf_multipliers(self, leaf: _Domains, cap: float = 1e4) -> dict[str, Tensor] | None:
        """For one domain on which every neuron is decided (stable or split): per node the
        split multipliers ``(1, K*R, size)`` (in ``[0, cap]``) that maximise each row's bound.
        With every line exact there, the bound is an affine function of the input whose
        coefficients are affine in the multipliers; one pass over ``1 + splits`` copies (no
        multiplier, then one per split) gives them, and :func:`~verifier.exact.small_lp.
        best_multipliers` solves the dual linear program (a Farkas certificate where the leaf
        is empty). None when nothing is split or HiGHS finds no optimum. A guide only: the
        caller bounds with them (:meth:`quick`)."""
        where = [(layer, torch.nonzero(leaf.split[layer.node][0]).flatten()) for layer in self.layers]
        count, rows, dtype = sum(int(p.numel()) for _, p in where), self.k * self.r, self.tgraph.place.dtype
        if count == 0:
            return None
        copies, device = leaf.repeat(count + 1), self.lower.device
        beta = {layer.node: torch.zeros(count + 1, rows, layer.size, dtype=dtype, device=device)
                for layer in self.layers}
        first = 1
        for layer, positions in where:
            beta[layer.node][torch.arange(first, first + positions.numel(), device=device), :, positions] = 1.0
            first += positions.numel()
        with torch.no_grad():
            crown = self.crown(copies, refine=False)
            mult = self._set(crown, copies, {k: v.to(dtype) for k, v in copies.alpha.items()}, beta)
            raw = crown.lower_bound(self.rows_of(copies).to(dtype), mult).double().cpu().numpy()
            coeff = crown.input_coefficients[self.input.name].reshape(count + 1, rows, -1).double().cpu().numpy()
        low, high = self.lower.reshape(-1).double().cpu().numpy(), self.upper.reshape(-1).double().cpu().numpy()
        const = raw - (np.maximum(coeff, 0) @ low + np.minimum(coeff, 0) @ high)
        found = np.zeros((rows, count))
        for r in range(rows):
            solved = best_multipliers(coeff[0, r], const[0, r], coeff[1:, r] - coeff[0, r], const[1:, r] - const[0, r],
                                      low, high, cap)
            if solved is None:
                return None
            found[r] = solved
        out, first = {}, 0
        for layer, positions in where:
            out[layer.node] = torch.zeros(1, rows, layer.size, device=leaf.open.device)
            out[layer.node][0][:, positions] = torch.from_numpy(found[:, first:first + positions.numel()]).float()
            first += positions.numel()
        return out

    def __call__(self, domains: _Domains, iterations: int, deadline: Deadline) -> _Bounded:
        """Optimises ``alpha`` and ``beta`` of every domain for ``iterations`` Adam steps (fewer
        once every domain is refuted, or at ``deadline``) and bounds the best iterate once more,
        certified. With ``estimated_steps`` the steps run on a float32 estimating copy
        (:meth:`~verifier.bounds.crown.Crown.tiled`) and only that last pass is a bound;
        otherwise every iterate's bound is certified and the best per row is kept too."""
        crown = self.crown(domains, refine=self.config.refine_intermediate)
        estimated = self.config.estimated_steps
        steps = crown.tiled(1, {}, certified=False, dtype=torch.float32) if estimated else crown
        keep_alpha, keep_beta, best = self._optimise(steps, domains, iterations, deadline)
        dtype = self.tgraph.place.dtype
        with torch.no_grad():  # the kept iterate once more: its coefficients guide branching
            crown.record.relu = True
            mult = self._set(crown, domains, {k: v.to(dtype) for k, v in keep_alpha.items()},
                             {k: v.to(dtype) for k, v in keep_beta.items()})
            last = self.spec_rows(crown, mult, domains)
            best = last if estimated else torch.maximum(best, last)
            relaxed = crown.record.relaxed
            coefficients = {layer.node: relaxed[layer.node].reshape(domains.size, self.k * self.r, -1)
                            for layer in self.layers if layer.node in relaxed}
            a = crown.input_coefficients[self.input.name].reshape(domains.size, self.k * self.r, -1)
            corners = minimising_corners(a, self.lower.reshape(1, 1, -1), self.upper.reshape(1, 1, -1))
            bounds = {name: (crown.bounds[name][0].reshape(domains.size, -1),
                             crown.bounds[name][1].reshape(domains.size, -1))
                      for name in domains.bounds}
        return _Bounded(best, {k: v.float() for k, v in keep_alpha.items()},
                        {k: v.float() for k, v in keep_beta.items()}, bounds, coefficients, corners)

    def _optimise(self, crown: Crown, domains: _Domains, iterations: int,
                  deadline: Deadline) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """Adam steps on ``alpha`` and ``beta`` in ``crown``'s dtype; returns the iterate with
        the best score per domain and the best row bounds ``(M, K, R)`` seen (bounds only when
        ``crown`` is certified)."""
        dtype = crown.tgraph.place.dtype
        alpha = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in domains.alpha.items()}
        beta = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in domains.beta.items()}
        optimiser = Adam([(list(alpha.values()), self.config.learning_rate_alpha),
                          (list(beta.values()), self.config.learning_rate_beta)])
        best = torch.full((domains.size, self.k, self.r), -torch.inf, dtype=self.d.dtype, device=self.lower.device)
        keep_alpha = {k: v.detach().clone() for k, v in alpha.items()}
        keep_beta = {k: v.detach().clone() for k, v in beta.items()}
        best_score = torch.full((domains.size,), -torch.inf, dtype=self.d.dtype, device=self.lower.device)
        with torch.enable_grad():
            for step in range(iterations):
                rows = self.spec_rows(crown, self._set(crown, domains, alpha, beta), domains)
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
        return keep_alpha, keep_beta, best


def _score(rows: Tensor, open_: Tensor) -> Tensor:
    """Per domain, the sum over open clauses of their best row, capped at 0 (a refuted clause
    counts as 0): the quantity whose best iterate is kept."""
    best_row = rows.amax(dim=2).clamp(max=0.0)
    return torch.where(open_, best_row, 0.0).sum(dim=1)


@dataclass(frozen=True)
class _Pending:
    """Bounded domains not refuted, with their coefficients for branching."""

    domains: _Domains
    coefficients: dict[str, Tensor]

    @property
    def size(self) -> int:
        return self.domains.size


def _bound(bounder: _BetaBounder, domains: _Domains, iterations: int, deadline: Deadline,
           stats: BabStats, log: ProofLog | None = None) -> tuple[_Pending, Tensor, Tensor]:
    """Bounds a batch; returns the domains not refuted (with their new bounds, slopes,
    multipliers, open clauses and hardness), the corner of each one's hardest row ``(P, n)``
    and that row's index ``(P,)``. ``log``: records the refuted domains' slopes and
    multipliers (:func:`~verifier.bab.relu_log.log_refuted`)."""
    bounded = bounder(domains, iterations, deadline)
    still_open, hardness, row = hardest_rows(bounded.rows - bounder.config.refute_margin, domains.open)
    stats.domains_bounded += domains.size
    keep = still_open.any(dim=1)
    log_refuted(log, domains, ~keep, bounded.alpha, bounded.beta, bounder.layers)
    stats.domains_proven += int((~keep).sum())
    updated = domains.with_state(bounds=bounded.bounds, alpha=bounded.alpha, beta=bounded.beta, open=still_open,
                                 hardness=hardness).take(keep)
    coefficients = {k: v[keep] for k, v in bounded.coefficients.items()}
    row = row[keep]
    corners = bounded.corners[keep]
    corner = corners[torch.arange(corners.shape[0], device=corners.device), row]
    return _Pending(updated, coefficients), corner, row
