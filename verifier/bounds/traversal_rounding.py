"""The float rounding of the backward traversal's own sums.

Each step of :func:`verifier.bounds.backward.backward` computes, for the coefficients ``a`` on a
node's outputs, new coefficients ``a L`` on its inputs and a bias such as ``a·f(0)`` or
``A- u_b``: sums over up to all of the node's ``m`` output elements, each rounded in the
traversal's precision (unit ``u``). The computed coefficients ``ã`` differ from ``a L`` by at
most ``gamma_K (|a| |L|)`` and the bias by ``gamma_K |a|·|b|`` (``K`` >= the number of rounded
operations per result). The rest of the traversal bounds ``ã·x`` soundly, so the bound stays
sound when the step also subtracts ``gamma_K sum_k |a_k| M_k``, where ``M_k`` bounds
``(|L| |x|)_k + |b_k|`` over the node's input boxes: the *magnitude* of output ``k``.

The node's float-evaluation error ``err`` (from the table) does not cover this: it counts the
node's fan-in, and the traversal's sums run over its fan-out (``m`` outputs: 100,000 for a
wide layer). ``K`` also counts the additions of one value's coefficients from its consumers
(at most one per node of the graph) and a few roundings of the ops' transposes.

Magnitudes:

- affine node: the op's interval over the symmetric boxes ``[-|x|, |x|]`` of its dynamic
  inputs is ``f(0) +- |L| |x|`` (exactly, up to the interval's own rounding), so
  ``(hi - lo) / 2 + max(|lo|, |hi|)`` >= ``|L| |x| + |f(0)|``;
- relaxed elementwise node: ``max(|l_s|, |u_s|) |x| + max(|l_b|, |u_b|)`` (an alpha slope
  lies between ``l_s`` and ``u_s`` for ReLU-like ops; the caller uses the larger of the used
  slopes);
- a cut node (concretised at its output bounds): ``max(|lo|, |hi|)`` of its outputs.

The allowance is ``2 gamma_K`` times ``sum |a| M`` as computed: the factor 2 covers the
(relative, ``<< 1/2``) rounding of computing ``M`` and the sum themselves.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.bounds.rounding import unit_roundoff
from verifier.bounds.table import BoundTable
from verifier.ir import Node
from verifier.ops.base import gamma, magnitude

EXTRA_ROUNDINGS = 4
"""Roundings an op's transpose or vector-Jacobian product may add per result beyond its sum."""


def allowance_factor(table: BoundTable, node: Node) -> float:
    """``2 gamma_K`` in the traversal's precision for a step through ``node`` (0 when the
    table is in real arithmetic, ``unit == 0``: then nothing is rounded by assumption)."""
    if table.unit == 0.0:
        return 0.0
    fan_out = sum(math.prod(table.graph.shapes[name]) for name in node.outputs if name in table.graph.shapes)
    count = fan_out + len(table.graph.nodes) + EXTRA_ROUNDINGS
    return 2.0 * gamma(count, unit_roundoff(table.tgraph.place.dtype))


def affine_magnitudes(table: BoundTable, index: int) -> tuple[Tensor, ...]:
    """Per output of the affine node ``index``: ``M >= |L| |x| + |f(0)|`` over the table's boxes."""
    node = table.graph.nodes[index]
    los, his, batched = table.args(node)
    sym_lo: list[Tensor | None] = []
    sym_hi: list[Tensor | None] = []
    for lo, hi, dynamic in zip(los, his, batched, strict=True):
        if dynamic and lo is not None and hi is not None:
            mag = magnitude(lo, hi)
            sym_lo.append(-mag)
            sym_hi.append(mag)
        else:
            sym_lo.append(lo)
            sym_hi.append(hi)
    with torch.no_grad():
        out_lo, out_hi = table.tgraph.ops[index].interval(node, sym_lo, sym_hi, batched)
    dtype = table.tgraph.place.dtype
    return tuple((hi.to(dtype) - lo.to(dtype)) / 2 + magnitude(lo.to(dtype), hi.to(dtype))
                 for lo, hi in zip(out_lo, out_hi, strict=True))


def relaxed_magnitude(slope: Tensor, bias_lower: Tensor, bias_upper: Tensor, box: tuple[Tensor, Tensor]) -> Tensor:
    """``M >= |s| |x| + max(|l_b|, |u_b|)`` for a relaxed elementwise node whose largest slope
    magnitude per position is ``slope`` (broadcastable to the rows)."""
    bias = torch.maximum(bias_lower.abs(), bias_upper.abs())
    return slope * magnitude(*box) + torch.nan_to_num(bias, nan=torch.inf)
