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


def test_the_relaxation_of_wide_groups_has_no_nan_and_holds() -> None:
    """Differences of about 1,000 inside a group overflow ``exp``: those groups keep the exact
    range (no NaN in the bias nor in its gradient), the others get planes; all hold at samples."""
    node = Node("n", "Softmax", ("x",), ("y",), {"axis": 1})
    lo = torch.tensor([[[-2.0, -1.0, 0.5], [-500.0, 0.0, 0.3]]], dtype=torch.float64)
    hi = torch.tensor([[[1.0, 0.5, 1.5], [500.0, 1.0, 0.9]]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(1, 4, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    rule = REGISTRY["Softmax"].multi_relaxation
    assert rule is not None
    moved = rule.backward(node, a, [lo], [hi], [True])
    assert moved is not None and not torch.isnan(moved.bias).any()
    moved.bias.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    x = lo + torch.rand(5000, 2, 3, generator=gen, dtype=torch.float64) * (hi - lo)
    y = torch.softmax(x, dim=2)
    value = torch.einsum("snk,rnk->sr", y, a[0].detach())
    linear = torch.einsum("snk,rnk->sr", x, moved.coefficients[0][0]) + moved.bias[0]
    assert (value - linear >= -1e-9).all()


def test_a_group_too_large_for_its_pair_terms_is_cut() -> None:
    """Softmax's planes need ``n x n`` terms per group: beyond MAX_PAIR_ENTRIES the rule
    declines (the traversal then cuts the node at its exact range) instead of running out of
    memory."""
    from verifier.ops.softmax import MAX_PAIR_ENTRIES

    node = Node("n", "Softmax", ("x",), ("y",), {"axis": 0})
    rule = REGISTRY["Softmax"].multi_relaxation
    assert rule is not None
    small, large = 8, int((MAX_PAIR_ENTRIES / 4) ** 0.5) + 1
    for n, declined in ((small, False), (large, True)):
        lo, hi = -torch.ones(1, n, dtype=torch.float64), torch.ones(1, n, dtype=torch.float64)
        a = torch.ones(1, 4, n, dtype=torch.float64)
        assert (rule.backward(node, a, [lo], [hi], [True]) is None) == declined
