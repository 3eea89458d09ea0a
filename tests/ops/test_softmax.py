"""Softmax's exact range when one input's upper bound dwarfs the others (checked by sampling).

With the largest term shifted out, the other terms' ``exp`` underflowed to 0: a term whose upper
bound lay about 800 above the rest got the lower bound 1 (every point of the box where that term
is small violated it)."""

from __future__ import annotations

import pytest
import torch

from verifier.ir import Node
from verifier.ops import REGISTRY


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("top", [50.0, 800.0, 1e120])
def test_range_holds_when_one_upper_bound_dwarfs_the_rest(op: str, top: float) -> None:
    node = Node("n", op, ("x",), ("y",), {"axis": 0})
    lo = torch.tensor([[-3.0, -1.6, 0.8]], dtype=torch.float64)
    hi = torch.tensor([[1.5, top, 1.6]], dtype=torch.float64)
    (y_lo,), (y_hi,) = REGISTRY[op].interval(node, [lo], [hi], [True])
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(20000, 3, generator=gen, dtype=torch.float64)
    finite_hi = hi.clamp(max=lo + 1000)  # sampled part of the box: the middle input up to 1000 above
    x = lo + u * (finite_hi - lo)
    x[:100, 1] = lo[0, 1]  # the middle input at its lowest: its output is smallest there
    y = REGISTRY[op].forward(node, [x], [True])[0]
    assert (y >= y_lo - 1e-12).all() and (y <= y_hi + 1e-12).all()
    assert float(y_lo[0, 1]) < 0.5 if op == "Softmax" else float(y_lo[0, 1]) < -0.5
