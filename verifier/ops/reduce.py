"""Reductions over axes (ReduceSum, ReduceMean, ...) and ArgMax/ArgMin (Softmax and LogSoftmax:
:mod:`verifier.ops.softmax`).

ONNX axes count from the static shape (without our batch dimension): axis ``a`` (negative
values normalised by the static rank) is tensor dimension ``a + 1``. ``axes`` is an attribute
in older opsets and a static input in newer ones (ReduceSum from 13, the others from 18); the
loader moves it into ``node.attrs["axes"]`` either way. Empty or absent axes reduce every
static axis, unless ``noop_with_empty_axes`` is set: then no axis is reduced and only the
elementwise part of the op applies (``|x|`` for ReduceL1, ``x**2`` for ReduceSumSquare...), as
the ONNX reference implementation does.

Interval rules: Sum, Mean, Max, Min and LogSumExp are non-decreasing in every input (corner
evaluation, exact); L1, L2 and SumSquare reduce exact bounds of ``|x|`` or ``x**2``; Prod
multiplies intervals pairwise in a tree (each input used once, so the result is the exact
range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops import max_form as forms
from verifier.ops.activation import (
    FLOAT32_UNIT,
    TRANSCENDENTAL_ABS,
    TRANSCENDENTAL_REL,
    transcendental_error,
)
from verifier.ops.arith import product_hull
from verifier.ops.base import (
    Affinity,
    Args,
    Flags,
    MonotoneOp,
    Op,
    Pair,
    gamma,
    magnitude,
    register,
)
from verifier.ops.max_form import MaxForm
from verifier.ops.multi_relax import negated, window_max_rule

Dims = tuple[int, ...]


def batched_input(args: Args, batched: Flags) -> Tensor:
    """The op's first argument with a batch dimension (added to a constant one)."""
    x = args[0]
    if x is None:
        raise ValueError("reduction called without its input")
    return x if batched[0] else x.unsqueeze(0)


def axis_dim(node: Node, axis: int, rank: int) -> int:
    """Tensor dimension of ONNX ``axis`` for a value of static rank ``rank``."""
    if not -rank <= axis < rank:
        raise ModelError(f"node {node.name}: {node.op} axis {axis} is out of range for rank {rank}")
    return axis % rank + 1


def reduce_dims(node: Node, rank: int) -> Dims:
    """Tensor dimensions reduced by ``node`` for an input of static rank ``rank`` (sorted)."""
    axes = node.attr("axes")
    if isinstance(axes, int):
        axes = (axes,)
    if axes is None or len(axes) == 0:
        if node.attr("noop_with_empty_axes", 0):
            return ()
        return tuple(range(1, rank + 1))
    return tuple(sorted({axis_dim(node, int(a), rank) for a in axes}))


def _keep(node: Node) -> bool:
    return bool(node.attr("keepdims", 1))


def _sum(x: Tensor, dims: Dims, keep: bool) -> Tensor:
    return x.sum(dim=dims, keepdim=keep) if dims else x


def _count(x: Tensor, dims: Dims) -> int:
    return math.prod(x.shape[d] for d in dims)


def _to_last(x: Tensor, dims: Dims) -> Tensor:
    """Moves ``dims`` to the end and flattens them into one dimension."""
    kept = [d for d in range(x.dim()) if d not in dims]
    moved = x.permute(*kept, *dims)
    return moved.reshape(*moved.shape[: len(kept)], -1)


def _from_last(y: Tensor, x: Tensor, dims: Dims, keep: bool) -> Tensor:
    """Inverse of :func:`_to_last` for a reduced last dimension of size 1."""
    if keep:
        return y.reshape([1 if d in dims else s for d, s in enumerate(x.shape)])
    return y.reshape([s for d, s in enumerate(x.shape) if d not in dims])


class Reduction(Op):
    """Base of the Reduce* ops: :meth:`reduce` gets the batched input and the tensor dims."""

    static_inputs: ClassVar[dict[int, str]] = {1: "axes"}

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        """The reduction of ``x`` over ``dims`` (possibly none)."""
        raise NotImplementedError

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = batched_input(args, batched)
        return (self.reduce(x, reduce_dims(node, x.dim() - 1), _keep(node)),)

    def _setup(
        self, node: Node, lower: Args, upper: Args, batched: Flags
    ) -> tuple[Tensor, Tensor, Dims, bool]:
        lo, hi = batched_input(lower, batched), batched_input(upper, batched)
        return lo, hi, reduce_dims(node, lo.dim() - 1), _keep(node)


