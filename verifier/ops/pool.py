"""Pooling: ``MaxPool``, ``AveragePool``, ``LpPool`` and their global variants.

A dynamic tensor is ``(B, N, C, *spatial)``; ``B`` and ``N`` are folded together for torch.
Window geometry (explicit pads, ``auto_pad``, ``ceil_mode``, dilations) follows onnxruntime:
the input is padded explicitly (``-inf`` for max, 0 for sums) to exactly the extent that the
windows read, then pooled without implicit padding, so torch's own ``ceil_mode`` and
symmetric-padding rules never come into play. A window that sees no input element raises
:class:`ModelError` (onnxruntime would return a sentinel value there).

``MaxPool`` returns only its first output; the loader rejects models that use ``Indices``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops import max_form as forms
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
from verifier.ops.conv import Ints, fold_batch, spatial_attr, torch_pad_list, window_pads
from verifier.ops.linear import dynamic_input
from verifier.ops.max_form import MaxForm
from verifier.ops.multi_relax import (
    Moved,
    MultiRule,
    PlaneWeights,
    WindowPlanes,
    flat_positions,
    lower_weights,
    row_bias,
    single_input,
    weighted_scale,
    window_max_rule,
    window_planes,
)

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class Window:
    """The static geometry of one pooling node over a given spatial input shape.

    Negative pads (from ``SAME_*`` with strides larger than the kernel) follow onnxruntime: a
    negative begin shifts the windows (crops the input); a negative end shrinks the output but
    the windows still read the input there, except for ``AveragePool`` (``crop_tail``), whose
    onnxruntime kernel crops the input. :attr:`sizes` is the size after cropping.
    """

    def __init__(self, node: Node, sizes: Sequence[int], crop_tail: bool = False) -> None:
        kernel = node.attr("kernel_shape")
        if kernel is None or len(kernel) != len(sizes) or len(sizes) not in _MAX:
            raise ModelError(
                f"{node.op} node {node.name!r}: kernel_shape={kernel} does not fit the "
                f"{len(sizes)} spatial axes of the input"
            )
        nd = len(sizes)
        self.node = node
        self.kernel: Ints = tuple(int(k) for k in kernel)
        self.strides = spatial_attr(node, "strides", nd, 1)
        self.dilations = spatial_attr(node, "dilations", nd, 1)
        begin, end = window_pads(
            node, sizes, self.kernel, self.strides, self.dilations, dilated_same=False
        )
        self.crop: tuple[Ints, Ints] = (
            tuple(max(0, -p) for p in begin),
            tuple(max(0, -p) if crop_tail else 0 for p in end),
        )
        self.begin: Ints = tuple(max(0, p) for p in begin)
        self.end: Ints = tuple(max(0, p) if crop_tail else p for p in end)
        self.sizes: Ints = tuple(
            int(n) - cb - ce for n, cb, ce in zip(sizes, *self.crop, strict=True)
        )
        ceil = bool(node.attr("ceil_mode", 0))
        self.outs: Ints = tuple(self._out_size(i, ceil) for i in range(nd))

    def _out_size(self, i: int, ceil: bool) -> int:
        """Output size along axis ``i``; checks that every window sees an input element."""
        size, k, s, d = self.sizes[i], self.kernel[i], self.strides[i], self.dilations[i]
        b, e = self.begin[i], self.end[i]
        span = size + b + e - (k - 1) * d - 1
        out = (-(-span // s) if ceil else span // s) + 1
        if ceil and (out - 1) * s >= size + b:
            out -= 1  # the last window would start in the end padding
        for o in range(max(out, 0)):
            if not any(0 <= o * s + j * d - b < size for j in range(k)):
                raise ModelError(
                    f"{self.node.op} node {self.node.name!r}: pooling window {o} of axis {i} "
                    "lies entirely in the padding"
                )
        if out < 1:
            raise ModelError(
                f"{self.node.op} node {self.node.name!r}: the window does not fit the input of size {size}"
            )
        return out

    @property
    def extent_end(self) -> Ints:
        """Padding after the (cropped) input so that the windows read exactly the padded tensor."""
        return tuple(
            (o - 1) * s + (k - 1) * d + 1 - size - b
            for o, s, k, d, size, b in zip(
                self.outs,
                self.strides,
                self.kernel,
                self.dilations,
                self.sizes,
                self.begin,
                strict=True,
            )
        )

    def pad(self, x: Tensor, value: float, cropped: bool = False) -> Tensor:
        """Crops and pads ``(M, C, *sizes)`` with ``value`` to the extent the windows read."""
        if not cropped:
            x = F.pad(x, torch_pad_list([-c for c in self.crop[0]], [-c for c in self.crop[1]]))
        return F.pad(x, torch_pad_list(self.begin, self.extent_end), value=value)

    def _ones_conv(self, padded: Tensor) -> Tensor:
        """Window sums of an already padded ``(M, 1, *extent)`` tensor."""
        ones = torch.ones(1, 1, *self.kernel, dtype=padded.dtype, device=padded.device)
        return _CONV[len(self.kernel)](padded, ones, None, self.strides, 0, self.dilations)

    def window_sum(self, x: Tensor) -> Tensor:
        """Sum over each window of ``(M, C, *sizes)`` (zero padding), via a ones convolution."""
        m, c = x.shape[:2]
        y = self._ones_conv(self.pad(x.reshape(m * c, 1, *x.shape[2:]), 0.0))
        return y.reshape(m, c, *y.shape[2:])

    def counts(self, like: Tensor, include_pad: bool) -> Tensor:
        """Per-window number of input elements (or of input plus explicit-pad elements)."""
        if not include_pad:
            ones = torch.ones(1, 1, *self.sizes, dtype=like.dtype, device=like.device)
            return self._ones_conv(self.pad(ones, 0.0, cropped=True))[0, 0]
        kept = [min(max(e, 0), x) for e, x in zip(self.end, self.extent_end, strict=True)]
        extent = [b + n + k for b, n, k in zip(self.begin, self.sizes, kept, strict=True)]
        mask = torch.ones(1, 1, *extent, dtype=like.dtype, device=like.device)
        zeros = [x - k for x, k in zip(self.extent_end, kept, strict=True)]
        mask = F.pad(mask, torch_pad_list([0] * len(extent), zeros))
        return self._ones_conv(mask)[0, 0]

    @property
    def size(self) -> int:
        """Number of elements of one window."""
        return math.prod(self.kernel)


def _window(node: Node, x: Tensor) -> tuple[Window, Tensor, int, int]:
    xb, b, n = fold_batch(x, node)
    return Window(node, xb.shape[2:]), xb, b, n


class _Pool:
    """MaxPool geometry on bounds ``(N, B, C, *spatial)``: windows as flat padded positions."""

    def __init__(self, node: Node, shape: Sequence[int], device: torch.device) -> None:
        self.shape = tuple(shape)
        self.win = win = Window(node, self.shape[3:])
        self.padded = [b + n + e for b, n, e in zip(win.begin, win.sizes, win.extent_end, strict=True)]
        grid = torch.arange(math.prod(self.padded), device=device).reshape(1, 1, *self.padded)
        for i, (k, s, d) in enumerate(zip(win.kernel, win.strides, win.dilations, strict=True)):
            grid = grid.unfold(2 + i, (k - 1) * d + 1, s)[..., ::d]
        self.index = grid.reshape(-1, win.size)  # (L, K) flat padded positions of each window

    def windows(self, t: Tensor) -> Tensor:
        """``(N, B, C, *spatial)`` -> ``(N, B, C, L, K)`` with ``-inf`` padding."""
        n, b, c = self.shape[:3]
        padded = self.win.pad(t.reshape(n * b, c, *self.shape[3:]), -math.inf)
        return padded.reshape(n, b, c, -1)[..., self.index]

    def to_input(self, values: Tensor, positions: Tensor) -> Tensor:
        """Sums ``values (N, R, B, C, M)`` into the padded flat ``positions`` (broadcastable)
        and returns the input's part, ``(N, R, B, C, *spatial)``."""
        padded = torch.zeros((*values.shape[:-1], math.prod(self.padded)), dtype=values.dtype, device=values.device)
        padded = padded.scatter_add(-1, positions.expand_as(values), values)
        padded = padded.reshape(*values.shape[:-1], *self.padded)
        win, nd = self.win, len(self.padded)
        missing = []  # input elements after the last window (negative extent_end)
        for i, (b, n, p) in enumerate(zip(win.begin, win.sizes, self.padded, strict=True)):
            kept = min(n, p - b)
            padded = padded.narrow(padded.dim() - nd + i, b, kept)
            missing.append(n - kept + win.crop[1][i])
        return F.pad(padded, torch_pad_list(win.crop[0], missing))

    def position(self, slot: Tensor) -> Tensor:
        """Padded flat position ``(N, 1, B, C, L)`` of the chosen ``slot (N, B, C, L)``."""
        index = self.index.expand(*slot.shape, -1)
        return index.gather(-1, slot.unsqueeze(-1)).squeeze(-1).unsqueeze(1)


