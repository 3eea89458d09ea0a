"""Comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual), Boolean logic (Not, And,
Or) and Where, on constants and on input-dependent values.

A Boolean value's bounds are the numbers 0 (false) and 1 (true) in the pass's floating dtype:
``[1, 1]`` certainly true, ``[0, 0]`` certainly false, ``[0, 1]`` either. Sound under the bound
table's contract: the bounds of a compared value contain its float evaluation, and comparing two
floats is exact, so a comparison that holds over the whole bounds holds for the float model.
The ops are exact (no float error); bound methods cut them at their intervals (they have no
relaxation) and the exact engines refuse them (neither affine nor a maximum form).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.base import Args, Flags, Op, Pair, operands, register

Rule = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(lo_a, hi_a, lo_b, hi_b) -> (certainly true, possibly true)`` of ``a OP b`` over the boxes."""

_COMPARE: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Rule]] = {
    "Equal": (torch.eq, lambda la, ha, lb, hb: ((la == ha) & (lb == hb) & (la == lb), (la <= hb) & (lb <= ha))),
    "Less": (torch.lt, lambda la, ha, lb, hb: (ha < lb, la < hb)),
    "LessOrEqual": (torch.le, lambda la, ha, lb, hb: (ha <= lb, la <= hb)),
    "Greater": (torch.gt, lambda la, ha, lb, hb: (la > hb, ha > lb)),
    "GreaterOrEqual": (torch.ge, lambda la, ha, lb, hb: (la >= hb, ha >= lb)),
}
_LOGIC: dict[str, Callable[..., Tensor]] = {"And": torch.logical_and, "Or": torch.logical_or,
                                            "Not": torch.logical_not}


def _float_dtype(args: Args) -> torch.dtype:
    """The floating dtype of the first floating argument (float64 when there is none)."""
    return next((a.dtype for a in args if a is not None and a.is_floating_point()), torch.float64)


def _nan(t: Tensor) -> Tensor:
    return torch.isnan(t) if t.is_floating_point() else torch.zeros_like(t, dtype=torch.bool)


def _true_at(bound: Tensor) -> Tensor:
    """Where a Boolean's bound (a bool tensor, or 0/1 numbers) is true; a NaN bound counts as
    true, so that a lower bound never claims certainty and an upper one never excludes truth
    without information."""
    return bound.bool() if bound.dtype == torch.bool else ~(bound < 0.5)


def _truth(certain: Tensor, possible: Tensor, dtype: torch.dtype) -> Pair:
    """The 0/1 bounds of a Boolean value from where it is certainly and possibly true."""
    return (certain.to(dtype),), ((possible | certain).to(dtype),)


@register(*_COMPARE)
class Comparison(Op):
    """``a OP b`` elementwise with broadcasting, a Boolean output (see the module docstring)."""

    exact = True
    boolean_output = True

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (_COMPARE[node.op][0](*operands(args, batched)),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        lo_a, lo_b = operands(lower, batched)
        hi_a, hi_b = operands(upper, batched)
        certain, possible = _COMPARE[node.op][1](lo_a, hi_a, lo_b, hi_b)
        unknown = _nan(lo_a) | _nan(hi_a) | _nan(lo_b) | _nan(hi_b)  # no information: either answer
        return _truth(certain & ~unknown, possible | unknown, _float_dtype(lower))


@register(*_LOGIC)
class Logic(Op):
    """Not, And, Or on Boolean values (bounds 0/1: see the module docstring)."""

    exact = True
    boolean_output = True

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        return (_LOGIC[node.op](*(a.bool() for a in operands(args, batched))),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        los = [_true_at(a) & ~_nan(a) for a in operands(lower, batched)]  # certainly true
        his = [_true_at(a) for a in operands(upper, batched)]  # possibly true
        dtype = _float_dtype(lower)
        if node.op == "Not":
            return _truth(~his[0], ~los[0], dtype)
        if node.op == "And":
            return _truth(los[0] & los[1], his[0] & his[1], dtype)
        return _truth(los[0] | los[1], his[0] | his[1], dtype)


@register("Where")
class Where(Op):
    """``condition ? x : y`` with broadcasting; exact. Where the condition's bounds leave both
    branches possible, the hull of the two branches' bounds."""

    exact = True

    def forward(self, node: Node, args: Args, batched: Flags) -> tuple[Tensor, ...]:
        cond, x, y = operands(args, batched)
        return (torch.where(cond.bool(), x, y),)

    def interval(self, node: Node, lower: Args, upper: Args, batched: Flags) -> Pair:
        c_lo, x_lo, y_lo = operands(lower, batched)
        c_hi, x_hi, y_hi = operands(upper, batched)
        true = _true_at(c_lo) & ~_nan(c_lo)  # certainly true
        false = ~_true_at(c_hi)  # certainly false
        lo = torch.where(true, x_lo, torch.where(false, y_lo, torch.minimum(x_lo, y_lo)))
        hi = torch.where(true, x_hi, torch.where(false, y_hi, torch.maximum(x_hi, y_hi)))
        return (lo,), (hi,)
