"""alpha-CROWN: CROWN with the lower slopes of unstable ReLU-like neurons optimised.

For an unstable ReLU (``l < 0 < u``) every line ``a·x`` with ``0 <= a <= 1`` is a lower bound
of ``relu(x)`` on ``[l, u]`` (and for LeakyRelu with ``alpha <= 1`` every ``alpha <= a <= 1``),
so any slope in that range, chosen separately for every objective row and neuron, yields a
certified bound. Projected Adam ascent on the sum of the row bounds searches the slopes; every
iterate is a valid bound and the best value per row is kept, so the result is never worse
than CROWN's. Intermediate bounds are CROWN's (not re-optimised yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bounds.crown import Crown
from verifier.deadline import Deadline

_ALPHA_OPS = ("Relu", "LeakyRelu")


@dataclass(frozen=True)
class AlphaConfig:
    """Options of the slope optimisation.

    Attributes:
        iterations: Adam steps at most.
        learning_rate: Adam step size on the slopes.
        patience: stop after this many steps without improving the summed bound by ``1e-6``
            relative.
        stop_above: stop early once, in every batch element, some row's bound exceeds this
            value (0 for the rows of a spec clause: one positive row refutes the clause);
            None to never stop early.
    """

    iterations: int = 40
    learning_rate: float = 0.1
    patience: int = 8
    stop_above: float | None = None


def _slope_range(crown: Crown, name: str, op: str) -> tuple[float, float] | None:
    """The valid range of lower slopes of an unstable neuron of the node, or None."""
    node = next(n for n in crown.graph.nodes if n.name == name)
    if op == "Relu":
        return 0.0, 1.0
    leak = float(node.attr("alpha", 0.01))
    return (leak, 1.0) if 0.0 <= leak <= 1.0 else None


def _init(crown: Crown, rows: int) -> list[tuple[str, float, float]]:
    """Creates one slope tensor per ReLU-like node with unstable neurons; returns their ranges."""
    ranges = []
    for node in crown.graph.nodes:
        relaxation = crown.relaxations.get(node.name)
        if node.op not in _ALPHA_OPS or relaxation is None:
            continue
        span = _slope_range(crown, node.name, node.op)
        if span is None:
            continue
        lo, hi = crown.bounds[node.inputs[0]]
        unstable = (lo < 0) & (hi > 0)
        if not bool(unstable.any()):
            continue
        start = relaxation.lower_slope.detach().clamp(*span).unsqueeze(1)
        start = start.expand(-1, rows, *start.shape[2:]).clone()
        crown.alpha[node.name] = start.requires_grad_(True)
        crown.alpha_mask[node.name] = unstable
        ranges.append((node.name, *span))
    return ranges


def alpha_lower_bound(crown: Crown, coefficients: Tensor, config: AlphaConfig | None = None,
                      deadline: Deadline | None = None, offset: Tensor | float = 0.0) -> Tensor:
    """Certified lower bounds ``(N, R)`` of ``coefficients @ y + offset`` with optimised slopes.

    ``offset`` (e.g. ``-d`` of spec rows, broadcastable to ``(N, R)``) only shifts the rows for
    the early-stop test. Returns the elementwise best over CROWN's bound and every iterate
    (each one certified), stopping at ``deadline`` too.
    """
    config = config or AlphaConfig()
    best = crown.lower_bound(coefficients).detach()
    rows = best.shape[1]
    ranges = _init(crown, rows)
    if not ranges:
        return best
    optimiser = torch.optim.Adam([crown.alpha[name] for name, _, _ in ranges], lr=config.learning_rate)
    stale, last = 0, float(best.sum())
    try:
        with torch.enable_grad():
            for _ in range(config.iterations):
                if config.stop_above is not None and bool(((best + offset) > config.stop_above).any(dim=1).all()):
                    break
                if deadline is not None and deadline.expired():
                    break
                bound = crown.lower_bound(coefficients)
                best = torch.maximum(best, bound.detach())
                if not bound.requires_grad:  # the rows do not reach any optimisable slope
                    break
                optimiser.zero_grad()
                (-bound.sum()).backward()
                optimiser.step()
                with torch.no_grad():
                    for name, low, high in ranges:
                        crown.alpha[name].clamp_(low, high)
                total = float(best.sum())
                stale = 0 if total > last + 1e-6 * (1 + abs(last)) else stale + 1
                last = max(last, total)
                if stale >= config.patience:
                    break
            with torch.no_grad():
                best = torch.maximum(best, crown.lower_bound(coefficients))
    finally:
        crown.alpha.clear()
        crown.alpha_mask.clear()
    return best
