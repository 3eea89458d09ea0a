"""The backward step through an elementwise node whose two lines the bound optimiser chooses.

For an op whose relaxation has free slopes (:attr:`verifier.ops.relax.Relaxation.free_slopes`:
Sigmoid, Tanh, Erf, Exp, Elu, ... the curves of :mod:`verifier.ops.curves`), alpha-CROWN
keeps a lower and an upper slope per objective row and neuron, ``(N, R, *shape, 2)``. Each
slope gets the bias that makes its line valid on the neuron's box, computed by the op's
``line`` rule in float64 for the slope exactly as the traversal uses it (rounded to the
traversal's dtype first) and padded outward when that dtype is narrower; so any slope the
optimiser picks gives a certified bound. Boxes that are not finite with ``l < u``, and lines
whose bias comes out non-finite, keep the node's own relaxation.

The step passes ``A+ a_l + A- a_u`` to the input and adds ``A+ b_l + A- b_u``, less ``|A|``
times the node's float error plus the traversal's rounding allowance for these very lines
(:func:`verifier.bounds.step_weights.line_weights`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from verifier.bounds.step_weights import line_weights, weighted_abs
from verifier.bounds.table import BoundTable
from verifier.ir import Node
from verifier.ops.relax import LinearBounds, Relaxation, free_boxes


def free_relaxation(table: BoundTable, node: Node) -> Relaxation | None:
    """The node's declared relaxation if its slopes are free, else None."""
    relaxation = table.tgraph.op_of[node.name].relaxation
    return relaxation if relaxation is not None and relaxation.free_slopes else None


def _bias(rule: Relaxation, node: Node, slope: Tensor, box: tuple[Tensor, Tensor], upper: bool) -> Tensor:
    """The certified bias of ``slope`` (in the traversal's dtype) on the float64 boxes."""
    assert rule.line is not None
    bias = rule.line(node, slope.to(torch.float64), box[0], box[1], upper)
    if slope.dtype == torch.float64:
        return bias
    pad = 2 * torch.finfo(slope.dtype).eps * (bias.abs() + 1)
    return (bias + pad if upper else bias - pad).to(slope.dtype)


def free_lines(rule: Relaxation, node: Node, slopes: Tensor, relaxation: LinearBounds,
               box: tuple[Tensor, Tensor]) -> LinearBounds:
    """The lines ``(N, R, *shape)`` of the optimiser's slopes ``(N, R, *shape, 2)`` (lower,
    upper) with their certified biases; the node's ``relaxation`` where a box is not finite
    with ``l < u`` or a bias is not finite."""
    lo = box[0].unsqueeze(1)
    free, *safe = free_boxes(node, lo, box[1].unsqueeze(1), rule.domain)
    out = []
    for side, upper in ((0, False), (1, True)):
        slope = slopes[..., side].to(lo.dtype)
        bias = _bias(rule, node, slope, (safe[0], safe[1]), upper)
        keep = free & torch.isfinite(bias)
        own_slope = relaxation.upper_slope if upper else relaxation.lower_slope
        own_bias = relaxation.upper_bias if upper else relaxation.lower_bias
        out += [torch.where(keep, slope, own_slope.unsqueeze(1)), torch.where(keep, bias, own_bias.unsqueeze(1))]
    return LinearBounds(*out)


def free_line_step(table: BoundTable, node: Node, a: Tensor, slopes: Tensor, relaxation: LinearBounds,
                   box: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Moves the coefficients ``a`` ``(N, R, *shape)`` on the node's output through the lines
    of ``slopes``; returns the coefficients on its input and the bias ``(N, R)`` (less the
    float allowances). Differentiable in ``slopes``."""
    rule = free_relaxation(table, node)
    assert rule is not None
    lines = free_lines(rule, node, slopes, relaxation, box)
    positive, negative = a.clamp(min=0), a.clamp(max=0)
    moved = positive * lines.lower_slope + negative * lines.upper_slope
    bias = torch.where(positive > 0, positive * lines.lower_bias, 0.0) \
        + torch.where(negative < 0, negative * lines.upper_bias, 0.0)
    weights = line_weights(table, node, lines, box)
    return moved, bias.flatten(2).sum(dim=2) + weighted_abs([a], weights)