class MonotoneReduction(Reduction, MonotoneOp):
    """A reduction non-decreasing in every input: bounds from the box ends."""


@register("ReduceSum")
class ReduceSum(MonotoneReduction):
    """Sum; error ``gamma(n) sum |x|`` for any summation order."""

    affinity = Affinity.JOINT

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return _sum(x, dims, keep)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        return (gamma(_count(lo, dims), unit) * _sum(magnitude(lo, hi), dims, keep),)


@register("ReduceMean")
class ReduceMean(MonotoneReduction):
    """Mean; error ``gamma(n + 2) sum |x| / n`` (sum, then one division or scaling)."""

    affinity = Affinity.JOINT

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return x.mean(dim=dims, keepdim=keep) if dims else x

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        n = _count(lo, dims)
        return (gamma(n + 2, unit) * _sum(magnitude(lo, hi), dims, keep) / n,)


REDUCE_MAX_RULE = window_max_rule(lambda node, rank: list(reduce_dims(node, rank - 1)))
"""The relaxation of ReduceMax: window planes over the reduced axes."""


@register("ReduceMax")
class ReduceMax(MonotoneReduction):
    """Maximum; exact."""

    multi_relaxation = REDUCE_MAX_RULE

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.WINDOW_MAXIMUM

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return x.amax(dim=dims, keepdim=keep) if dims else x


@register("ReduceMin")
class ReduceMin(MonotoneReduction):
    """Minimum; exact."""

    multi_relaxation = negated(REDUCE_MAX_RULE)

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.WINDOW_MINIMUM

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return x.amin(dim=dims, keepdim=keep) if dims else x


@register("ReduceLogSumExp")
class ReduceLogSumExp(MonotoneReduction):
    """``log sum exp(x)``, computed stably.

    Error model (onnxruntime computes ``m + log sum exp(x - m)``): the sum has relative error
    at most ``2**-16`` (exp) plus ``gamma(2n)`` (the shifts and the additions), the log adds its
    own transcendental error, and the final addition one rounding.
    """

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return torch.logsumexp(x, dim=dims, keepdim=keep) if dims else x

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, _, dims, _ = self._setup(node, lower, upper, batched)
        n = _count(lo, dims)
        scale = unit / FLOAT32_UNIT
        mag = magnitude(out[0][0], out[1][0])
        rel = TRANSCENDENTAL_REL * (2 * mag + 2 + math.log(max(n, 1)))
        return (scale * (rel + 2 * TRANSCENDENTAL_ABS) + gamma(2 * n + 2, unit) * (1 + mag),)


