"""Relaxations of :mod:`verifier.ops.multi_relax` (``Op.multi_relaxation``): sound by sampling, exact where decided,
NaN-free with infinite bounds, and sound and tighter than the interval cut inside CROWN.

The direct tests check ``<A, f(x)> >= sum_i <A_i, x_i> + bias`` in float64 at thousands of
points of random boxes (degenerate intervals, intervals touching 0, broadcasting) for random
``A`` of both signs. Every registered op that declares a multi-input relaxation must have cases here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bounds.multi_relax_helpers import (
    BATCH,
    CASES,
    NORMALISED,
    POOLED,
    ROWS,
    TWO_BRANCH,
    Case,
    backward_through,
    check_shapes,
    gaps,
    infinite_inputs,
    inputs,
    normalised,
    objective,
    pool_case,
    pooled,
    two_branch,
)
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops import REGISTRY
from verifier.ops.base import Op
from verifier.ops.multi_relax import MultiRule
from verifier.witness import OnnxOracle, grid_box, snap_into_box

MULTI_RELAXATIONS: dict[str, MultiRule] = {
    name: op.multi_relaxation for name, op in REGISTRY.items() if op.multi_relaxation is not None
}
"""Every op that declares a multi-input relaxation (read from the registry)."""


def _without_rule(op_type: str) -> Op:
    """The registry's op with its multi-input relaxation removed (CROWN then cuts the node)."""
    cls = type(REGISTRY[op_type])
    return type(f"Cut{cls.__name__}", (cls,), {"multi_relaxation": None})()


def test_every_rule_has_cases() -> None:
    assert {case.op for case in CASES} == set(MULTI_RELAXATIONS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}{list(c.shapes)}{dict(c.attrs)}")
def test_relaxation_is_sound_by_sampling(case: Case) -> None:
    gen = torch.Generator().manual_seed(len(str(case)))
    for _ in range(3):
        los, his = inputs(case, gen)
        a = objective(case, los, gen)
        moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, los, his, case.batched())
        assert moved is not None
        check_shapes(case, a, los, moved)
        assert torch.isfinite(moved.bias).all()
        gap, scale = gaps(case, a, los, his, moved, gen)
        assert (gap >= -1e-9 * (1 + scale)).all(), float(gap.min())
        positions = MULTI_RELAXATIONS[case.op].refine(case.node(), los, his, case.batched())
        for i, flat in positions.items():
            assert case.batched()[i] and flat.dtype == torch.long
            assert ((flat >= 0) & (flat < los[i][0].numel())).all()


@pytest.mark.parametrize("case", [c for c in CASES if c.op in ("Mul", "Max", "MaxPool", "ReduceMax")],
                         ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_degenerate_boxes_are_exact(case: Case) -> None:
    """At a point box every relaxation is exact: the gap is 0 up to rounding."""
    gen = torch.Generator().manual_seed(3)
    los, _ = inputs(case, gen)
    a = objective(case, los, gen)
    moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, los, los, case.batched())
    assert moved is not None
    gap, scale = gaps(case, a, los, los, moved, gen)
    assert (gap.abs() <= 1e-12 * (1 + scale)).all()


@pytest.mark.parametrize("op", ["MaxPool", "Max"])
def test_separated_windows_are_exact_and_not_refined(op: str) -> None:
    """Boxes far apart: each window's maximum is one known element, so ``max = x_j``."""
    gen = torch.Generator().manual_seed(5)
    if op == "MaxPool":
        case = pool_case((1, 1, 4, 4), kernel_shape=(2, 2), strides=(2, 2))
        centre = torch.randperm(16, generator=gen).double().reshape(1, 1, 1, 4, 4) * 10
        los, his = [centre - 1], [centre + 1]
    else:
        case = Case("Max", ((1, 4), (1, 4)))
        x = torch.randn(1, 1, 4, generator=gen, dtype=torch.float64)
        los, his = [x - 0.1, x + 5], [x + 0.1, x + 6]
    a = torch.randn((1, ROWS, *REGISTRY[op].forward(case.node(), los, case.batched())[0].shape[1:]),
                    generator=gen, dtype=torch.float64)
    moved = MULTI_RELAXATIONS[op].backward(case.node(), a, los, his, case.batched())
    assert moved is not None and float(moved.bias.abs().max()) < 1e-10  # the rounding margin only
    assert not any(p.numel() for p in MULTI_RELAXATIONS[op].refine(case.node(), los, his, case.batched()).values())


def test_mul_alone_concretises_to_the_product_bounds() -> None:
    """Over the box, the chosen Mul planes reach the corner bounds of the product."""
    gen = torch.Generator().manual_seed(7)
    case = Case("Mul", ((1, 50), (1, 50)))
    los, his = inputs(case, gen)
    eye = torch.eye(50, dtype=torch.float64).reshape(1, 50, 1, 50).expand(BATCH, -1, -1, -1)
    for sign in (1.0, -1.0):
        moved = MULTI_RELAXATIONS["Mul"].backward(case.node(), sign * eye, los, his, [True, True])
        assert moved is not None
        bound = moved.bias.clone()
        for i, coeff in moved.coefficients.items():
            lo, hi = los[i].unsqueeze(1), his[i].unsqueeze(1)
            bound += (coeff.clamp(min=0) * lo + coeff.clamp(max=0) * hi).flatten(2).sum(2)
        corners = torch.stack([x * y for x in (los[0], his[0]) for y in (los[1], his[1])]).flatten(2)
        exact = corners.amin(0) if sign > 0 else -corners.amax(0)
        assert torch.allclose(bound, exact, atol=1e-12)


