"""alpha-CROWN: CROWN with the lower slopes of unstable ReLU-like neurons optimised.

For an unstable ReLU (``l < 0 < u``) every line ``a·x`` with ``0 <= a <= 1`` is a lower bound
of ``relu(x)`` on ``[l, u]`` (and for LeakyRelu with ``alpha <= 1`` every ``alpha <= a <= 1``),
so any slope in that range, chosen separately for every objective row and neuron, yields a
certified bound. The slopes are chosen separately for the final objective rows and, jointly,
for the rows that bound each intermediate value (the inputs of relaxed nodes): tighter
intermediate bounds tighten the relaxations of every later node. Projected Adam ascent on the
sum of the final row bounds, differentiated through the intermediate bounds, searches all of
them. Every iterate is a valid bound: the best value per row is kept (never worse than
CROWN's), and each intermediate bound is intersected with the best one found before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.ascent import Adam
from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import FINAL, Crown
from verifier.config import AlphaConfig
from verifier.deadline import Deadline


def _start(crown: Crown, name: str, span: tuple[float, float], shape: tuple[int, ...]) -> Tensor:
    """CROWN's lower slopes of node ``name`` clamped to ``span``, broadcast to ``shape``."""
    relaxation = crown.relaxations[name]
    assert relaxation is not None
    start = relaxation.lower_slope.detach().clamp(*span)
    return start.reshape(start.shape[0], *([1] * (len(shape) - start.dim())), *start.shape[1:]).expand(shape).clone()


def _ancestors(crown: Crown, value: str) -> set[str]:
    """Names of the nodes that ``value`` depends on."""
    producers = crown.graph.producers()
    seen: set[str] = set()
    todo = [value]
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(n for n in node.inputs if n)
    return seen


def _init(crown: Crown, slopes: dict[tuple[str, str], Tensor], rows: int,
          config: AlphaConfig) -> list[tuple[tuple[str, str], float, float]]:
    """Creates the slope tensors in ``slopes`` (final rows, and intermediate rows within the
    cap) of every ReLU-like node with unstable neurons; returns their keys and ranges."""
    ranges = []
    order = {node.name: i for i, node in enumerate(crown.graph.nodes)}
    budget = config.max_intermediate
    ancestors = {value: _ancestors(crown, value) for value in crown.refined} if config.intermediate else {}
    for node, op in zip(crown.graph.nodes, crown.tgraph.ops, strict=True):
        span = op.lower_slope_range(node)
        if span is None or crown.relaxations.get(node.name) is None:
            continue
        lo, hi = crown.bounds[node.inputs[0]]
        if not bool(((lo < 0) & (hi > 0)).any()):
            continue
        n, shape = lo.shape[0], tuple(lo.shape[1:])
        slopes[(node.name, FINAL)] = _start(crown, node.name, span, (n, rows, *shape)).requires_grad_(True)
        ranges.append(((node.name, FINAL), *span))
        if not config.intermediate:
            continue
        for value, (stop, wanted) in crown.refined.items():
            size = n * 2 * wanted.numel() * lo[0].numel()
            if stop <= order[node.name] or size > budget or node.name not in ancestors[value]:
                continue
            budget -= size
            full = (n, 2, wanted.numel(), *shape)
            slopes[(node.name, value)] = _start(crown, node.name, span, full).requires_grad_(True)
            ranges.append(((node.name, value), *span))
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
    mult = Multipliers()  # the slopes live here, for this call only
    ranges = _init(crown, mult.slopes, rows, config)
    if not ranges:
        return best
    joint = any(key[1] != FINAL for key, _, _ in ranges)
    optimiser = Adam([([mult.slopes[key] for key, _, _ in ranges], config.learning_rate)])
    stale, last = 0, float(best.sum())
    try:
        with torch.enable_grad():
            for _ in range(config.iterations):
                if config.stop_above is not None and bool(((best + offset) > config.stop_above).any(dim=1).all()):
                    break
                if deadline is not None and deadline.expired():
                    break
                if joint:
                    crown.compute(mult)
                bound = crown.lower_bound(coefficients, mult)
                best = torch.maximum(best, bound.detach())
                if not bound.requires_grad:  # the rows do not reach any optimisable slope
                    break
                optimiser.zero_grad()
                (-bound.sum()).backward()
                optimiser.step()
                with torch.no_grad():
                    for key, low, high in ranges:
                        mult.slopes[key].clamp_(low, high)
                total = float(best.sum())
                stale = 0 if total > last + 1e-6 * (1 + abs(last)) else stale + 1
                last = max(last, total)
                if stale >= config.patience:
                    break
            with torch.no_grad():
                if joint:
                    crown.compute(mult)
                best = torch.maximum(best, crown.lower_bound(coefficients, mult))
    finally:
        if joint:  # CROWN slopes again, on the best intermediate bounds found
            with torch.no_grad():
                crown.compute()
    return best