def _pool_planes(node: Node, bounds: tuple[Tensor, Tensor], dtype: torch.dtype) -> tuple[_Pool, WindowPlanes]:
    lo, hi = (t.to(dtype) for t in bounds)
    pool = _Pool(node, lo.shape, lo.device)
    return pool, window_planes(pool.windows(lo), pool.windows(hi), False)


def _pool_moved(node: Node, a: Tensor, los: Args, his: Args, batched: Flags, chosen: Tensor | None) -> Moved | None:
    """``A`` through the window planes; ``chosen``: alpha's lower-plane weights ``(N, R, B, C,
    L, K)`` per row (None: ``max >= x[low]``; else the convex plane of
    :func:`~verifier.ops.multi_relax.lower_weights`)."""
    bounds = single_input(los, his, batched)
    if bounds is None:
        return None
    pool, planes = _pool_planes(node, bounds, a.dtype)
    a = a.flatten(-len(pool.win.kernel))  # (N, R, B, C, L)
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    up_values, up_positions = neg * planes.slope.unsqueeze(1), pool.position(planes.up)
    if chosen is None:
        values = torch.cat([pos, up_values], dim=-1)
        positions = torch.cat([pool.position(planes.low), up_positions], dim=-1)
        scale = planes.scale
    else:
        lo_w, hi_w = (pool.windows(t.to(a.dtype)) for t in bounds)
        weights = lower_weights(chosen.reshape(*a.shape, -1), planes, hi_w)  # (N, R, B, C, L, K)
        every = pool.index.flatten().expand(*up_positions.shape[:-1], -1)  # every slot of every window
        values = torch.cat([(pos.unsqueeze(-1) * weights.to(a.dtype)).flatten(-2), up_values], dim=-1)
        positions = torch.cat([every, up_positions], dim=-1)
        scale = weighted_scale(planes, lo_w, hi_w)
    bias = row_bias(a, torch.zeros_like(planes.bias), planes.bias, scale)
    return Moved({0: pool.to_input(values, positions)}, bias)