@pytest.mark.parametrize("case", CASES[::2],
                         ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_infinite_bounds_give_no_nan(case: Case) -> None:
    """Unbounded and huge ends: finite coefficients, bias finite or -inf, finite gradients."""
    gen = torch.Generator().manual_seed(11)
    los, his = infinite_inputs(case, gen)
    leaves = [t.clone().requires_grad_(dyn) for t, dyn in zip(los, case.batched(), strict=True)]
    a = objective(case, los, gen).requires_grad_(True)
    moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, leaves, his, case.batched())
    backward_through(case, a, los, moved)
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert all(leaf.grad is None or torch.isfinite(leaf.grad).all() for leaf in leaves)
    gap, scale = gaps(case, a.detach(), los, his, moved, gen)
    assert (gap >= -1e-9 * (1 + scale)).all()


def test_a_denominator_touching_zero_or_unbounded_gives_interval_bounds() -> None:
    """Div: where the denominator's box touches 0 or is unbounded, slope 0 and the interval
    bound (infinite at a pole, the limit quotient over an unbounded end), never NaN."""
    case = Case("Div", ((1, 4), (1, 4)))
    x = torch.tensor([[[1.0, 1.0, -2.0, 3.0]]], dtype=torch.float64)
    y_lo = torch.tensor([[[0.0, -1.0, 2.0, -torch.inf]]], dtype=torch.float64)
    y_hi = torch.tensor([[[1.0, 1.0, torch.inf, -1.0]]], dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64).reshape(1, 4, 1, 4)
    for sign in (1.0, -1.0):
        moved = MULTI_RELAXATIONS["Div"].backward(case.node(), sign * eye, [x, y_lo], [x, y_hi], [True, True])
        assert moved is not None
        assert all((c == 0).all() for c in moved.coefficients.values())
        lowest = moved.bias[0] if sign > 0 else -moved.bias[0]
        expected = [-torch.inf, -torch.inf, -1.0, -3.0] if sign > 0 else [torch.inf, torch.inf, 0.0, 0.0]
        for got, want in zip(lowest.tolist(), expected, strict=True):  # row sums keep -inf as -max
            assert abs(got) > 1e300 and got * want > 0 if math.isinf(want) else abs(got - want) < 1e-9


# ---------------------------------------------------------------------------------------------
# Through CROWN, against onnxruntime


def _network(name: str, path: Path) -> list[int]:
    """Saves the named network; returns its input shape."""
    if name in TWO_BRANCH:
        two_branch(*TWO_BRANCH[name], seed=1, path=path)
        return [1, 3]
    if name in NORMALISED:
        normalised(name, seed=1, path=path)
        return [1, 3]
    pooled(*POOLED[name], seed=1, path=path)
    return [1, 1, 4, 4]


PER_NODE_TIGHT = {"Mul", "MaxPool_2x2", "MaxPool_3x3_pads", "GlobalMaxPool", "ReduceMax", "ReduceMin"}
"""Networks whose rules concretise to the interval bound per node: never looser than the cut."""


@pytest.mark.parametrize("name", sorted([*TWO_BRANCH, *POOLED, *NORMALISED]))
def test_crown_is_sound_and_tighter_than_the_cut(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.onnx"
    shape = _network(name, path)
    tgraph = TorchGraph(load_model(path), "cpu", torch.float64)
    op = next(n.op for n in tgraph.graph.nodes if n.op in MULTI_RELAXATIONS)
    oracle, rng, size = OnnxOracle(path), np.random.default_rng(0), int(np.prod(shape))
    rows = torch.cat([torch.eye(3), -torch.eye(3), torch.from_numpy(rng.normal(size=(4, 3)))]).double()
    gains = []
    for radius in (0.05, 0.3, 1.0):
        centre = rng.normal(size=size)
        box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
        lower, upper = (torch.from_numpy(b).reshape(1, *shape) for b in box)
        crown = Crown(tgraph, [lower], [upper])
        y_lo, y_hi = crown.output_bounds()
        bound = crown.lower_bound(rows)
        optimised = alpha_lower_bound(crown, rows, AlphaConfig(iterations=10))
        points = box[0] + rng.random((300, size)) * (box[1] - box[0])
        corners = box[0] + rng.integers(0, 2, size=(20, size)) * (box[1] - box[0])
        outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                          for p in np.concatenate([points, corners])]))
        assert (outs >= y_lo).all() and (outs <= y_hi).all()
        assert ((outs @ rows.T) >= optimised).all() and (optimised >= bound).all()
        cut_graph = TorchGraph(tgraph.graph, "cpu", torch.float64, overrides={op: _without_rule(op)})
        cut = Crown(cut_graph, [lower], [upper]).lower_bound(rows)
        gain = (bound - cut)[0]
        if name in PER_NODE_TIGHT:
            assert (gain >= -1e-9 * (1 + cut.abs()[0])).all()
        gains.append(float(gain.sum()))
    assert max(gains) > 1e-6, gains
