"""Shape, selection and data-movement ops.

Every op here is monotone non-decreasing in its data input(s) and, except the float casts and
linear ``Resize``, exact: outputs are copies of input elements (or constants), so the
:class:`~verifier.ops.base.MonotoneOp` corner rule gives exact interval bounds.

All ops preserve the dtype they are given: constant folding runs them on int64 shape tensors.
A data input that arrives unbatched (a constant) is given a batch of 1. ``Resize``,
``Upsample``, ``Pad``, ``DepthToSpace`` and ``SpaceToDepth`` live in
:mod:`verifier.ops.spatial`, imported here so that importing this module registers them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops import spatial as _spatial  # noqa: F401  (registers Resize, Pad, ...)
from verifier.ops.base import Affinity, Args, Flags, MonotoneOp, Pair, magnitude, register
from verifier.ops.linear import constant_arg, dynamic_input, require_constant
from verifier.ops.spatial import f32


def _data(node: Node, args: Args, batched: Flags) -> Tensor:
    return dynamic_input(node, args[0], batched[0])


def _ints(node: Node, key: str) -> tuple[int, ...] | None:
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
        return (self.select(node, _data(node, args, batched), args, batched),)


@register("Identity")
class Identity(Selection):
    """ONNX ``Identity``."""

    affinity = Affinity.JOINT
    copies_input = True

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        return x


@register("Dropout")
class Dropout(Selection):
    """Inference-mode ``Dropout``: the identity; the optional mask output is all true.

    ``training_mode=1`` (opset 12 input, moved to attrs) raises :class:`ModelError`.
    """

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "ratio", 2: "training_mode"}

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        training = node.attr("training_mode")
        if training is not None and bool(
            training if not isinstance(training, tuple) else training[0]
        ):
            raise ModelError(f"Dropout node {node.name!r}: training_mode=1 is unsupported")
        x = _data(node, args, batched)
        if len(node.outputs) > 1 and node.outputs[1]:
            return x, torch.ones_like(x, dtype=torch.bool)
        return (x,)


@register("Flatten")
class Flatten(Selection):
    """ONNX ``Flatten``: 2-D ``(prod(s[:axis]), prod(s[axis:]))``."""

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

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "shape"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        target = _ints(node, "shape")
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
        perm = _ints(node, "perm") or tuple(reversed(range(rank)))
        return x.permute(0, *[_axis(node, p, rank) + 1 for p in perm])


@register("Squeeze")
class Squeeze(Selection):
    """ONNX ``Squeeze``: ``axes`` attribute (opset < 13) or static input; absent = all 1s."""

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "axes"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        src = x.shape[1:]
        axes = _ints(node, "axes")
        if axes is None:
            drop = {i for i, d in enumerate(src) if d == 1}
        else:
            drop = {_axis(node, a, len(src)) for a in axes}
        if any(src[a] != 1 for a in drop):
            raise ModelError(
                f"Squeeze node {node.name!r}: axes {axes} of shape {tuple(src)} are not 1"
            )
        return _reshape(x, [d for i, d in enumerate(src) if i not in drop])


@register("Unsqueeze")
class Unsqueeze(Selection):
    """ONNX ``Unsqueeze``: ``axes`` attribute (opset < 13) or static input."""

    affinity = Affinity.JOINT
    copies_input = True

    static_inputs: ClassVar[dict[int, str]] = {1: "axes"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        axes = _ints(node, "axes")
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
        x = _data(node, args, batched)
        axis = _axis(node, int(node.attr("axis", 0)), x.dim() - 1)
        dim = x.shape[axis + 1]
        sizes = _ints(node, "split")
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
        starts, ends = _ints(node, "starts"), _ints(node, "ends")
        if starts is None or ends is None:
            raise ModelError(f"Slice node {node.name!r}: starts and ends must be constant")
        rank = x.dim() - 1
        axes = _ints(node, "axes") or tuple(range(len(starts)))
        steps = _ints(node, "steps") or (1,) * len(starts)
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


_FLOAT_TYPES = {
    1: (torch.float32, 2.0**-24, 2.0**-150),
    10: (torch.float16, 2.0**-11, 2.0**-25),
    11: (torch.float64, 2.0**-53, 0.0),
    16: (torch.bfloat16, 2.0**-8, 2.0**-134),
}
_OTHER_TYPES = {
    2: torch.uint8,
    3: torch.int8,
    4: torch.uint16,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    12: torch.uint32,
    13: torch.uint64,
}


def _cast(node: Node, x: Tensor, to: int) -> Tensor:
    if to in _FLOAT_TYPES:
        return x if x.is_floating_point() else x.to(_FLOAT_TYPES[to][0])
    if to in _OTHER_TYPES:
        return x.to(_OTHER_TYPES[to])
    raise ModelError(f"{node.op} node {node.name!r}: cast to ONNX type {to} is unsupported")


def _cast_error(to: int, mag: Tensor, unit: float) -> Tensor | None:
    """Rounding of a cast to a float type coarser than the working precision."""
    if to not in _FLOAT_TYPES:
        return None
    _, target_unit, tiny = _FLOAT_TYPES[to]
    if target_unit <= unit:
        return None
    return target_unit * mag + tiny


@register("Cast")
class Cast(MonotoneOp):
    """ONNX ``Cast``. Between float types it is the identity on our tensors (the working dtype
    is the configuration's); the rounding of a cast to a coarser float type (float16,
    bfloat16, or float32 under a float64 evaluation) goes into :meth:`fp_error`. Casts of
    constants to or from integer types are real casts (truncation toward zero, like numpy);
    bounds for a cast of a dynamic value to an integer/bool type raise :class:`ModelError`.
    """

    def is_affine(self, node: Node, batched: Flags) -> bool:
        """Affine (the identity up to rounding, which :meth:`fp_error` covers) between float types."""
        return self._to(node, []) in _FLOAT_TYPES

    def _to(self, node: Node, args: Args) -> int:
        return int(node.attrs["to"])

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (_cast(node, _data(node, args, batched), self._to(node, args)),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        if self._to(node, lower) not in _FLOAT_TYPES:
            raise ModelError(
                f"{node.op} node {node.name!r}: cast of a dynamic value to a non-float type is unsupported"
            )
        return super().interval(node, lower, upper, batched)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        return (_cast_error(self._to(node, lower), magnitude(out[0][0], out[1][0]), unit),)


_CODES = {t[0]: code for code, t in _FLOAT_TYPES.items()} | {t: c for c, t in _OTHER_TYPES.items()}


@register("CastLike")
class CastLike(Cast):
    """ONNX ``CastLike``: ``Cast`` to the dtype of the (constant) second input."""

    affinity = Affinity.JOINT

    def _to(self, node: Node, args: Args) -> int:
        target = args[1]
        assert target is not None
        return _CODES.get(target.dtype, 1)


@register("Expand")
class Expand(Selection):
    """ONNX ``Expand``: numpy bidirectional broadcast to the static ``shape``."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "shape"}

    def select(self, node: Node, x: Tensor, args: Args, batched: Flags) -> Tensor:
        shape = _ints(node, "shape")
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
        repeats = _ints(node, "repeats")
        if repeats is None or len(repeats) != x.dim() - 1:
            raise ModelError(
                f"Tile node {node.name!r}: repeats={repeats} do not fit rank {x.dim() - 1}"
            )
        return x.repeat(1, *repeats)


