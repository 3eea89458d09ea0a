"""Windowed coefficients: backward rows on 2-D feature maps kept as small windows.

A CROWN row seeded at one neuron of a convolutional layer has, on every earlier feature map,
nonzero coefficients only inside that neuron's receptive field. :class:`Windows` keeps each
row's coefficients on a value of shape ``(1, C, H, W)`` as a patch ``(C, h, w)`` at an origin
``(y, x)`` (the patch's top-left position in the value; it may stick out of the value), all
rows of one pass sharing ``(h, w)``: the structured coefficients of auto_LiRPA's patches mode,
with explicit per-row origins. Through a convolution the patch grows by the kernel instead
of every row costing a full dense feature map: refining the 25,000 neurons of a generator's
feature map costs their receptive fields, not 25,000 maps.

The steps here are exact rewrites of the dense ones (:mod:`verifier.bounds.backward`): the
same products and sums over the same nonzero terms, so the dense step's float allowances hold
unchanged. Positions outside the value are never real: a convolution's padding is zero and a
transposed convolution has no such inputs, so their coefficients are dropped (:meth:`masked`)
after every step that can create them, and values gathered there read as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from verifier.bounds.window_tables import WindowTables
from verifier.ops.local_map import LocalKind, LocalMap
from verifier.ops.relax import LinearBounds


@dataclass(frozen=True)
class Windows:
    """Coefficients ``(N, R, *shape)`` on a value of shape ``(1, C, H, W)``, kept as windows.

    Attributes:
        patch: ``(N, R, C, h, w)``: row ``r``'s coefficients on positions ``origin[r] + (i, j)``
            (``N`` may be an expanded 1).
        origin: ``(R, 2)`` integer top-left positions ``(y, x)``.
        shape: the value's shape ``(1, C, H, W)``.
        tables: where reads of a tensor at these rows' windows may be served from
            (:mod:`verifier.bounds.window_tables`; None: read directly); handed on to the
            windows derived from these.
    """

    patch: Tensor
    origin: Tensor
    shape: tuple[int, ...]
    tables: WindowTables | None = field(default=None, compare=False)

    @staticmethod
    def unit_rows(shape: tuple[int, ...], positions: Tensor, batch: int, dtype: torch.dtype,
                  tables: WindowTables | None = None) -> Windows:
        """Rows ``+e_p`` for every flat position ``p`` of ``positions``, then ``-e_p`` for each
        (the seeds of refining those positions' bounds), for a batch of ``batch``; reads at
        their windows served from ``tables`` where it can."""
        _, channels, _, width = shape
        rows = positions.numel()
        patch = torch.zeros(1, 2 * rows, channels, 1, 1, dtype=dtype, device=positions.device)
        channel = positions // (shape[2] * width)
        index = torch.arange(rows, device=positions.device)
        patch[0, index, channel] = 1.0
        patch[0, rows + index, channel] = -1.0
        spatial = positions % (shape[2] * width)
        origin = torch.stack([spatial // width, spatial % width], dim=1).repeat(2, 1)
        return Windows(patch.expand(batch, -1, -1, -1, -1), origin, shape, tables)

    @property
    def rows(self) -> int:
        """The number of rows ``R``."""
        return self.patch.shape[1]

    @cached_property
    def _layout(self) -> tuple[list[int], int, int, Tensor]:
        """Zero padding ``[left, right, top, bottom]`` that holds every window, the padded
        height and width, and the flat padded position of every window entry ``(R, h*w)``
        (computed once per object: a step gathers several tensors at the same windows)."""
        _, _, height, width = self.shape
        h, w = self.patch.shape[3:]
        low = self.origin.min(dim=0).values.tolist() if self.rows else [0, 0]
        high = self.origin.max(dim=0).values.tolist() if self.rows else [0, 0]
        top, left = max(0, -low[0]), max(0, -low[1])
        bottom, right = max(0, high[0] + h - height), max(0, high[1] + w - width)
        padded_h, padded_w = height + top + bottom, width + left + right
        ys = self.origin[:, :1] + top + torch.arange(h, device=self.origin.device)
        xs = self.origin[:, 1:] + left + torch.arange(w, device=self.origin.device)
        flat = (ys.unsqueeze(2) * padded_w + xs.unsqueeze(1)).reshape(self.rows, h * w)
        return [left, right, top, bottom], padded_h, padded_w, flat

    def gather(self, values: Tensor) -> Tensor:
        """``values`` (``(M, *shape)`` or ``(M, 1, *shape)``) read at every row's window:
        ``(M, R, C, h, w)``, 0 outside the value."""
        _, channels, height, width = self.shape
        h, w = self.patch.shape[3:]
        m = values.shape[0]
        if self.tables is not None:
            served = self.tables.gather(values, self.shape, self.origin, (h, w))
            if served is not None:
                return served.to(self.patch.dtype)
        pads, padded_h, padded_w, flat = self._layout
        padded = F.pad(values.reshape(m, channels, height, width), pads).reshape(m, channels, padded_h * padded_w)
        picked = padded.index_select(2, flat.reshape(-1)).to(self.patch.dtype)
        return picked.reshape(m, channels, self.rows, h, w).transpose(1, 2)

    def gather_columns(self, columns: Tensor) -> Tensor:
        """``columns`` ``(N, k, *shape)`` read at every row's window: ``(N, k, R, C * h * w)``
        (0 outside the value; served from the tables where it can)."""
        batch, k = columns.shape[:2]
        _, channels, height, width = self.shape
        h, w = self.patch.shape[3:]
        served = None if self.tables is None else self.tables.gather(columns, self.shape, self.origin, (h, w))
        if served is not None:  # (N k, R, C, h, w): rows of whole windows
            return served.reshape(batch, k, self.rows, channels * h * w).to(self.patch.dtype)
        pads, padded_h, padded_w, flat = self._layout
        padded = F.pad(columns.reshape(batch * k, channels, height, width), pads)
        picked = padded.reshape(batch, k, channels, padded_h * padded_w).index_select(3, flat.reshape(-1))
        picked = picked.reshape(batch, k, channels, self.rows, h * w).transpose(2, 3)
        return picked.reshape(batch, k, self.rows, channels * h * w).to(self.patch.dtype)

    def dense(self) -> Tensor:
        """The same coefficients as a dense tensor ``(N, R, *shape)`` (entries outside the
        value dropped: they stand for no real position)."""
        n, rows, channels, h, w = self.patch.shape
        _, _, height, width = self.shape
        pads, padded_h, padded_w, flat = self._layout
        out = self.patch.new_zeros(n, rows, channels, padded_h * padded_w)
        index = flat.reshape(1, rows, 1, h * w).expand(n, rows, channels, h * w)
        out = out.scatter(3, index, self.patch.reshape(n, rows, channels, h * w))
        out = out.reshape(n, rows, channels, padded_h, padded_w)
        out = out[:, :, :, pads[2] : pads[2] + height, pads[0] : pads[0] + width]
        return out.reshape(n, rows, *self.shape)

    def with_patch(self, patch: Tensor) -> Windows:
        """The same windows (origins, sizes: ``patch`` has this one's ``(h, w)``) with other
        coefficients; the layout computed for these windows is kept."""
        out = Windows(patch, self.origin, self.shape, self.tables)
        if "_layout" in self.__dict__ and patch.shape[3:] == self.patch.shape[3:]:
            out.__dict__["_layout"] = self.__dict__["_layout"]
        return out

    def masked(self) -> Windows:
        """The same rows with the entries outside the value set to 0 (no work when every
        window lies inside it)."""
        _, _, height, width = self.shape
        h, w = self.patch.shape[3:]
        ys = self.origin[:, :1] + torch.arange(h, device=self.origin.device)
        xs = self.origin[:, 1:] + torch.arange(w, device=self.origin.device)
        inside_y, inside_x = (ys >= 0) & (ys < height), (xs >= 0) & (xs < width)
        if bool(inside_y.all()) and bool(inside_x.all()):
            return self
        inside = (inside_y.unsqueeze(2) & inside_x.unsqueeze(1)).to(self.patch.dtype)
        return self.with_patch(self.patch * inside.reshape(1, self.rows, 1, h, w))

    def covers_value(self) -> bool:
        """True once a window is as large as the value (dense coefficients are then cheaper)."""
        return self.patch.shape[3] * self.patch.shape[4] >= self.shape[2] * self.shape[3]

    def dot(self, values: Tensor) -> Tensor:
        """``sum <A_r, values>`` ``(N, R)`` for values ``(M, *shape)`` finite (``M`` 1 or ``N``)."""
        return (self.patch * self.gather(values)).sum(dim=(2, 3, 4))

    def plus(self, other: Windows) -> Windows | None:
        """The sum of two sets of rows on the same value, when their windows coincide."""
        if self.patch.shape[3:] != other.patch.shape[3:] or not torch.equal(self.origin, other.origin):
            return None
        return self.with_patch(self.patch + other.patch)


def abs_weighted(windows: Windows, weight: Tensor, finite: bool) -> Tensor:
    """``sum |A| * weight`` ``(N, R)`` for a weight ``(N or 1, 1, *shape)`` (the row-free
    weights of :mod:`verifier.bounds.step_weights`); an infinite weight counts 0 where its
    coefficient is 0 (``finite``: the weight is known to be finite everywhere)."""
    magnitude = windows.patch.detach().abs()
    spread = windows.gather(weight.reshape(weight.shape[0], *windows.shape))
    if finite:
        return (magnitude * spread).sum(dim=(2, 3, 4))
    return torch.where(magnitude == 0, 0.0, magnitude * spread).sum(dim=(2, 3, 4))


def through_local_map(windows: Windows, local: LocalMap, in_shape: tuple[int, ...]) -> Windows:
    """The rows' coefficients on the input of an op whose linear part is ``local``
    (:mod:`verifier.ops.local_map`), on an input of shape ``in_shape``: ``A L`` as windows."""
    patch = windows.patch
    n, rows = patch.shape[:2]
    shared = n > 1 and patch.stride(0) == 0  # the same rows for every batch element (seeds)
    if shared:
        patch = patch[:1]
    weight = local.weight.to(patch.dtype)
    if local.kind is LocalKind.CHANNEL_SCALE:
        scaled = patch * weight.reshape(1, 1, -1, 1, 1)
        return windows.with_patch(scaled.expand(n, *scaled.shape[1:]) if shared else scaled)
    if local.kind is LocalKind.CONV:
        flat = patch.reshape(-1, *patch.shape[2:])
        moved = transposed_conv(flat, weight, local.stride, local.dilation)
        moved = moved.reshape(patch.shape[0], rows, *moved.shape[1:])
        stride, begin = windows.origin.new_tensor(local.stride), windows.origin.new_tensor(local.begin)
        origin = windows.origin * stride - begin
    else:
        moved, origin = _through_conv_transpose(patch, windows.origin, local)
    if shared:
        moved = moved.expand(n, *moved.shape[1:])
    return Windows(moved, origin, in_shape, windows.tables).masked()


def transposed_conv(x: Tensor, weight: Tensor, stride: tuple[int, int] = (1, 1),
                    dilation: tuple[int, int] = (1, 1)) -> Tensor:
    """``conv_transpose2d(x, weight, stride, dilation)`` (no padding) as one matrix product
    (every input position times every tap) and one strided addition per tap into the output
    (channels last). The same products and sums as torch's own, several times faster in float64
    on small inputs with many channels (and than folding the taps with ``F.fold``). With at most
    4 input channels (the product degenerates) each channel's taps are scaled copies added in
    place (:func:`_few_channel_transposed_conv`), with 5 to 7 torch's own is faster."""
    batch, channels, h, w = x.shape
    if channels <= 4:
        return _few_channel_transposed_conv(x, weight, stride, dilation)
    if channels < 8:
        return F.conv_transpose2d(x, weight, stride=stride, dilation=dilation)
    out_channels, (kh, kw) = weight.shape[1], tuple(weight.shape[2:])
    # taps last but one, output channels last: each tap's slice is contiguous for the additions
    taps = x.permute(0, 2, 3, 1).reshape(batch, h * w, channels) @ weight.permute(0, 2, 3, 1).reshape(channels, -1)
    taps = taps.reshape(batch, h, w, kh, kw, out_channels)
    size = _transposed_size((h, w), stride, dilation, (kh, kw))
    out = x.new_zeros(batch, size[0], size[1], out_channels)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dilation[0], kx * dilation[1]
            out[:, y0 : y0 + (h - 1) * stride[0] + 1 : stride[0], x0 : x0 + (w - 1) * stride[1] + 1 : stride[1]] \
                += taps[:, :, :, ky, kx]
    return out.permute(0, 3, 1, 2)


def _transposed_size(length: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
                     kernel: tuple[int, int]) -> list[int]:
    """The output height and width of an unpadded transposed convolution."""
    return [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(length, stride, dilation, kernel, strict=True)]


def _few_channel_transposed_conv(x: Tensor, weight: Tensor, stride: tuple[int, int],
                                 dilation: tuple[int, int]) -> Tensor:
    """:func:`transposed_conv` for few input channels: per input channel and tap, the input
    times that tap's weights (one per output channel) added into the output at the tap's
    offset. The same products and sums as torch's own (float64 on CPU: several times faster
    for one channel, where torch takes a slow path)."""
    batch, channels, h, w = x.shape
    out_channels, (kh, kw) = weight.shape[1], tuple(weight.shape[2:])
    size = _transposed_size((h, w), stride, dilation, (kh, kw))
    out = x.new_zeros(batch, out_channels, size[0], size[1])
    for channel in range(channels):
        plane = x[:, channel : channel + 1]
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dilation[0], kx * dilation[1]
                ys = slice(y0, y0 + (h - 1) * stride[0] + 1, stride[0])
                xs = slice(x0, x0 + (w - 1) * stride[1] + 1, stride[1])
                out[:, :, ys, xs] += plane * weight[channel, :, ky, kx].reshape(1, out_channels, 1, 1)
    return out


def _through_conv_transpose(patch: Tensor, origin: Tensor, local: LocalMap) -> tuple[Tensor, Tensor]:
    """``A L`` for a transposed convolution ``y[o] = sum_{i s + k = o + b} x[i] W[k]``:
    ``A_x[i] = sum_k A_y[i s + k - b] W[k]``. Split by the residue ``r`` of ``o + b`` modulo
    ``s``: the window's positions of residue ``r`` (every ``s``-th one) meet only the taps
    ``k = s q + r``, and ``A_x[u - q] += A_y[s u + r - b] W[s q + r]`` is a stride-1 transposed
    convolution of those positions with the flipped sub-kernel, so every product computed is a
    product of the dense step (no work on the zeros between them). Which positions have which
    residue depends on the window's phase ``(y + b) mod s``: rows are grouped by phase."""
    n, rows, channels, h, w = patch.shape
    weight = local.weight.to(patch.dtype)
    kernel, stride = tuple(weight.shape[2:]), local.stride
    shifted = origin + origin.new_tensor(local.begin)
    phase = torch.remainder(shifted, origin.new_tensor(stride))
    plans = {(py, px): (_residues(py, h, kernel[0], stride[0]), _residues(px, w, kernel[1], stride[1]))
             for py in range(stride[0]) for px in range(stride[1])}
    size = [max(plan[a][2] for plan in plans.values()) for a in range(2)]
    moved = patch.new_zeros(n, rows, weight.shape[0], *size)
    first = torch.div(shifted - phase, origin.new_tensor(stride), rounding_mode="floor")
    taps = {(ry, rx): weight[:, :, ry :: stride[0], rx :: stride[1]].transpose(0, 1).flip(2, 3)
            for ry in range(stride[0]) for rx in range(stride[1])}
    for key in torch.unique(phase, dim=0).tolist():
        chosen = torch.nonzero((phase == phase.new_tensor(key)).all(dim=1)).flatten()
        (ys, y_base, _), (xs, x_base, _) = plans[(key[0], key[1])]
        first[chosen] += origin.new_tensor([y_base, x_base])
        group = patch[:, chosen].reshape(-1, channels, h, w)
        total = group.new_zeros(group.shape[0], weight.shape[0], *size)
        for ry, y_start, y_at in ys:
            for rx, x_start, x_at in xs:
                part = transposed_conv(group[:, :, y_start :: stride[0], x_start :: stride[1]], taps[(ry, rx)])
                total[:, :, y_at : y_at + part.shape[2], x_at : x_at + part.shape[3]] += part
        moved[:, chosen] = total.reshape(n, chosen.numel(), *total.shape[1:])
    return moved, first


def _residues(phase: int, length: int, kernel: int, stride: int) -> tuple[list[tuple[int, int, int]], int, int]:
    """Along one axis, for a window of ``length`` positions whose first ``o`` has ``(o + b)
    mod stride = phase``: per residue ``r`` with positions and taps, ``(r, m0, at)`` (its
    positions are ``m0, m0 + s, ...`` of the window; its part starts at ``at`` in the output
    window); the output window's start relative to ``(o + b - phase) / s``; its length."""
    parts = []
    for r in range(stride):
        m0 = (r - phase) % stride
        count, taps = len(range(m0, length, stride)), len(range(r, kernel, stride))
        if count and taps:
            parts.append((r, m0, (phase + m0) // stride - (taps - 1), count + taps - 1))
    if not parts:
        return [], 0, 1
    base = min(rel for _, _, rel, _ in parts)
    extent = max(rel + span for _, _, rel, span in parts) - base
    return [(r, m0, rel - base) for r, m0, rel, _ in parts], base, extent


def through_relaxation(windows: Windows, relaxation: LinearBounds, finite_slopes: bool,
                       upper_bias_only: bool) -> tuple[Windows, Tensor]:
    """The rows through an elementwise node's lines ``l_s x + l_b <= f(x) <= u_s x + u_b``
    (``(N, *shape)`` each): coefficients ``A+ l_s + A- u_s`` on the input and the bias
    ``A+ l_b + A- u_b`` ``(N, R)`` (infinite parts count only where their coefficient is
    nonzero). ``finite_slopes``: both slopes are finite (plain products then give the same
    values); ``upper_bias_only``: ``l_b`` is 0 and ``u_b`` finite (the facts of
    :class:`verifier.bounds.backward.RelaxationFacts`)."""
    a = windows.patch
    positive, negative = a.clamp(min=0), a.clamp(max=0)
    lower_slope, upper_slope = windows.gather(relaxation.lower_slope), windows.gather(relaxation.upper_slope)
    if finite_slopes:
        moved = positive * lower_slope + negative * upper_slope
    else:
        moved = (torch.where(positive > 0, positive * lower_slope, 0.0)
                 + torch.where(negative < 0, negative * upper_slope, 0.0))
    upper_bias = windows.gather(relaxation.upper_bias)
    if upper_bias_only:
        bias = (negative * upper_bias).sum(dim=(2, 3, 4))
    else:
        lower_bias = windows.gather(relaxation.lower_bias)
        bias = (torch.where(positive > 0, positive * lower_bias, 0.0)
                + torch.where(negative < 0, negative * upper_bias, 0.0)).sum(dim=(2, 3, 4))
    return windows.with_patch(moved), bias
