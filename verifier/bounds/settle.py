"""Settling spec rows whose coefficients float64 cannot hold, with certified output bounds.

The normaliser rounds a row ``c·y <= d`` with real coefficients to a float row ``c'·y <= d'``
(:func:`verifier.spec.exact.float_row`). Where some ``c_j`` is not a float, ``c'·y`` differs from
``c·y`` by up to ``sum_j |c_j - c'_j| |y_j|``, so the float row is only implied by the real one
on a bounded set of outputs; until then its right-hand side is ``+inf`` and it refutes nothing.
Here the bound comes from interval propagation over the region's proof box, which contains
every output the float model can produce there: ``d' = round_up(d + sum_j e_j max|y_j|)``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.interval import interval_bounds
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import Problem, proof_box
from verifier.spec.types import Region


def output_magnitude(y_lower: Tensor, y_upper: Tensor) -> np.ndarray:
    """``max(|lower|, |upper|)`` per flattened output of one box ``(1, m)``, as float64
    (``inf`` where a bound is NaN or infinite)."""
    lo = y_lower.detach().to(torch.float64).reshape(-1).cpu().numpy()
    hi = y_upper.detach().to(torch.float64).reshape(-1).cpu().numpy()
    magnitude = np.maximum(np.abs(lo), np.abs(hi))
    return np.where(np.isfinite(magnitude), magnitude, np.inf)


def settle_region(tgraph: TorchGraph, region: Region, lower: Tensor, upper: Tensor) -> Region:
    """``region`` with its unsettled rows made usable for proofs (see the module docstring).

    Args:
        tgraph: the model, for interval propagation.
        region: a region of the property.
        lower, upper: its proof box ``(1, n)`` (see :func:`verifier.problem.proof_box`).

    Returns:
        the region itself when nothing is unsettled, else a copy with finite right-hand sides
        valid for every output the float model produces on the box.
    """
    if not region.unsettled:
        return region
    with torch.no_grad():
        y_lo, y_hi = interval_bounds(tgraph, lower, upper)
    return region.settled(output_magnitude(y_lo, y_hi))


def settled_problem(problem: Problem, tgraph: TorchGraph) -> Problem:
    """The problem with every region's rounded-coefficient rows settled on its proof box
    (:mod:`verifier.bounds.settle`), so that every later step may use them."""
    if not any(r.unsettled for r in problem.spec.regions):
        return problem
    device = tgraph.place.device
    regions = tuple(settle_region(tgraph, r, *proof_box(problem.graph, r, device)) for r in problem.spec.regions)
    return replace(problem, spec=replace(problem.spec, regions=regions))
