"""Shape, selection and data-movement ops.

Every op here is monotone non-decreasing in its data input(s) and exact: outputs are copies of
input elements, so the :class:`~verifier.ops.base.MonotoneOp` corner rule gives exact interval
bounds.

All ops preserve the dtype they are given: constant folding runs them on int64 shape tensors.
A data input that arrives unbatched (a constant) is given a batch of 1. Related ops live in
their own modules: casts in :mod:`verifier.ops.cast`, ops computed from static information
(``Shape``, ``Size``, ``ConstantOfShape``, ``Range``) in :mod:`verifier.ops.constant`, and
``Resize``, ``Upsample``, ``Pad``, ``DepthToSpace`` and ``SpaceToDepth`` in
:mod:`verifier.ops.spatial`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Affinity, Args, Flags, MonotoneOp, Pair, register
from verifier.ops.linear import constant_arg, dynamic_input, require_constant


def data_input(node: Node, args: Args, batched: Flags) -> Tensor:
    """The data input (input 0) as a batched tensor (a constant gets a batch of 1)."""
    return dynamic_input(node, args[0], batched[0])


def int_attr(node: Node, key: str) -> tuple[int, ...] | None:
    """An int-list attribute as a tuple (``None`` when absent)."""
    value = node.attr(key)
    if value is None:
        return None
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _axis(node: Node, axis: int, rank: int) -> int:
    """Normalises a possibly negative axis of a value of static rank ``rank``."""
    if not -rank <= axis < max(rank, 1):
        raise ModelError(f"{node.op} node {node.name!r}: axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    return x.reshape(x.shape[0], *shape)


class Selection(MonotoneOp):
    """An exact op that only moves, copies or selects elements of its data input."""

    exact = True

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        """The op on the batched data input ``x`` (other arguments as given)."""
        raise NotImplementedError(type(self).__name__)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (self.select(node, data_input(node, args, batched), args, batched),)


@register("Identity")
class Identity(Selection):
    """ONNX ``Identity``."""

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        return x


@register("Dropout")
class Dropout(Selection):
    """Inference-mode ``Dropout``: the identity; the optional mask output is all true.

    ``training_mode=1`` (opset 12 input, moved to attrs) raises :class:`ModelError`.
    """

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "ratio", 2: "training_mode"}

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        training = node.attr("training_mode")
        if training is not None and bool(
            training if not isinstance(training, tuple) else training[0]
        ):
            raise ModelError(f"Dropout node {node.name!r}: training_mode=1 is unsupported")
        x = data_input(node, args, batched)
        if len(node.outputs) > 1 and node.outputs[1]:
            return x, torch.ones_like(x, dtype=torch.bool)
        return (x,)


@register("Flatten")
class Flatten(Selection):
    """ONNX ``Flatten``: 2-D ``(prod(s[:axis]), prod(s[axis:]))``."""

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        shape = x.shape[1:]
        axis = int(node.attr("axis", 1))
        axis = axis + len(shape) if axis < 0 else axis
        return _reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))


@register("Reshape")
class Reshape(Selection):
    """ONNX ``Reshape``: 0 copies the input dim (unless ``allowzero=1``), -1 is inferred."""

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "shape"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        target = int_attr(node, "shape")
        if target is None:
            raise ModelError(f"Reshape node {node.name!r}: the target shape must be constant")
        src = x.shape[1:]
        allowzero = bool(node.attr("allowzero", 0))
        new = [src[i] if (v == 0 and not allowzero) else v for i, v in enumerate(target)]
        if -1 in new:
            known = math.prod(v for v in new if v != -1)
            new[new.index(-1)] = math.prod(src) // known if known else 0
        if math.prod(new) != math.prod(src):
            raise ModelError(f"Reshape node {node.name!r}: cannot reshape {tuple(src)} to {target}")
        return _reshape(x, new)


@register("Transpose")
class Transpose(Selection):
    """ONNX ``Transpose`` (``perm`` defaults to reversing the axes)."""

    affinity = Affinity.JOINT

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        rank = x.dim() - 1
        perm = int_attr(node, "perm") or tuple(reversed(range(rank)))
        return x.permute(0, *[_axis(node, p, rank) + 1 for p in perm])


@register("Squeeze")
class Squeeze(Selection):
    """ONNX ``Squeeze``: ``axes`` attribute (opset < 13) or static input; absent = all 1s."""

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "axes"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        src = x.shape[1:]
        axes = int_attr(node, "axes")
        drop = ({i for i, d in enumerate(src) if d == 1} if axes is None
                else {_axis(node, a, len(src)) for a in axes})
        if any(src[a] != 1 for a in drop):
            raise ModelError(
                f"Squeeze node {node.name!r}: axes {axes} of shape {tuple(src)} are not 1"
            )
        return _reshape(x, [d for i, d in enumerate(src) if i not in drop])


@register("Unsqueeze")
class Unsqueeze(Selection):
    """ONNX ``Unsqueeze``: ``axes`` attribute (opset < 13) or static input."""

    proof_checked = True

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "axes"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        axes = int_attr(node, "axes")
        if axes is None:
            raise ModelError(f"Unsqueeze node {node.name!r}: axes must be constant")
        src = list(x.shape[1:])
        rank = len(src) + len(axes)
        inserted = sorted(_axis(node, a, rank) for a in axes)
        for a in inserted:
            src.insert(a, 1)
        return _reshape(x, src)


@register("Concat")
class Concat(MonotoneOp):
    """ONNX ``Concat`` of dynamic and constant inputs (constants are repeated over the batch)."""

    affinity = Affinity.JOINT

    exact = True

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        parts = [(a, b) for a, b in zip(args, batched, strict=True) if a is not None]
        dyn = [a for a, b in parts if b]
        if not dyn:
            dyn = [parts[0][0].unsqueeze(0)]
        size, dtype = max(a.shape[0] for a in dyn), dyn[0].dtype
        rank = dyn[0].dim() - 1
        axis = _axis(node, int(node.attrs["axis"]), rank)
        full = []
        for a, b in parts:
            a = a if b else a.unsqueeze(0)
            full.append(a.to(dtype).expand(size, *a.shape[1:]))
        return (torch.cat(full, dim=axis + 1),)


@register("Split")
class Split(MonotoneOp):
    """ONNX ``Split``: ``split`` attribute/static input, or equal parts (last smaller, opset 18)."""

    affinity = Affinity.JOINT

    exact = True
    static_inputs: ClassVar[dict[int, str]] = {1: "split"}

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = data_input(node, args, batched)
        axis = _axis(node, int(node.attr("axis", 0)), x.dim() - 1)
        dim = x.shape[axis + 1]
        sizes = int_attr(node, "split")
        count = len(node.outputs)
        if not sizes:
            chunk = -(-dim // count)
            sizes = (chunk,) * (count - 1) + (dim - chunk * (count - 1),)
        if sum(sizes) != dim or len(sizes) != count or min(sizes) < 0:
            raise ModelError(
                f"Split node {node.name!r}: cannot split {dim} into {sizes} for {count} outputs"
            )
        return tuple(torch.split(x, list(sizes), dim=axis + 1))


def slice_axis(x: Tensor, dim: int, start: int, end: int, step: int) -> Tensor:
    """ONNX slicing of one axis (``dim`` of the batched tensor) with clamping, any step sign."""
    size = x.shape[dim]
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        return x.narrow(dim, start, max(end - start, 0))[
            (slice(None),) * dim + (slice(None, None, step),)
        ]
    start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
    flipped = x.flip(dim)
    first, stop = size - 1 - start, size - 1 - end
    return flipped.narrow(dim, first, max(stop - first, 0))[
        (slice(None),) * dim + (slice(None, None, -step),)
    ]


@register("Slice")
class Slice(Selection):
    """ONNX ``Slice`` (attributes for opset < 10, static inputs after); negative steps."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "starts", 2: "ends", 3: "axes", 4: "steps"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        starts, ends = int_attr(node, "starts"), int_attr(node, "ends")
        if starts is None or ends is None:
            raise ModelError(f"Slice node {node.name!r}: starts and ends must be constant")
        rank = x.dim() - 1
        axes = int_attr(node, "axes") or tuple(range(len(starts)))
        steps = int_attr(node, "steps") or (1,) * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise ModelError(f"Slice node {node.name!r}: inconsistent starts/ends/axes/steps")
        for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
            x = slice_axis(x, _axis(node, axis, rank) + 1, start, end, step)
        return x