def _abs_range(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Exact range of ``|x|`` over ``[lo, hi]``."""
    low = torch.where(lo > 0, lo, torch.where(hi < 0, -hi, torch.zeros_like(lo)))
    return low, magnitude(lo, hi)


@register("ReduceL1")
class ReduceL1(Reduction):
    """``sum |x|``; error ``gamma(n) sum |x|``."""

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return _sum(x.abs(), dims, keep)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        a_lo, a_hi = _abs_range(lo, hi)
        return (_sum(a_lo, dims, keep),), (_sum(a_hi, dims, keep),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, _, dims, _ = self._setup(node, lower, upper, batched)
        return (gamma(_count(lo, dims), unit) * out[1][0],)


@register("ReduceSumSquare")
class ReduceSumSquare(Reduction):
    """``sum x**2``; error ``gamma(n + 1) sum x**2``."""

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return _sum(x * x, dims, keep)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        a_lo, a_hi = _abs_range(lo, hi)
        return (_sum(a_lo * a_lo, dims, keep),), (_sum(a_hi * a_hi, dims, keep),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, _, dims, _ = self._setup(node, lower, upper, batched)
        return (gamma(_count(lo, dims) + 1, unit) * out[1][0],)


@register("ReduceL2")
class ReduceL2(Reduction):
    """``sqrt(sum x**2)``; error ``gamma(n + 3) |y|`` plus the library error of sqrt."""

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        return _sum(x * x, dims, keep).sqrt()

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        a_lo, a_hi = _abs_range(lo, hi)
        return (_sum(a_lo * a_lo, dims, keep).sqrt(),), (_sum(a_hi * a_hi, dims, keep).sqrt(),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, _, dims, _ = self._setup(node, lower, upper, batched)
        n = _count(lo, dims)
        return (gamma(n + 3, unit) * out[1][0] + transcendental_error(out[0][0], out[1][0], unit),)


@register("ReduceProd")
class ReduceProd(Reduction):
    """Product; error ``gamma(n) |y|``. Bounds: pairwise interval products in a tree."""

    def reduce(self, x: Tensor, dims: Dims, keep: bool) -> Tensor:
        if not dims:
            return x
        return _from_last(_to_last(x, dims).prod(-1), x, dims, keep)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi, dims, keep = self._setup(node, lower, upper, batched)
        if not dims:
            return (lo,), (hi,)
        a_lo, a_hi = _to_last(lo, dims), _to_last(hi, dims)
        while a_lo.shape[-1] > 1:
            if a_lo.shape[-1] % 2:
                pad = torch.ones_like(a_lo[..., :1])
                a_lo, a_hi = torch.cat([a_lo, pad], -1), torch.cat([a_hi, pad], -1)
            a_lo, a_hi = product_hull(
                a_lo[..., 0::2], a_hi[..., 0::2], a_lo[..., 1::2], a_hi[..., 1::2]
            )
        return (_from_last(a_lo, lo, dims, keep),), (_from_last(a_hi, lo, dims, keep),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, _, dims, _ = self._setup(node, lower, upper, batched)
        return (gamma(_count(lo, dims), unit) * magnitude(out[0][0], out[1][0]),)


@register("ArgMax", "ArgMin")
class ArgExtreme(Op):
    """Index of the largest (ArgMax) or smallest (ArgMin) element along ``axis``, as int64.

    On an input-dependent value the bounds are the first and last index that can be the
    answer (:func:`_possible`). Exact (an index has no rounding); bound methods cut it at these
    bounds.
    """

    exact = True

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = batched_input(args, batched)
        dim = axis_dim(node, int(node.attrs["axis"]), x.dim() - 1)
        keep = _keep(node)
        pick = torch.argmin if node.op == "ArgMin" else torch.argmax
        if node.attr("select_last_index", 0):
            return (x.shape[dim] - 1 - pick(x.flip(dim), dim, keepdim=keep),)
        return (pick(x, dim, keepdim=keep),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        if not batched[0]:
            out = self.forward(node, lower, batched)
            return out, out
        lo, hi = batched_input(lower, batched), batched_input(upper, batched)
        dim = axis_dim(node, int(node.attrs["axis"]), lo.dim() - 1)
        can = _possible(node, lo.movedim(dim, -1), hi.movedim(dim, -1)).movedim(-1, dim)
        n = lo.shape[dim]
        shape = [1] * lo.dim()
        shape[dim] = n
        index = torch.arange(n, dtype=lo.dtype, device=lo.device).reshape(shape).expand_as(lo)
        can |= ~can.any(dim, keepdim=True)  # NaN bounds: every index
        keep = _keep(node)
        first = torch.where(can, index, float(n)).amin(dim, keepdim=keep)
        last = torch.where(can, index, -1.0).amax(dim, keepdim=keep)
        return (first,), (last,)


def _possible(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    """``(..., n)``: whether index ``j`` of the last dimension can be the node's answer for some
    point of the box: for ArgMax (first index among ties) ``hi_j > lo_k`` for every ``k < j`` and
    ``hi_j >= lo_k`` for every ``k > j`` (``x_j`` at its top, the others at their bottom shows
    it; without these no point has it); with ``select_last_index`` the strictness swaps; ArgMin
    mirrors it with ``lo_j`` against ``hi_k``."""
    n = lo.shape[-1]
    order = torch.arange(n, device=lo.device)
    before = order.reshape(1, n) < order.reshape(n, 1)  # [j, k]: k comes before j
    after = order.reshape(1, n) > order.reshape(n, 1)
    if node.attr("select_last_index", 0):
        before, after = after, before
    mine, theirs = (lo, hi) if node.op == "ArgMin" else (hi, lo)
    sign = -1.0 if node.op == "ArgMin" else 1.0
    gap = sign * (mine.unsqueeze(-1) - theirs.unsqueeze(-2))  # [..., j, k]: how far j can beat k
    unknown = torch.isnan(gap)  # a NaN bound says nothing: j may beat k
    beats = torch.where(before, gap > 0, torch.where(after, gap >= 0, True)) | unknown
    return beats.all(dim=-1)
