"""Scatter ops: ``ScatterND`` and ``ScatterElements`` with constant indices.

The output is a copy of ``data`` in which the positions named by ``indices`` take the
``updates`` elements (``reduction="none"``), or are combined with them (``"add"``, ``"max"``,
``"min"``). With constant indices every such op is monotone non-decreasing in ``data`` and in
``updates``, so the :class:`~verifier.ops.base.MonotoneOp` corner rule gives exact interval
bounds; ``"none"`` and ``"add"`` are affine in both jointly (bound methods pass coefficients
through them by the vector-Jacobian product of :meth:`forward`), ``"max"`` and ``"min"`` are
not (bound methods cut them at their interval bounds). ``"mul"`` is neither monotone nor
affine and is refused with a clear error, as are repeated positions under ``"none"`` (ONNX
leaves their order, hence the output, undefined) and dynamic indices.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Args, Flags, MonotoneOp, Pair, gamma_of_counts, magnitude, register
from verifier.ops.linear import constant_arg, require_constant

_REDUCTIONS = ("none", "add", "max", "min")


def _reduction(node: Node) -> str:
    """The node's ``reduction`` attribute, checked to be one this module supports."""
    reduction = node.attr("reduction", "none")
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction not in _REDUCTIONS:
        raise ModelError(f"{node.op} node {node.name!r}: reduction {reduction!r} is not supported "
                         f"(supported: {', '.join(_REDUCTIONS)})")
    return reduction


def _batched(value: Tensor | None, batched: bool, size: int, dtype: torch.dtype) -> Tensor:
    """``value`` with a batch dimension of ``size`` (a constant is repeated) in ``dtype``."""
    assert value is not None
    value = value if batched else value.unsqueeze(0)
    return value.to(dtype).expand(size, *value.shape[1:])


