"""Comparisons, logic and Where on input-dependent values (:mod:`verifier.ops.logic`): the 0/1
bounds of a Boolean value and Where's bounds hold for every sampled input, including where a
condition's bounds leave both values possible (``[0, 1]``), which the registry cases (Boolean
inputs sampled as constants per box) do not reach; a Where that ignores the other branch there
is caught."""

from __future__ import annotations

import pytest
import torch

from verifier.ir import Node
from verifier.ops.base import REGISTRY

N = 400


def _node(op: str, inputs: int) -> Node:
    return Node(op.lower(), op, tuple(f"i{k}" for k in range(inputs)), ("y",))


def _bool_boxes(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 bounds ``(1, N)``: certainly false, certainly true or either, in equal shares."""
    kind = torch.randint(0, 3, (1, N), generator=gen)
    return (kind == 1).double(), (kind >= 1).double()


def _within(lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Booleans inside 0/1 bounds ``(1, N)``, 50 draws ``(50, N)``."""
    pick = torch.rand(50, N, generator=gen, dtype=torch.float64) < 0.5
    return torch.where(lo >= 0.5, True, torch.where(hi < 0.5, False, pick))


@pytest.mark.parametrize("op", ["Not", "And", "Or"])
def test_logic_bounds_hold_where_inputs_are_undecided(op: str) -> None:
    gen = torch.Generator().manual_seed(1)
    arity = 1 if op == "Not" else 2
    boxes = [_bool_boxes(gen) for _ in range(arity)]
    node = _node(op, arity)
    (lo,), (hi,) = REGISTRY[op].interval(node, [b[0] for b in boxes], [b[1] for b in boxes], [True] * arity)
    values = [_within(*b, gen) for b in boxes]
    (out,) = REGISTRY[op].forward(node, values, [True] * arity)
    assert bool(((out.double() >= lo) & (out.double() <= hi)).all())
    assert bool((lo < hi).any()) and bool((lo == hi).any())  # both kinds of answer occur


@pytest.mark.parametrize("wrong", [False, True])
def test_where_bounds_hold_where_the_condition_is_undecided(wrong: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(2)
    cond = _bool_boxes(gen)
    boxes = []
    for _ in range(2):
        centre = torch.randn(1, N, generator=gen, dtype=torch.float64) * 3
        radius = torch.rand(1, N, generator=gen, dtype=torch.float64)
        boxes.append((centre - radius, centre + radius))
    node, op = _node("Where", 3), REGISTRY["Where"]
    flags = [True] * 3
    (lo,), (hi,) = op.interval(node, [cond[0], boxes[0][0], boxes[1][0]], [cond[1], boxes[0][1], boxes[1][1]], flags)
    if wrong:  # the x branch's bounds alone where the condition is undecided
        undecided = (cond[0] < 0.5) & (cond[1] >= 0.5)
        lo = torch.where(undecided, boxes[0][0], lo)
        hi = torch.where(undecided, boxes[0][1], hi)
    t = torch.rand(2, 50, N, generator=gen, dtype=torch.float64)
    xs = [b[0] + t[k] * (b[1] - b[0]) for k, b in enumerate(boxes)]
    (out,) = op.forward(node, [_within(*cond, gen), *xs], flags)
    holds = bool(((out >= lo) & (out <= hi)).all())
    assert holds != wrong


@pytest.mark.parametrize("op", ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"])
def test_comparisons_of_overlapping_and_disjoint_boxes(op: str) -> None:
    """Boxes that overlap, touch or are apart, and equal points: the 0/1 bounds hold for every
    sampled pair and are decided wherever the boxes are apart."""
    gen = torch.Generator().manual_seed(3)
    a_lo = torch.randint(-3, 3, (1, N), generator=gen).double()
    b_lo = torch.randint(-3, 3, (1, N), generator=gen).double()
    a_hi = a_lo + torch.randint(0, 3, (1, N), generator=gen).double()
    b_hi = b_lo + torch.randint(0, 3, (1, N), generator=gen).double()
    node, rule = _node(op, 2), REGISTRY[op]
    (lo,), (hi,) = rule.interval(node, [a_lo, b_lo], [a_hi, b_hi], [True, True])
    steps = torch.randint(0, 3, (2, 200, N), generator=gen).double()  # integer points, ends included
    a, b = torch.minimum(a_lo + steps[0], a_hi), torch.minimum(b_lo + steps[1], b_hi)
    (out,) = rule.forward(node, [a, b], [True, True])
    assert bool(((out.double() >= lo) & (out.double() <= hi)).all())
    apart = (a_hi < b_lo) | (b_hi < a_lo)
    assert bool((lo[apart] == hi[apart]).all())


def test_nan_bounds_leave_every_answer_possible() -> None:
    """A NaN bound carries no information: a comparison with one is ``[0, 1]``, and an ArgMax
    element with one may win (the others keep their own test)."""
    nan = float("nan")
    less = _node("Less", 2)
    a = torch.tensor([[nan, 0.0]], dtype=torch.float64)
    b = torch.full((1, 2), 2.0, dtype=torch.float64)
    (lo,), (hi,) = REGISTRY["Less"].interval(less, [a, b], [a.clone(), b], [True, True])
    assert lo.tolist() == [[0.0, 1.0]] and hi.tolist() == [[1.0, 1.0]]
    arg = Node("arg", "ArgMax", ("x",), ("y",), {"axis": 0, "keepdims": 1, "select_last_index": 0})
    x_lo = torch.tensor([[0.0, nan, 5.0]], dtype=torch.float64)
    x_hi = torch.tensor([[1.0, nan, 6.0]], dtype=torch.float64)
    (first,), (last,) = REGISTRY["ArgMax"].interval(arg, [x_lo], [x_hi], [True])
    assert (float(first), float(last)) == (1.0, 2.0)  # 0 is beaten by 2 everywhere; 1 is unknown
