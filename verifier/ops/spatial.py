"""Spatial rearrangement: ``Resize``, ``Upsample``, ``Pad``, ``DepthToSpace``, ``SpaceToDepth``.

All are monotone non-decreasing in the data input, so the corner rule gives exact bounds;
all but linear resizing only copy elements (or a constant pad value) and are exact.

``Resize``/``Upsample`` nearest is a selection; linear has non-negative weights.
Coordinates follow onnxruntime bit for bit where it matters: source coordinates are computed
in float32 with onnxruntime's formulas and operation order, the output size from scales is
``floor(float32(in * scale))``, and scales derived from sizes are ``float32(out) / in``. The
linear weights are onnxruntime's float32 weights, so only the weighted sums round:
``fp_error = gamma(3k + 2) * resize(m)`` for ``k`` interpolated axes.

Supported: modes ``nearest`` (nearest_mode round_prefer_floor, round_prefer_ceil, floor,
ceil; onnxruntime's legacy rule for Resize-10 and Upsample) and ``linear``; coordinate modes
half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric,
tf_half_pixel_for_nn; opset-18 ``axes`` and ``keep_aspect_ratio_policy``. Others (cubic,
tf_crop_and_resize, antialias) raise :class:`ModelError`.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Affinity, Args, Flags, MonotoneOp, Pair, gamma, magnitude, register
from verifier.ops.conv import torch_pad_list
from verifier.ops.linear import dynamic_input


def f32(value: float) -> float:
    """Rounds a python float to the nearest float32 (exact float32 arithmetic emulation)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _text(node: Node, key: str, default: str) -> str:
    value = node.attr(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _floats(value: Any) -> tuple[float, ...]:
    """A static float list (tuple, list or numpy array) as a tuple; ``()`` when absent."""
    if value is None:
        return ()
    if hasattr(value, "reshape"):
        value = value.reshape(-1)
    return tuple(float(v) for v in value)


class Plan:
    """Per-axis output sizes, scales and the coordinate/nearest rules of one node."""

    def __init__(self, node: Node, sizes: tuple[int, ...]) -> None:
        self.node = node
        rank = len(sizes)
        opset = node.attr("_opset")
        legacy = (
            node.op == "Upsample"
            or "coordinate_transformation_mode" not in node.attrs
            or (opset is not None and int(opset) < 11)
        )
        scales = _floats(node.attr("scales"))
        if node.op == "Resize" and legacy and not scales:
            scales = _floats(node.attr("roi"))  # Resize-10: input 1 holds the scales
        self.coord = (
            "asymmetric" if legacy else _text(node, "coordinate_transformation_mode", "half_pixel")
        )
        self.nearest = "legacy" if legacy else _text(node, "nearest_mode", "round_prefer_floor")
        self.mode = _text(node, "mode", "nearest")
        if self.mode == "bilinear":
            self.mode = "linear"
        self._check()
        axes = tuple(
            int(a) + rank if int(a) < 0 else int(a) for a in (node.attr("axes") or range(rank))
        )
        target = tuple(int(v) for v in (node.attr("sizes") or ()))
        full_scales = [1.0] * rank
        outs = list(sizes)
        if target:
            self._from_sizes(sizes, axes, target, full_scales, outs)
        elif len(scales) == len(axes):
            for a, s in zip(axes, scales, strict=True):
                full_scales[a] = f32(s)
                outs[a] = math.floor(f32(s * sizes[a]))
        else:
            raise ModelError(
                f"{node.op} node {node.name!r}: needs constant scales or sizes for {len(axes)} axes"
            )
        self.scales, self.outs, self.sizes = tuple(full_scales), tuple(outs), sizes

    def _check(self) -> None:
        node = self.node
        if self.mode not in ("nearest", "linear"):
            raise ModelError(f"{node.op} node {node.name!r}: unsupported mode={self.mode!r}")
        if self.coord not in _COORDS:
            raise ModelError(
                f"{node.op} node {node.name!r}: unsupported coordinate_transformation_mode={self.coord!r}"
            )
        if self.nearest not in (
            "legacy",
            "round_prefer_floor",
            "round_prefer_ceil",
            "floor",
            "ceil",
        ):
            raise ModelError(
                f"{node.op} node {node.name!r}: unsupported nearest_mode={self.nearest!r}"
            )
        if int(node.attr("antialias", 0)):
            raise ModelError(f"{node.op} node {node.name!r}: antialias=1 is unsupported")

    def _from_sizes(
        self,
        sizes: tuple[int, ...],
        axes: tuple[int, ...],
        target: tuple[int, ...],
        scales: list[float],
        outs: list[int],
    ) -> None:
        policy = _text(self.node, "keep_aspect_ratio_policy", "stretch")
        ratios = [f32(t / sizes[a]) for a, t in zip(axes, target, strict=True)]
        if policy == "stretch":
            for a, t, r in zip(axes, target, ratios, strict=True):
                scales[a], outs[a] = r, t
            return
        if policy not in ("not_larger", "not_smaller"):
            raise ModelError(
                f"{self.node.op} node {self.node.name!r}: unsupported keep_aspect_ratio_policy={policy!r}"
            )
        ratio = min(ratios) if policy == "not_larger" else max(ratios)
        for a in axes:
            scales[a] = ratio
            outs[a] = math.floor(f32(ratio * sizes[a]) + 0.5)

    def source(self, axis: int, device: torch.device) -> Tensor:
        """Float32 source coordinate of every output position along ``axis``, on ``device``.

        Computed on the CPU whatever ``device`` is: its float32 arithmetic is IEEE's, as
        onnxruntime's is, whereas CUDA kernels may divide by a scalar through its reciprocal,
        one rounding more (coordinates an ulp off move the linear weights by about 1e-7).
        """
        out, size, scale = self.outs[axis], self.sizes[axis], self.scales[axis]
        x = torch.arange(out, dtype=torch.float32)
        full = lambda v: torch.full_like(x, v)  # noqa: E731
        return _COORDS[self.coord](x, full(scale), out, size, full).to(device)

    def nearest_index(self, axis: int, device: torch.device) -> Tensor:
        """onnxruntime's nearest source index along ``axis``."""
        x = self.source(axis, device)
        mode = self.nearest
        if mode == "legacy":
            idx = torch.ceil(x) if self.scales[axis] < 1 else torch.trunc(x)
        elif mode in ("round_prefer_floor", "round_prefer_ceil"):
            whole = torch.trunc(x)
            frac = (x - whole).abs()
            up = frac > 0.5 if mode == "round_prefer_floor" else frac >= 0.5
            idx = whole + torch.where(up, torch.sign(x), torch.zeros_like(x))
        else:
            idx = torch.floor(x) if mode == "floor" else torch.ceil(x)
        return idx.clamp(0, self.sizes[axis] - 1).long()

    def linear_weights(
        self, axis: int, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Two source indices and their float32 weights per output position (onnxruntime's)."""
        size = self.sizes[axis]
        x = self.source(axis, device).clamp(0.0, float(size - 1))
        i1 = torch.trunc(x).clamp(max=size - 1)
        i2 = (i1 + 1).clamp(max=size - 1)
        w1, w2 = (x - i2).abs(), (x - i1).abs()
        same = i1 == i2
        half = torch.full_like(x, 0.5)
        return i1.long(), i2.long(), torch.where(same, half, w1), torch.where(same, half, w2)

    def moved_axes(self) -> list[int]:
        """Axes whose output differs from the input (size or scale).

        None when the output shape equals the input shape: onnxruntime then copies the input
        whatever the scales say.
        """
        if self.outs == self.sizes:
            return []
        return [
            a
            for a in range(len(self.sizes))
            if self.outs[a] != self.sizes[a] or self.scales[a] != 1.0
        ]


def _half_pixel_symmetric(x: Tensor, scale: Tensor, out: int, size: int, full: object) -> Tensor:
    # onnxruntime: the offset in float32, the rest in double (double literals), then float32
    adjustment = out / (scale * size)
    offset = (size / 2) * (1 - adjustment)
    x64, s64 = x.double(), scale.double()
    return (offset.double() + (x64 + 0.5) / s64 - 0.5).float()


_COORDS = {
    "half_pixel": lambda x, s, out, size, full: (x + 0.5) / s - 0.5,
    "half_pixel_symmetric": _half_pixel_symmetric,
    "pytorch_half_pixel": lambda x, s, out, size, full: (
        (x + 0.5) / s - 0.5 if out > 1 else full(0.0)
    ),
    "align_corners": lambda x, s, out, size, full: (
        full(0.0) if out == 1 else x * (size - 1) / (out - 1)
    ),
    "asymmetric": lambda x, s, out, size, full: x / s,
    "tf_half_pixel_for_nn": lambda x, s, out, size, full: (x + 0.5) / s,
}


@register("Resize")
class Resize(MonotoneOp):
    """ONNX ``Resize`` (opsets 10-19), nearest and linear; see the module docstring."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "roi", 2: "scales", 3: "sizes"}
    monotonicity: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        plan = Plan(node, tuple(x.shape[1:]))
        for a in plan.moved_axes():
            if plan.mode == "nearest":
                x = x.index_select(a + 1, plan.nearest_index(a, x.device))
                continue
            i1, i2, w1, w2 = plan.linear_weights(a, x.device)
            view = [1] * x.dim()
            view[a + 1] = -1
            w1, w2 = w1.to(x.dtype).reshape(view), w2.to(x.dtype).reshape(view)
            x = w1 * x.index_select(a + 1, i1) + w2 * x.index_select(a + 1, i2)
        return (x,)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        return super().interval(node, lower[:1], upper[:1], batched[:1])

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        plan = Plan(node, tuple(lo.shape[1:]))
        if plan.mode == "nearest":
            return (None,)
        (resized,) = self.forward(node, [magnitude(lo, hi)], [True])
        return (gamma(3 * len(plan.moved_axes()) + 2, unit) * resized,)


@register("Upsample")
class Upsample(Resize):
    """ONNX ``Upsample`` (opset 7 attribute scales, opset 9 static input): asymmetric
    coordinates, onnxruntime's legacy nearest rule, ``floor(in * scale)`` outputs."""

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "scales"}


class _Rearrange(MonotoneOp):
    """An exact op that copies elements of its data input (and constants) around."""

    exact = True

    def rearrange(self, node: Node, x: Tensor) -> Tensor:
        """The op on the batched data input."""
        raise NotImplementedError(type(self).__name__)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (self.rearrange(node, dynamic_input(node, args[0], batched[0])),)


def _int_list(node: Node, key: str) -> tuple[int, ...] | None:
    value = node.attr(key)
    return None if value is None else tuple(int(v) for v in value)


def _axis(node: Node, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ModelError(f"{node.op} node {node.name!r}: axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _pad_value(node: Node) -> float:
    value = node.attr("constant_value")
    if value is None:
        value = node.attr("value", 0.0)
    if isinstance(value, tuple):
        value = value[0] if value else 0.0
    return float(value)


def _pad_index(mode: str, begin: int, end: int, size: int, device: torch.device) -> Tensor:
    """Source index of every output position of one padded axis (reflect/edge/wrap)."""
    idx = torch.arange(-begin, size + end, device=device)
    if mode == "edge":
        return idx.clamp(0, size - 1)
    if mode == "wrap":
        return torch.remainder(idx, size)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= size, period - idx, idx)


@register("Pad")
class Pad(_Rearrange):
    """ONNX ``Pad``: modes constant, reflect, edge, wrap; negative pads crop; opset-18 axes."""

    proof_checked = True

    affinity = Affinity.JOINT

    static_inputs: ClassVar[dict[int, str]] = {1: "pads", 2: "constant_value", 3: "axes"}

    def rearrange(self, node: Node, x: Tensor) -> Tensor:
        rank = x.dim() - 1
        pads = _int_list(node, "pads")
        axes = _int_list(node, "axes") or tuple(range(rank))
        if pads is None or len(pads) != 2 * len(axes):
            raise ModelError(f"Pad node {node.name!r}: pads={pads} do not fit axes {axes}")
        begin, end = [0] * rank, [0] * rank
        for i, a in enumerate(axes):
            begin[_axis(node, a, rank)] = pads[i]
            end[_axis(node, a, rank)] = pads[i + len(axes)]
        mode = _text(node, "mode", "constant")
        if mode == "constant":
            value: Any = _pad_value(node)
            value = value if x.is_floating_point() else int(value)
            return F.pad(x, torch_pad_list(begin, end), value=value)
        if mode not in ("reflect", "edge", "wrap"):
            raise ModelError(f"Pad node {node.name!r}: unsupported mode={mode!r}")
        for a in range(rank):
            if begin[a] or end[a]:
                x = x.index_select(
                    a + 1, _pad_index(mode, begin[a], end[a], x.shape[a + 1], x.device)
                )
        return x


def _four_d(node: Node, x: Tensor) -> tuple[int, int, int, int, int]:
    if x.dim() != 5:
        raise ModelError(f"{node.op} node {node.name!r}: needs a 4-D input, got rank {x.dim() - 1}")
    b, n, c, h, w = x.shape
    return b, n, c, h, w


@register("DepthToSpace")
class DepthToSpace(_Rearrange):
    """ONNX ``DepthToSpace`` (modes DCR and CRD) on ``(N, C, H, W)``."""

    affinity = Affinity.JOINT

    def rearrange(self, node: Node, x: Tensor) -> Tensor:
        b, n, c, h, w = _four_d(node, x)
        k = int(node.attrs["blocksize"])
        mode = _text(node, "mode", "DCR")
        if mode == "DCR":
            y = x.reshape(b, n, k, k, c // (k * k), h, w).permute(0, 1, 4, 5, 2, 6, 3)
        elif mode == "CRD":
            y = x.reshape(b, n, c // (k * k), k, k, h, w).permute(0, 1, 2, 5, 3, 6, 4)
        else:
            raise ModelError(f"DepthToSpace node {node.name!r}: unsupported mode={mode!r}")
        return y.reshape(b, n, c // (k * k), h * k, w * k)


@register("SpaceToDepth")
class SpaceToDepth(_Rearrange):
    """ONNX ``SpaceToDepth`` on ``(N, C, H, W)``."""

    affinity = Affinity.JOINT

    def rearrange(self, node: Node, x: Tensor) -> Tensor:
        b, n, c, h, w = _four_d(node, x)
        k = int(node.attrs["blocksize"])
        y = x.reshape(b, n, c, h // k, k, w // k, k).permute(0, 1, 4, 6, 2, 3, 5)
        return y.reshape(b, n, c * k * k, h // k, w // k)
