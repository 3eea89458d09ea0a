"""What each step of the backward traversal subtracts for floating point: ``sum |A| * w``.

A step through a node moves the coefficients ``A`` on its outputs to its inputs. For every
output it subtracts ``sum |A| * w`` with the weight ``w`` = the node's float evaluation error
(from the table: the model's rounding, for nodes the traversal passes through) plus the
traversal's allowance for its own rounding in that step
(:mod:`verifier.bounds.traversal_rounding`). The weights depend on the table only (and on the
alpha slopes of a relaxed node, when it has some), not on ``A``, so they are built once per
node and table and kept in a :class:`WeightCache` keyed by the very tensors they were built
from (bounds are replaced, never changed in place, when refined).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifier.bounds.table import BoundTable
from verifier.bounds.traversal_rounding import affine_magnitudes, allowance_factor, relaxed_magnitude
from verifier.ir import Node
from verifier.ops.base import all_finite, magnitude
from verifier.ops.relax import LinearBounds

Weights = tuple[tuple[Tensor | None, bool], ...]
"""Per output of a node: its weight ``(N, 1, *shape)`` (None: nothing to subtract) and whether
that weight is finite everywhere."""


@dataclass
class WeightCache:
    """Weights per node, with the objects they were built from (compared by identity)."""

    kept: dict[str, tuple[tuple[object, ...], Weights]] = field(default_factory=dict)

    def get(self, node: Node, sources: tuple[object, ...]) -> Weights | None:
        """The weights kept for ``node`` if they were built from exactly ``sources``."""
        found = self.kept.get(node.name)
        if found is None or len(found[0]) != len(sources):
            return None
        return found[1] if all(a is b for a, b in zip(found[0], sources, strict=True)) else None

    def put(self, node: Node, sources: tuple[object, ...], weights: Weights) -> Weights:
        """Keeps ``weights`` for ``node`` (built from ``sources``) and returns them."""
        self.kept[node.name] = (sources, weights)
        return weights


def affine_weights(table: BoundTable, index: int, cache: WeightCache) -> Weights:
    """Float error plus rounding allowance per output of the affine node ``index``."""
    node = table.graph.nodes[index]
    sources = (*(table.bounds.get(name) for name in node.inputs), table.errors.get(node.name))
    kept = cache.get(node, sources)
    if kept is not None:
        return kept
    factor = allowance_factor(table, node)
    rounding = affine_magnitudes(table, index) if factor else ()
    return cache.put(node, sources, _combine(table, node, table.errors[node.name],
                                             tuple(factor * m for m in rounding)))


def relaxed_weights(table: BoundTable, node: Node, relaxation: LinearBounds, box: tuple[Tensor, Tensor],
                    cache: WeightCache, alpha: bool = False) -> Weights:
    """Float error plus rounding allowance for the relaxed node's output. With ``alpha``
    (alpha slopes replace the lower slope at the unstable positions) the allowance takes the
    largest slope magnitude the op allows there (:meth:`~verifier.ops.base.Op.lower_slope_range`;
    the optimisers keep their slopes inside it), so the weights do not depend on the slopes'
    values and are built once per table like the others."""
    sources = (relaxation, box[0], box[1], table.errors.get(node.name), alpha)
    kept = cache.get(node, sources)
    if kept is not None:
        return kept
    factor = allowance_factor(table, node)
    rounding: tuple[Tensor, ...] = ()
    if factor:
        slope = torch.maximum(relaxation.lower_slope.abs(), relaxation.upper_slope.abs())
        if alpha:
            span = table.tgraph.op_of[node.name].lower_slope_range(node)
            largest = max(abs(span[0]), abs(span[1])) if span is not None else math.inf
            slope = torch.where((box[0] < 0) & (box[1] > 0), slope.clamp(min=largest), slope)
        size = relaxed_magnitude(slope.unsqueeze(1), relaxation.lower_bias.unsqueeze(1),
                                 relaxation.upper_bias.unsqueeze(1), (box[0].unsqueeze(1), box[1].unsqueeze(1)))
        rounding = (factor * size,)
    return cache.put(node, sources, _combine(table, node, table.errors[node.name], rounding))


def line_weights(table: BoundTable, node: Node, lines: LinearBounds, box: tuple[Tensor, Tensor]) -> Weights:
    """Float error plus rounding allowance for a relaxed node passed with lines chosen per row
    (``(N, R, *shape)``, :mod:`verifier.bounds.free_lines`): built from those lines each time
    (not cached; they change with every step of the optimiser)."""
    factor = allowance_factor(table, node)
    rounding: tuple[Tensor, ...] = ()
    if factor:
        slope = torch.maximum(lines.lower_slope.abs(), lines.upper_slope.abs()).detach()
        size = relaxed_magnitude(slope, lines.lower_bias.detach(), lines.upper_bias.detach(),
                                 (box[0].unsqueeze(1), box[1].unsqueeze(1)))
        rounding = (factor * size,)
    return _combine(table, node, table.errors[node.name], rounding)


def error_weights(table: BoundTable, node: Node, cache: WeightCache) -> Weights:
    """The node's float error alone per output (the multi-input rules, which have no
    rounding allowance yet)."""
    sources = (table.errors.get(node.name),)
    kept = cache.get(node, sources)
    return kept if kept is not None else cache.put(node, sources, _combine(table, node, table.errors[node.name], ()))


def cut_weights(table: BoundTable, node: Node) -> Weights:
    """The rounding allowance of concretising a cut node's outputs at their bounds (the
    node's own float error is inside those bounds already)."""
    factor = allowance_factor(table, node)
    rounding = tuple(factor * magnitude(*table.bounds[name]) for name in node.outputs) if factor else ()
    return _combine(table, node, (), rounding)


