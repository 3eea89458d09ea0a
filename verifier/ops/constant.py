"""Ops whose output is determined by static information only: ``Shape``, ``Size``,
``ConstantOfShape`` and ``Range``.

They are exact and run in constant folding (int64 shape arithmetic), where every input has a
batch of 1; ``Shape`` and ``Size`` repeat their output over the input's batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from verifier.errors import ModelError
from verifier.ir import Node
from verifier.ops.base import Args, Flags, MonotoneOp, register
from verifier.ops.shape import data_input, int_attr
from verifier.ops.spatial import f32


class _Constant(MonotoneOp):
    """Ops whose output is determined by static information only (used in folding)."""

    exact = True


@register("Shape")
class Shape(_Constant):
    """ONNX ``Shape``: the static shape (no batch) as int64, with opset-15 ``start``/``end``,
    repeated over the input's batch (a batch of 1 in constant folding)."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = data_input(node, args, batched)
        start, end = node.attr("start"), node.attr("end")
        dims = list(x.shape[1:])[slice(start, end)]
        out = torch.tensor(dims, dtype=torch.int64, device=x.device)
        return (out.unsqueeze(0).expand(x.shape[0], -1),)


@register("Size")
class Size(_Constant):
    """ONNX ``Size``: the number of elements (int64 scalar), repeated over the batch."""

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        x = data_input(node, args, batched)
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
        shape = int_attr(node, "shape") or ()
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