def _pool_backward(node: Node, a: Tensor, los: Args, his: Args, batched: Flags) -> Moved | None:
    return _pool_moved(node, a, los, his, batched, None)


def _pool_seed(node: Node, los: Args, his: Args, batched: Flags) -> Tensor | None:
    """The default lower plane, one-hot ``(N, B, C, L, K)`` (``L`` windows of ``K`` slots, in
    the output's order), where some window is undecided."""
    bounds = single_input(los, his, batched)
    if bounds is None:
        return None
    pool, planes = _pool_planes(node, bounds, torch.float64)
    if bool(planes.decided.all()):
        return None
    return F.one_hot(planes.low, pool.win.size).double()


def _pool_refine(node: Node, los: Args, his: Args, batched: Flags) -> dict[int, Tensor]:
    bounds = single_input(los, his, batched)
    if bounds is None:
        return {}
    pool, planes = _pool_planes(node, bounds, bounds[0].dtype)
    undecided = (~planes.decided).to(bounds[0].dtype).unsqueeze(1).unsqueeze(-1)  # (N, 1, B, C, L, 1)
    reads = undecided.expand(*undecided.shape[:-1], pool.win.size).flatten(-2)
    return {0: flat_positions(pool.to_input(reads, pool.index.flatten())[:, 0] > 0)}


MAX_POOL_RULE = MultiRule(_pool_backward, _pool_refine, PlaneWeights(_pool_seed, _pool_moved))
"""The relaxation of MaxPool: window planes (see :mod:`verifier.ops.multi_relax`)."""


@register("MaxPool")
class MaxPool(MonotoneOp):
    """ONNX ``MaxPool`` (values only): monotone, exact; bounds by the corner rule."""

    proof_checked = True

    multi_relaxation = MAX_POOL_RULE

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.WINDOW_MAXIMUM

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        win, xb, b, n = _window(node, x)
        fill = -math.inf if xb.is_floating_point() else torch.iinfo(xb.dtype).min
        y = _MAX[len(win.kernel)](win.pad(xb, fill), win.kernel, win.strides, 0, win.dilations)
        return (y.reshape(b, n, *y.shape[1:]),)