def _combine(table: BoundTable, node: Node, errors: tuple[Tensor | None, ...],
             rounding: tuple[Tensor, ...]) -> Weights:
    """``err + rounding`` per output, as ``(N, 1 or R, *shape)``: parts without a row
    dimension (``(N or 1, *shape)`` or broadcastable to it) get one of size 1; a part with its
    own (from alpha slopes per row) keeps it."""
    out: list[tuple[Tensor | None, bool]] = []
    for i, name in enumerate(node.outputs):
        parts = [w for w in (errors[i] if i < len(errors) else None, rounding[i] if i < len(rounding) else None)
                 if w is not None]
        if not name or not parts:
            out.append((None, True))
            continue
        shape = tuple(table.bounds[name][0].shape[1:]) if name in table.bounds else tuple(table.graph.shapes[name])
        rows = [p if p.dim() == len(shape) + 2 else torch.broadcast_to(p, (table.batch, *shape)).unsqueeze(1)
                for p in parts]
        weight = rows[0] if len(rows) == 1 else rows[0] + rows[1]
        out.append((weight, all_finite(weight)))
    return tuple(out)


def weighted_abs(coeffs: list[Tensor | None], weights: Weights) -> Tensor:
    """``-sum_k |A_k| * w_k`` ``(N, R)`` over a node's outputs (``0 * inf`` counts 0; a NaN
    makes the bound ``-inf``). Not differentiated: the optimisers that differentiate bounds
    (alpha, beta) follow the bound without this tiny allowance; its value is the same."""
    total: Tensor | None = None
    for a, (weight, finite) in zip(coeffs, weights, strict=False):
        if a is None or weight is None:
            continue
        part = abs_weighted(a.detach(), weight, finite)
        total = part if total is None else total + part
    if total is None:
        first = next(c for c in coeffs if c is not None)
        return torch.zeros(first.shape[:2], dtype=first.dtype, device=first.device)
    return -torch.nan_to_num(total, nan=torch.inf)


def abs_weighted(a: Tensor, weight: Tensor, finite: bool | None = None) -> Tensor:
    """``sum |A| * weight`` ``(N, R)`` over all but the first two dims, for a weight ``(N or 1,
    1 or R, *shape)``; an infinite weight counts 0 where its coefficient is 0. One batched
    product when the weight is finite (``finite``: known to be; None: test it) and the same
    for every row."""
    flat = a.abs().reshape(a.shape[0], a.shape[1], -1)
    if weight.shape[1] == 1 and (all_finite(weight) if finite is None else finite):
        n = a.shape[0]
        return torch.bmm(flat, weight.expand(n, 1, *a.shape[2:]).reshape(n, -1, 1).to(a.dtype)).squeeze(2)
    spread = torch.broadcast_to(weight, a.shape).to(a.dtype).reshape(flat.shape)
    return torch.where(flat == 0, 0.0, flat * spread).sum(dim=2)
