"""Interval bound propagation (IBP) through every registered op, sound in floating point.

Soundness contract: for every input ``x`` with ``lower <= x <= upper`` (real values), the
output of the ONNX model *evaluated in its own floating-point precision* (any summation
order, libm-quality elementary functions) lies within the returned bounds. Each op's
``interval`` rule bounds the exact real function; after each op the bounds are widened by the
op's ``fp_error`` bound computed with unit ``u_model + u_compute``, which covers both the
model's rounding (the widened interval contains the float result, so the next op's rule,
being sound for every point of it, covers the propagated error) and the rounding of our own
bound arithmetic. NaN bounds (e.g. ``inf - inf``) become infinite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from verifier.bounds.rounding import outward, unit_roundoff
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Node
from verifier.ops.base import Op

Bounds = tuple[Tensor, Tensor]


def _widen(
    lower: Tensor, upper: Tensor, error: Tensor | None, limits: tuple[float, float] | None = None
) -> Bounds:
    """Widens by ``error``, replaces NaN with infinities, then intersects with ``limits`` (the
    op's :meth:`~verifier.ops.base.Op.float_range`, which holds whatever the rounding)."""
    if error is not None:
        lower = lower - error
        upper = upper + error
    if limits is not None:
        lower = torch.nan_to_num(lower, nan=-torch.inf).clamp(limits[0], limits[1])
        upper = torch.nan_to_num(upper, nan=torch.inf).clamp(limits[0], limits[1])
    lower = torch.nan_to_num(lower, nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)
    upper = torch.nan_to_num(upper, nan=torch.inf, posinf=torch.inf, neginf=-torch.inf)
    return lower, upper


def model_unit(tgraph: TorchGraph) -> float:
    """Unit roundoff of the model's own evaluation (from its first input's dtype)."""
    return unit_roundoff(tgraph.graph.inputs[0].dtype)


def interval_bounds_all(tgraph: TorchGraph, lower: Sequence[Tensor], upper: Sequence[Tensor]) -> dict[str, Bounds]:
    """Bounds of every dynamic value of the graph for batched input boxes.

    Args:
        tgraph: the graph bound to a device/dtype (the dtype is the bound arithmetic's).
        lower, upper: one ``(B, *input_shape)`` tensor per graph input.

    Returns:
        value name -> (lower, upper), each ``(B, *shape)``.
    """
    unit = model_unit(tgraph) + unit_roundoff(tgraph.place.dtype)
    seeds: dict[str, object] = {}
    for info, lo, hi in zip(tgraph.graph.inputs, lower, upper, strict=True):
        lo64, hi64 = lo.to(tgraph.place.device), hi.to(tgraph.place.device)
        seeds[info.name] = outward(lo64, hi64, tgraph.place.dtype)

    def step(op: Op, node: Node, args: list[object | None], batched: list[bool]) -> list[Bounds]:
        los = [None if a is None else a[0] for a in args]  # type: ignore[index]
        his = [None if a is None else a[1] for a in args]  # type: ignore[index]
        out = op.interval(node, los, his, batched)
        errors = op.fp_error(node, los, his, batched, out, unit)
        limits = op.float_range(node)
        return [_widen(lo, hi, err, limits) for lo, hi, err in zip(out[0], out[1], errors, strict=True)]

    table = tgraph.run(seeds, step, lambda t: (t, t))
    return table  # type: ignore[return-value]


def interval_bounds(tgraph: TorchGraph, lower: Tensor, upper: Tensor) -> Bounds:
    """Bounds of the flattened, concatenated outputs for flattened input boxes ``(B, n)``."""
    los = tgraph.split_flat(lower)
    his = tgraph.split_flat(upper)
    table = interval_bounds_all(tgraph, los, his)
    outs = [table[v.name] for v in tgraph.graph.outputs]
    batch = lower.shape[0]
    out_lo = torch.cat([o[0].reshape(batch, -1) for o in outs], dim=1)
    out_hi = torch.cat([o[1].reshape(batch, -1) for o in outs], dim=1)
    return out_lo, out_hi