@register("AveragePool")
class AveragePool(MonotoneOp):
    """ONNX ``AveragePool``: linear with non-negative weights, so the corner rule is exact.

    The divisor counts the window's input elements (``count_include_pad=0``) or its input and
    explicit-pad elements (``count_include_pad=1``; the ``ceil_mode`` overhang never counts),
    as onnxruntime does. Float error: ``gamma(k + 2) * avg(m)`` (k-term sum, division).
    """

    proof_checked = True

    affinity = Affinity.JOINT

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        xb, b, n = fold_batch(x, node)
        win = Window(node, xb.shape[2:], crop_tail=True)
        y = win.window_sum(xb) / win.counts(xb, bool(node.attr("count_include_pad", 0)))
        return (y.reshape(b, n, *y.shape[1:]),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        win = Window(node, lo.shape[3:])
        (avg,) = self.forward(node, [magnitude(lo, hi)], [True])
        return (gamma(win.size + 2, unit) * avg,)


def _abs_bounds(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds of ``|x|`` for ``lo <= x <= hi``."""
    mig = torch.where(
        (lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(lo.abs(), hi.abs())
    )
    return mig, magnitude(lo, hi)


def _transcendental(out_mag: Tensor, unit: float, terms: int) -> Tensor:
    """Generous error bound of a sum of ``terms`` powers followed by a root (``pow`` in float)."""
    scale = unit / 2**-24
    return (gamma(terms + 2, unit) + 2 * 2**-16 * scale) * out_mag + 2**-22 * scale


class _Norm(Op):
    """Shared interval and error rules of the Lp pools: monotone in ``|x|`` elementwise."""

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        mig, mag = _abs_bounds(lo, hi)
        return self.forward(node, [mig], batched), self.forward(node, [mag], batched)

    def terms(self, node: Node, x: Tensor) -> int:
        """Number of summed powers per output element."""
        raise NotImplementedError

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo = lower[0]
        assert lo is not None
        mag = magnitude(out[0][0], out[1][0])
        return (_transcendental(mag, unit, self.terms(node, lo)),)


def _lp(node: Node, summed: Tensor) -> Tensor:
    p = int(node.attr("p", 2))
    return summed if p == 1 else summed.pow(1.0 / p)


def _powers(node: Node, x: Tensor) -> Tensor:
    p = int(node.attr("p", 2))
    if p < 1:
        raise ModelError(f"{node.op} node {node.name!r}: unsupported p={p}")
    return x.abs() if p == 1 else x.abs().pow(p)


@register("LpPool")
class LpPool(_Norm):
    """ONNX ``LpPool``: ``(sum |x|^p)^(1/p)`` over each window, zero padding."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        win, xb, b, n = _window(node, x)
        y = _lp(node, win.window_sum(_powers(node, xb)))
        return (y.reshape(b, n, *y.shape[1:]),)

    def terms(self, node: Node, x: Tensor) -> int:
        return Window(node, x.shape[3:]).size


def _spatial(node: Node, x: Tensor) -> tuple[int, ...]:
    """The spatial axes of a batched ``(B, N, C, *spatial)`` tensor (at least one)."""
    if x.dim() < 4:
        raise ModelError(
            f"{node.op} node {node.name!r}: input of rank {x.dim() - 1} has no spatial axes"
        )
    return tuple(range(3, x.dim()))


@register("GlobalLpPool")
class GlobalLpPool(_Norm):
    """ONNX ``GlobalLpPool``: the Lp norm over all spatial axes (kept as size-1 axes)."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        powers = _powers(node, x)
        return (_lp(node, powers.sum(dim=_spatial(node, x), keepdim=True)),)

    def terms(self, node: Node, x: Tensor) -> int:
        return math.prod(x.shape[3:])


@register("GlobalAveragePool")
class GlobalAveragePool(MonotoneOp):
    """ONNX ``GlobalAveragePool``: mean over the spatial axes. Float error ``gamma(n + 2)``."""

    affinity = Affinity.JOINT

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        return (x.mean(dim=_spatial(node, x), keepdim=True),)

    def fp_error(
        self, node: Node, lower: Args, upper: Args, batched: Flags, out: Pair, unit: float
    ) -> tuple[Tensor | None, ...]:
        lo, hi = lower[0], upper[0]
        assert lo is not None and hi is not None
        (avg,) = self.forward(node, [magnitude(lo, hi)], [True])
        return (gamma(math.prod(lo.shape[3:]) + 2, unit) * avg,)


@register("GlobalMaxPool")
class GlobalMaxPool(MonotoneOp):
    """ONNX ``GlobalMaxPool``: max over the spatial axes; exact."""

    multi_relaxation = window_max_rule(lambda node, rank: list(range(3, rank)))

    exact = True

    def max_form(self, node: Node, constants: Sequence[np.ndarray | None]) -> MaxForm | None:
        return forms.WINDOW_MAXIMUM
    monotonicity: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = dynamic_input(node, args[0], batched[0])
        return (x.amax(dim=_spatial(node, x), keepdim=True),)
