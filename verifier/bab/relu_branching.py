"""Branching of ReLU-split branch and bound (:mod:`verifier.bab.relu_split`): the neuron to
split in each domain (BaBSR scores, filtered smart branching) and the split itself, with the
children's multipliers warm-started."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from verifier.bab.relu_bounding import _BetaBounder, _hardest
from verifier.bab.relu_domains import _cat, _Domains, _Layer
from verifier.config import ReluBranching, ReluSplitConfig


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
        k = min(self.config.candidates if self.config.branching is ReluBranching.FSB else 1, scores.shape[1])
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
        rows = self.bounder.quick(children, domains)
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
