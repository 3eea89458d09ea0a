"""Every window of a tensor, kept for the passes that read it again at windows of one size.

Refining the bounds of a convolutional layer runs many backward passes (chunks of rows) over
the same nodes, and each reads the same tensors (a relaxation's slopes and biases, a node's
float-error weights, its ``f(0)``, the forms' columns) at its rows' windows
(:meth:`verifier.bounds.windows.Windows.gather`). Reading a window out of a ``(C, H, W)``
map is a scattered copy (runs of ``w`` entries); :class:`WindowTables` copies *every* window
of such a tensor once into a table ``(M, positions, C * h * w)``, and later reads take whole
rows of it. A tensor earns a table once the windows read from it at one size add up to as
many as the table would hold (the rule of renting until buying would have been cheaper: at
most twice the work of the better choice made in hindsight; a few chunks of a branch-and-
bound batch build none). The table holds the same values (zero padding where a window sticks
out of the map), so bounds are unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Key = tuple[int, tuple[int, ...], tuple[int, ...], torch.dtype, tuple[int, ...], tuple[int, int]]


@dataclass(frozen=True)
class _Table:
    """The windows of one tensor: ``source`` (kept alive, so its storage is not reused while
    the key names it), its version when copied, and ``table`` ``(M, Ly * Lx, C * h * w)`` whose
    row ``(y + h - 1) * Lx + (x + w - 1)`` is the window at origin ``(y, x)``."""

    source: Tensor
    version: int
    table: Tensor
    columns: int


class WindowTables:
    """Tables of every window (see the module docstring), least recently used dropped first
    once they hold more than ``max_entries`` entries in all."""

    def __init__(self, max_entries: int = 2**25) -> None:
        self.max_entries = max_entries
        self._tables: OrderedDict[Key, _Table] = OrderedDict()
        self._read: OrderedDict[Key, int] = OrderedDict()  # windows read so far, per key without a table
        self._held = 0

    def gather(self, values: Tensor, shape: tuple[int, ...], origin: Tensor, size: tuple[int, int]) -> Tensor | None:
        """``values`` (``M * C * H * W`` entries, the map ``shape`` ``(1, C, H, W)``) read at the
        windows of ``size`` ``(h, w)`` at ``origin`` ``(R, 2)``: ``(M, R, C, h, w)``, 0 outside
        the map; None where no table serves (the caller reads the windows itself): too few
        windows read so far, a tensor with a gradient history, a window wholly outside the
        map, a table too large."""
        if values.requires_grad or not origin.numel():
            return None
        (h, w), (height, width) = size, shape[2:]
        y, x = origin[:, 0], origin[:, 1]
        if bool((y < 1 - h).any() | (y >= height).any() | (x < 1 - w).any() | (x >= width).any()):
            return None
        key: Key = (values.data_ptr(), tuple(values.shape), tuple(values.stride()), values.dtype, tuple(shape), size)
        kept = self._tables.get(key)
        if kept is None or kept.version != values._version:
            kept = self._build(key, values, shape, size, origin.shape[0])
            if kept is None:
                return None
        self._tables.move_to_end(key)
        rows = (y + h - 1) * kept.columns + (x + w - 1)
        picked = kept.table.index_select(1, rows)
        return picked.reshape(picked.shape[0], origin.shape[0], shape[1], h, w)

    def _build(self, key: Key, values: Tensor, shape: tuple[int, ...], size: tuple[int, int],
               rows: int) -> _Table | None:
        """The table of ``values`` at windows of ``size``, once ``rows`` more windows make the
        reads at least as many as its positions (None before, or when it would not fit
        ``max_entries``)."""
        (h, w), (_, channels, height, width) = size, shape
        ly, lx = height + h - 1, width + w - 1
        read = self._read.pop(key, 0) + rows
        if read < ly * lx:
            self._read[key] = read
            if len(self._read) > 4096:
                self._read.popitem(last=False)
            return None
        m = values.numel() // (channels * height * width)
        entries = m * ly * lx * channels * h * w
        if entries > self.max_entries // 2:
            return None
        old = self._tables.pop(key, None)
        self._held -= 0 if old is None else old.table.numel()
        while self._tables and self._held + entries > self.max_entries:
            self._held -= self._tables.popitem(last=False)[1].table.numel()
        padded = F.pad(values.detach().reshape(m, channels, height, width), (w - 1, w - 1, h - 1, h - 1)).contiguous()
        s = padded.stride()
        every = padded.as_strided((m, ly, lx, channels, h, w), (s[0], s[2], s[3], s[1], s[2], s[3]))
        kept = _Table(values, values._version, every.reshape(m, ly * lx, channels * h * w), lx)
        self._tables[key] = kept
        self._held += entries
        return kept