class _Constant(MonotoneOp):
    """Ops whose output is determined by static information only (used in folding)."""

    exact = True


@register("Shape")
class Shape(_Constant):
    """ONNX ``Shape``: the static shape (no batch) as int64, with opset-15 ``start``/``end``,
    repeated over the input's batch (a batch of 1 in constant folding)."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = _data(node, args, batched)
        start, end = node.attr("start"), node.attr("end")
        dims = list(x.shape[1:])[slice(start, end)]
        out = torch.tensor(dims, dtype=torch.int64, device=x.device)
        return (out.unsqueeze(0).expand(x.shape[0], -1),)


@register("Size")
class Size(_Constant):
    """ONNX ``Size``: the number of elements (int64 scalar), repeated over the batch."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = _data(node, args, batched)
        count = math.prod(x.shape[1:])
        return (torch.full((x.shape[0],), count, dtype=torch.int64, device=x.device),)


def _scalar(value: Any) -> Any:
    """A static scalar as given by the loader (python number, 1-tuple or numpy value)."""
    if isinstance(value, (tuple, list)):
        value = value[0]
    return value.item() if hasattr(value, "item") else value


def _scalar_dtype(values: Sequence[Any]) -> torch.dtype:
    for v in values:
        if hasattr(v, "dtype"):
            return torch.as_tensor(v).dtype
    return torch.int64 if all(isinstance(_scalar(v), int) for v in values) else torch.float32


@register("ConstantOfShape")
class ConstantOfShape(_Constant):
    """ONNX ``ConstantOfShape`` with a static ``shape``; the ``value`` tensor sets the dtype."""

    static_inputs: ClassVar[dict[int, str]] = {0: "shape"}

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        shape = _ints(node, "shape") or ()
        value = node.attr("value")
        if value is None:
            return (torch.zeros(1, *shape, dtype=torch.float32),)
        fill = torch.as_tensor(value).reshape(-1)
        return (fill[0].expand(1, *shape).clone(),)


@register("Range")
class Range(_Constant):
    """ONNX ``Range`` with static start/limit/delta: ``max(ceil((limit - start) / delta), 0)``
    elements. Integers: ``start + i * delta`` (int64 unless numpy scalars say otherwise).
    Floats: accumulated ``x += delta`` in the output precision, as onnxruntime does (float32
    unless numpy scalars say otherwise); only constant folding runs this, once per model.
    """

    static_inputs: ClassVar[dict[int, str]] = {0: "start", 1: "limit", 2: "delta"}

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        raw = [node.attr(k) for k in ("start", "limit", "delta")]
        if any(v is None for v in raw):
            raise ModelError(f"Range node {node.name!r}: start, limit and delta must be constant")
        start, limit, delta = (_scalar(v) for v in raw)
        if delta == 0:
            raise ModelError(f"Range node {node.name!r}: delta is 0")
        count = max(math.ceil((limit - start) / delta), 0)
        dtype = _scalar_dtype(raw)
        if not dtype.is_floating_point:
            return (
                (torch.arange(count, dtype=torch.int64) * delta + start).to(dtype).unsqueeze(0),
            )
        rounding = f32 if dtype == torch.float32 else lambda v: torch.tensor(v, dtype=dtype).item()
        values, acc, step = [], rounding(start), rounding(delta)
        for _ in range(count):
            values.append(acc)
            acc = rounding(acc + step)
        return (torch.tensor(values, dtype=dtype).unsqueeze(0),)
