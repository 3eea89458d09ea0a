"""Linearised steps from near-miss points towards the deepest violation nearby.

Gradient steps (PGD, the walk) move along one row's gradient at a time; where the violation set
is a thin slab that several rows bound at once (reach_prob's robot_11: the counterexample lies
2e-5 inside three constraints), they circle it. Here the network is linearised at a candidate
point (exact within the point's ReLU activation pattern) and a small LP
(:func:`verifier.exact.small_lp.deepest_step`) finds the step, inside the region's box and a
trust region, that puts every row of the point's best clause deepest below zero; the step is
repeated from where it lands. Only a guide: every point it returns is a candidate that the
margin check and onnxruntime still decide.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.attack.pgd import MarginObjective
from verifier.exact.small_lp import deepest_step
from verifier.graph.torch_graph import TorchGraph


def linear_steps(tgraph: TorchGraph, objective: MarginObjective, points: Tensor, lower: Tensor, upper: Tensor,
                 steps: int = 2, radius: float = 0.05) -> Tensor:
    """``points`` ``(B, n)`` each moved by ``steps`` linearised steps (see the module
    docstring), every step within ``[lower, upper]`` ``(n,)`` and at most ``radius`` times the
    box's width along each input. A point whose LP has no optimum stays where it is."""
    if objective.trivial or objective.c.shape[0] == 0:
        return points
    dtype = tgraph.place.dtype
    lo, hi = lower.to(dtype).reshape(-1), upper.to(dtype).reshape(-1)
    reach = radius * (hi - lo)
    x = points.detach().to(dtype).clone()
    for _ in range(steps):
        rows, jacobian = _clause_rows(tgraph, objective, x)
        for b in range(x.shape[0]):
            valid = torch.isfinite(rows[b])
            if not bool(valid.any()):
                continue
            low = torch.maximum(lo - x[b], -reach).double().cpu().numpy()
            high = torch.minimum(hi - x[b], reach).double().cpu().numpy()
            step = deepest_step(jacobian[b][valid].double().cpu().numpy(), rows[b][valid].double().cpu().numpy(),
                                low, high)
            if step is not None:
                x[b] = torch.minimum(torch.maximum(x[b] + torch.from_numpy(step).to(x), lo), hi)
    return x


def _clause_rows(tgraph: TorchGraph, objective: MarginObjective, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per point, the rows ``C y - d`` of the clause with the least margin ``(B, R)`` (``-inf``
    at padded rows: left out) and their gradients with respect to the point ``(B, R, n)``."""
    point = x.clone().requires_grad_(True)
    with torch.enable_grad():
        every = objective.rows(tgraph.forward_flat(point))
        clause = every.amax(dim=2).argmin(dim=1)
        rows = every[torch.arange(x.shape[0]), clause]  # (B, R), -inf at padded rows
        gradients = [torch.autograd.grad(rows[:, r].sum(), point, retain_graph=True)[0]
                     if bool(torch.isfinite(rows[:, r]).any()) else torch.zeros_like(point)
                     for r in range(rows.shape[1])]
    return rows.detach(), torch.stack(gradients, dim=1).detach()