class _Scatter(MonotoneOp):
    """Shared rules: the flat output positions each update goes to (:meth:`targets`), and a
    forward that writes or combines the updates there."""

    def targets(self, node: Node, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
        """Flat positions in the output (of static shape ``shape``, no batch) of every
        element of ``updates`` (in its flat order)."""
        raise NotImplementedError(type(self).__name__)

    def _positions(self, node: Node, args: Args, batched: Flags, shape: tuple[int, ...]) -> Tensor:
        indices = constant_arg(node, args[1], batched[1], "indices").long()
        flat = self.targets(node, indices, shape)
        if _reduction(node) == "none" and torch.unique(flat).numel() < flat.numel():
            raise ModelError(f"{node.op} node {node.name!r}: repeated indices with reduction 'none' "
                             "(ONNX leaves the output undefined)")
        return flat

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        dynamic = [a for a, b in zip((args[0], args[2]), (batched[0], batched[2]), strict=True) if b]
        size = max((int(a.shape[0]) for a in dynamic if a is not None), default=1)
        assert args[0] is not None
        dtype = next((a.dtype for a in dynamic if a is not None), args[0].dtype)
        data = _batched(args[0], batched[0], size, dtype)
        shape = tuple(int(s) for s in data.shape[1:])
        flat = self._positions(node, args, batched, shape)
        updates = _batched(args[2], batched[2], size, dtype).reshape(size, -1)
        if updates.shape[1] != flat.numel():
            raise ModelError(f"{node.op} node {node.name!r}: {updates.shape[1]} updates for "
                             f"{flat.numel()} indexed positions")
        out = data.reshape(size, -1)
        position = flat.to(out.device).unsqueeze(0).expand(size, -1)
        reduction = _reduction(node)
        if reduction == "none":
            out = out.scatter(1, position, updates)
        elif reduction == "add":
            out = out.scatter_add(1, position, updates)
        else:
            out = out.scatter_reduce(1, position, updates, "amax" if reduction == "max" else "amin")
        return (out.reshape(size, *shape),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        require_constant(node, batched, [1], ["indices"])
        return super().interval(node, lower, upper, batched)

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """Affine in ``data`` and ``updates`` jointly for ``"none"`` and ``"add"``."""
        return _reduction(node) in ("none", "add")

    def fp_error(self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
                 ) -> tuple[Tensor | None, ...]:
        """Copies, max and min are exact; ``"add"`` sums ``c + 1`` terms at a position that
        ``c`` updates reach: at most ``gamma_c`` times the sum of their magnitudes."""
        if _reduction(node) != "add":
            return (None,)
        size = int(out[0][0].shape[0])
        data_mag = magnitude(_batched(lower[0], batched[0], size, out[0][0].dtype),
                             _batched(upper[0], batched[0], size, out[0][0].dtype))
        shape = tuple(int(s) for s in data_mag.shape[1:])
        flat = self._positions(node, lower, batched, shape)
        update_mag = magnitude(_batched(lower[2], batched[2], size, data_mag.dtype),
                               _batched(upper[2], batched[2], size, data_mag.dtype)).reshape(size, -1)
        position = flat.to(data_mag.device).unsqueeze(0).expand(size, -1)
        total = data_mag.reshape(size, -1).scatter_add(1, position, update_mag)
        counts = torch.zeros(math.prod(shape), dtype=data_mag.dtype, device=data_mag.device)
        counts.scatter_add_(0, flat.to(counts.device), torch.ones_like(flat, dtype=counts.dtype))
        return ((gamma_of_counts(counts, unit) * total).reshape(size, *shape),)


@register("ScatterND")
class ScatterND(_Scatter):
    """ONNX ``ScatterND``: ``indices[..., :k]`` names a slice ``data[i_1, ..., i_k]`` per
    leading index of ``indices`` (negative entries count from the end)."""

    def targets(self, node: Node, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
        depth = int(indices.shape[-1]) if indices.dim() else 0
        if indices.dim() < 1 or not 1 <= depth <= len(shape):
            raise ModelError(f"ScatterND node {node.name!r}: indices of shape {tuple(indices.shape)} "
                             f"for data of rank {len(shape)}")
        sizes = torch.tensor(shape[:depth], dtype=torch.long, device=indices.device)
        if bool(((indices < -sizes) | (indices >= sizes)).any()):
            raise ModelError(f"ScatterND node {node.name!r}: index out of range for shape {shape}")
        wrapped = torch.where(indices < 0, indices + sizes, indices).reshape(-1, depth)
        strides = torch.tensor([math.prod(shape[i + 1 : depth]) for i in range(depth)], dtype=torch.long)
        slices = (wrapped.cpu() * strides).sum(dim=1)  # one slice per leading index
        inner = math.prod(shape[depth:])
        return (slices.unsqueeze(1) * inner + torch.arange(inner)).reshape(-1)


@register("ScatterElements", "Scatter")
class ScatterElements(_Scatter):
    """ONNX ``ScatterElements`` (and the deprecated ``Scatter``): ``output[..., indices[i],
    ...] = updates[i]`` along ``axis``, ``indices`` of the shape of ``updates``."""

    def targets(self, node: Node, indices: Tensor, shape: tuple[int, ...]) -> Tensor:
        rank = len(shape)
        axis = int(node.attr("axis", 0))
        if not -rank <= axis < rank or indices.dim() != rank:
            raise ModelError(f"{node.op} node {node.name!r}: axis {axis} or indices of rank "
                             f"{indices.dim()} for data of rank {rank}")
        axis %= rank
        if any(int(i) > int(s) for i, s in zip(indices.shape, shape, strict=True)):
            raise ModelError(f"{node.op} node {node.name!r}: indices {tuple(indices.shape)} exceed data {shape}")
        size = shape[axis]
        if bool(((indices < -size) | (indices >= size)).any()):
            raise ModelError(f"{node.op} node {node.name!r}: index out of range for size {size}")
        wrapped = torch.where(indices < 0, indices + size, indices).cpu()
        grids = torch.meshgrid(*(torch.arange(int(n)) for n in indices.shape), indexing="ij")
        coordinates = [wrapped if d == axis else grids[d] for d in range(rank)]
        strides = [math.prod(shape[d + 1 :]) for d in range(rank)]
        return sum((c * s for c, s in zip(coordinates, strides, strict=True)), torch.zeros_like(wrapped)).reshape(-1)
