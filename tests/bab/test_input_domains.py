"""Domains of input splitting: the halves kept always cover their box (checked by sampling),
unsplittable boxes are counted, and the stack pops depth first."""

from __future__ import annotations

import pytest
import torch

from verifier.bab.input_domains import Domains, pop_domains, row_hardness, split_all, split_floor, split_one


def _domains(lower: torch.Tensor, upper: torch.Tensor, dim: torch.Tensor | None = None) -> Domains:
    m = lower.shape[0]
    rows = torch.full((m, 1, 2), -1.0, dtype=torch.float64)
    prior = {"h": (torch.zeros(m, 3, dtype=torch.float64), torch.ones(m, 3, dtype=torch.float64))}
    return Domains(lower, upper, torch.ones(m, 1, dtype=torch.bool),
                   dim if dim is not None else torch.zeros(m, dtype=torch.long), prior, rows,
                   torch.arange(m, dtype=torch.long), torch.arange(m, dtype=torch.long))


def _covered(points: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Which points ``(P, n)`` lie in some box ``(B, n)``."""
    inside = (points.unsqueeze(1) >= lower.unsqueeze(0)) & (points.unsqueeze(1) <= upper.unsqueeze(0))
    return inside.all(dim=2).any(dim=1)


def _random_boxes(seed: int, m: int = 6, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lower = torch.rand(m, n, generator=g, dtype=torch.float64) - 1
    return lower, lower + torch.rand(m, n, generator=g, dtype=torch.float64) + 0.01


@pytest.mark.parametrize("seed", range(3))
def test_the_two_halves_kept_by_strong_branching_cover_each_box(seed: int) -> None:
    lower, upper = _random_boxes(seed)
    children, unsplittable = split_all(_domains(lower, upper), torch.zeros(lower.shape[1], dtype=torch.float64))
    assert children is not None and unsplittable == 0
    child_lo, child_hi, open_, prior, rows, stall, pick, node = children
    m, n = lower.shape
    assert child_lo.shape == (m * 2 * n, n) and prior["h"][0].shape[0] == m * 2 * n and stall.shape == (m * 2 * n,)
    assert open_.shape == (m * 2 * n, 1) and rows.shape == (m * 2 * n, 1, 2)
    # any hardness: the selector keeps one pair per box, and the pair covers that box
    g = torch.Generator().manual_seed(seed + 10)
    chosen = pick(-torch.rand(m * 2 * n, generator=g, dtype=torch.float64))
    assert chosen.shape == (2 * m,)
    for box in range(m):
        pair = chosen[[box, m + box]]
        assert bool((pair // (2 * n) == box).all())
        points = lower[box] + (upper[box] - lower[box]) * torch.rand(2000, n, generator=g, dtype=torch.float64)
        assert bool(_covered(points, child_lo[pair], child_hi[pair]).all())
        # the halves lie inside their box and carry its stall count and proof-log node
        assert bool((child_lo[pair] >= lower[box]).all() and (child_hi[pair] <= upper[box]).all())
        assert bool((stall[pair] == box).all()) and bool((node[pair] == box).all())


def test_the_selector_keeps_the_dimension_with_the_best_summed_hardness() -> None:
    lower, upper = torch.zeros(1, 3, dtype=torch.float64), torch.ones(1, 3, dtype=torch.float64)
    children, _ = split_all(_domains(lower, upper), torch.zeros(3, dtype=torch.float64))
    assert children is not None
    pick = children[6]
    assert pick is not None
    # halves: lower halves of dims 0,1,2 then upper halves; dim 1 has the best sum (-1 + inf->0)
    found = torch.tensor([-3.0, -1.0, -2.0, -1.0, torch.inf, -2.5], dtype=torch.float64)
    assert pick(found).tolist() == [1, 4]


def test_strong_branching_halves_only_the_free_dimensions() -> None:
    """A fixed input, and one that rounding to float32 widened by an ulp (a fixed pixel), are
    never halved: 2 children per free dimension, and the pair kept still covers the box."""
    lower = torch.tensor([[0.0, 0.25, -2.0, 3.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 0.25, 2.0, 3.0 + 2.0**-22]], dtype=torch.float64)
    floor = split_floor((upper - lower).reshape(-1))
    assert torch.isfinite(floor).tolist() == [True, False, True, False]
    children, unsplittable = split_all(_domains(lower, upper, torch.tensor([2])), floor)
    assert children is not None and unsplittable == 0
    child_lo, child_hi, pick = children[0], children[1], children[6]
    assert pick is not None and child_lo.shape == (4, 4)
    changed = (child_lo != lower) | (child_hi != upper)
    assert changed.any(dim=0).tolist() == [True, False, True, False]
    for found in ([-1.0, -3.0, -1.0, -3.0], [-3.0, -3.0, -3.0, -3.0]):  # dim 0 best; a tie keeps dim 2
        pair = pick(torch.tensor(found, dtype=torch.float64))
        g = torch.Generator().manual_seed(0)
        points = lower + (upper - lower) * torch.rand(2000, 4, generator=g, dtype=torch.float64)
        assert bool(_covered(points, child_lo[pair], child_hi[pair]).all())
    assert pick(torch.tensor([-3.0, -3.0, -3.0, -3.0], dtype=torch.float64)).tolist() == [1, 3]


def test_one_split_halves_the_chosen_dimension_and_counts_boxes_it_cannot_halve() -> None:
    lower = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 2.0], [1.0, 1.0]], dtype=torch.float64)  # the second box is a point
    children, unsplittable = split_one(_domains(lower, upper, torch.tensor([1, 0])))
    assert unsplittable == 1 and children is not None
    child_lo, child_hi = children[0], children[1]
    assert child_lo.tolist() == [[0.0, 0.0], [0.0, 1.0]] and child_hi.tolist() == [[1.0, 1.0], [1.0, 2.0]]
    none, count = split_all(_domains(lower[1:], upper[1:]), torch.zeros(2, dtype=torch.float64))
    assert none is None and count == 1


def test_the_stack_pops_the_newest_domains_first() -> None:
    lower, upper = _random_boxes(0, m=5)
    first, second = _domains(lower[:3], upper[:3]), _domains(lower[3:], upper[3:])
    stack = [first, second]
    popped = pop_domains(stack, 3)
    assert torch.equal(popped.lower, torch.cat([lower[3:], lower[2:3]]))
    assert len(stack) == 1 and stack[0].size == 2 and popped.prior["h"][0].shape[0] == 3


def test_hardness_is_the_best_row_of_the_hardest_open_clause() -> None:
    rows = torch.tensor([[[-1.0, -3.0], [-2.0, 0.5]], [[1.0, -1.0], [-4.0, -5.0]]], dtype=torch.float64)
    open_ = torch.tensor([[True, True], [True, False]])
    assert row_hardness(rows, open_).tolist() == [-1.0, 1.0]