def _indices(node: Node, args: Args, batched: Flags, size: int) -> Tensor:
    """The constant ``indices`` input as int64 with negative entries wrapped."""
    idx = constant_arg(node, args[1], batched[1], "indices").long()
    if bool(((idx < -size) | (idx >= size)).any()):
        raise ModelError(f"{node.op} node {node.name!r}: index out of range for size {size}")
    return torch.where(idx < 0, idx + size, idx)


@register("Gather")
class Gather(Selection):
    """ONNX ``Gather`` with constant indices (scalar indices drop the axis)."""

    affinity = Affinity.JOINT

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        src = x.shape[1:]
        axis = _axis(node, int(node.attr("axis", 0)), len(src))
        idx = _indices(node, args, batched, src[axis])
        y = x.index_select(axis + 1, idx.reshape(-1))
        return _reshape(y, (*src[:axis], *idx.shape, *src[axis + 1 :]))

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        require_constant(node, batched, [1], ["indices"])
        return super().interval(node, lower, upper, batched)


@register("GatherElements")
class GatherElements(Gather):
    """ONNX ``GatherElements`` with constant indices."""

    affinity = Affinity.JOINT

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        src = x.shape[1:]
        axis = _axis(node, int(node.attr("axis", 0)), len(src))
        idx = _indices(node, args, batched, src[axis])
        return torch.gather(x, axis + 1, idx.unsqueeze(0).expand(x.shape[0], *idx.shape))


@register("Expand")
class Expand(Selection):
    """ONNX ``Expand``: numpy bidirectional broadcast to the static ``shape``."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "shape"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        shape = int_attr(node, "shape")
        if shape is None:
            raise ModelError(f"Expand node {node.name!r}: shape must be constant")
        src = tuple(x.shape[1:])
        try:
            out = tuple(torch.broadcast_shapes(src, shape))
        except RuntimeError as err:
            raise ModelError(
                f"Expand node {node.name!r}: cannot broadcast {src} to {shape}"
            ) from err
        x = _reshape(x, (1,) * (len(out) - len(src)) + src)
        return x.expand(x.shape[0], *out).contiguous()


@register("Tile")
class Tile(Selection):
    """ONNX ``Tile`` with static ``repeats``."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "repeats"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        repeats = int_attr(node, "repeats")
        if repeats is None or len(repeats) != x.dim() - 1:
            raise ModelError(
                f"Tile node {node.name!r}: repeats={repeats} do not fit rank {x.dim() - 1}"
            )
        return x.repeat(1, *repeats)
