"""Optimisable plane weights of multi-input rules (:class:`verifier.ops.multi_relax.PlaneWeights`,
Mul's McCormick weights): sound by sampling for *any* weights in [0, 1] (the contract that lets
alpha-CROWN search them), the seed reproduces the fixed planes, and alpha-CROWN with them is
sound against onnxruntime and tighter than with the planes fixed.

Every registered op whose rule has weights is covered (read from the registry), and the
sampling check is shown to catch, per op, a plane whose bias misses some extreme points."""

from __future__ import annotations

import dataclasses
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
    Case,
    backward_through,
    check_shapes,
    gaps,
    infinite_inputs,
    inputs,
    normalised,
    objective,
    pooled,
    two_branch,
)
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ops import REGISTRY, arith, multi_relax, pool, quotient, softmax
from verifier.ops.base import Op
from verifier.ops.multi_relax import PlaneWeights
from verifier.witness import OnnxOracle, grid_box, snap_into_box

WEIGHTED: dict[str, PlaneWeights] = {
    name: op.multi_relaxation.weights for name, op in REGISTRY.items()
    if op.multi_relaxation is not None and op.multi_relaxation.weights is not None
}
"""Every op whose multi-input rule has optimisable weights (read from the registry)."""

def _probe(case: Case) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Wide overlapping boxes (around [-1, 1]) for the dynamic inputs, constants inside them:
    every window with two or more slots is undecided."""
    gen = torch.Generator().manual_seed(0)
    los, his = [], []
    for shape, dyn in zip(case.shapes, case.batched(), strict=True):
        r = torch.rand((BATCH, *shape) if dyn else shape, generator=gen, dtype=torch.float64)
        los.append(-1 - r if dyn else r - 0.5)
        his.append(1 + r if dyn else r - 0.5)
    if case.one_signed and case.one_signed[-1]:  # a denominator: keep it above 0
        los[-1], his[-1] = los[-1] + 3, his[-1] + 3
    return los, his


def _has_weights(case: Case) -> bool:
    los, his = _probe(case)
    return WEIGHTED[case.op].seed(case.node(), los, his, case.batched()) is not None


WEIGHTED_CASES = [case for case in CASES if case.op in WEIGHTED and _has_weights(case)]
UNWEIGHTED_CASES = [case for case in CASES if case.op in WEIGHTED and not _has_weights(case)]


def test_weighted_rules_have_cases() -> None:
    assert WEIGHTED and {case.op for case in WEIGHTED_CASES} == set(WEIGHTED)


@pytest.mark.parametrize("case", UNWEIGHTED_CASES, ids=lambda c: f"{c.op}{list(c.shapes)}{dict(c.attrs)}")
def test_cases_without_weights_have_every_window_decided(case: Case) -> None:
    """A maximum over one slot (a single-input Max, a ReduceMax over no axis) is exact: there is
    no plane to optimise, and nothing to refine."""
    los, his = _probe(case)
    rule = REGISTRY[case.op].multi_relaxation
    assert rule is not None
    assert not any(p.numel() for p in rule.refine(case.node(), los, his, case.batched()).values())


def _random_weights(seed: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Weights ``(N, R, *out, count)`` uniform in [0, 1], a third of them at the ends 0 and 1."""
    shape = (seed.shape[0], ROWS, *seed.shape[1:])
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    end = torch.randint(0, 6, shape, generator=gen)
    return torch.where(end == 0, 0.0, torch.where(end == 1, 1.0, u))


def _weighted_gaps_hold(case: Case, gen: torch.Generator, weights_rule: PlaneWeights) -> bool | None:
    """Whether the relaxation with random weights holds at sampled points of a random box
    (None: on that box every window is decided, no weights)."""
    los, his = inputs(case, gen)
    a = objective(case, los, gen)
    seed = weights_rule.seed(case.node(), los, his, case.batched())
    if seed is None:
        return None
    assert seed.shape[0] == BATCH
    moved = weights_rule.backward(case.node(), a, los, his, case.batched(), _random_weights(seed, gen))
    assert moved is not None
    check_shapes(case, a, los, moved)
    gap, scale = gaps(case, a, los, his, moved, gen)
    return bool((gap >= -1e-9 * (1 + scale)).all())


@pytest.mark.parametrize("case", WEIGHTED_CASES, ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_any_weights_in_the_unit_interval_give_a_sound_relaxation(case: Case) -> None:
    gen = torch.Generator().manual_seed(len(str(case)) + 1)
    held = [_weighted_gaps_hold(case, gen, WEIGHTED[case.op]) for _ in range(6)]
    assert all(h is not False for h in held) and held.count(True) >= 2, held


def _diagonal_bias(sx, sy, box, upper):  # type: ignore[no-untyped-def]
    """Mul's bias over the diagonal corners ``(lx, ly)``, ``(ux, uy)`` only (a planted bug)."""
    lx, ux, ly, uy = box
    gaps = torch.stack([x * y - sx * x - sy * y for x, y in ((lx, ly), (ux, uy))])
    return gaps.amax(0) if upper else gaps.amin(0)


def _ends_only_bias(cx, cy, box, upper):  # type: ignore[no-untyped-def]
    """Div's bias over the box's four corners, without the stationary points (a planted bug)."""
    lx, ux, ly, uy = box
    gaps = torch.stack([x / y - cx * x - cy * y for x in (lx, ux) for y in (ly, uy)])
    return gaps.amax(0) if upper else gaps.amin(0)


def _unnormalised(chosen, planes, hi_w):  # type: ignore[no-untyped-def]
    """A window maximum's lower plane ``sum_k w_k x_k`` without scaling the weights to sum 1
    (a planted bug: not a convex combination)."""
    return chosen.to(hi_w.dtype).clamp(0, 1) * (hi_w > -torch.inf).unsqueeze(1)


def _swapped_pair_lines(lo, hi):  # type: ignore[no-untyped-def]
    """Softmax's pair lines of ``exp(x_j - x_i)`` with the lower and upper lines swapped (a
    planted bug)."""
    al, bl, au, bu, w_lo, w_hi = PAIR_LINES(lo, hi)
    return au, bu, al, bl, w_lo, w_hi


def _swapped_exp_lines(lo, hi, c):  # type: ignore[no-untyped-def]
    """LogSoftmax's lines of ``exp(x - c)`` with the lower and upper lines swapped (a planted bug)."""
    al, bl, au, bu = EXP_LINES(lo, hi, c)
    return au, bu, al, bl


PAIR_LINES, EXP_LINES = softmax._pair_lines, softmax._exp_lines
WINDOW_MUTANT = (multi_relax, "lower_weights", _unnormalised)
MUTANTS = {"Mul": (arith, "_corner_bias", _diagonal_bias), "Div": (quotient, "plane_bias", _ends_only_bias),
           "MaxPool": (pool, "lower_weights", _unnormalised), "Softmax": (softmax, "_pair_lines", _swapped_pair_lines),
           "LogSoftmax": (softmax, "_exp_lines", _swapped_exp_lines),
           **{op: WINDOW_MUTANT for op in ("Max", "Min", "ReduceMax", "ReduceMin", "GlobalMaxPool")}}


def test_every_weighted_rule_has_a_mutant() -> None:
    assert set(MUTANTS) == set(WEIGHTED)


@pytest.mark.parametrize("op", sorted(MUTANTS))
def test_a_wrong_plane_bias_is_caught(monkeypatch: pytest.MonkeyPatch, op: str) -> None:
    """The sampling check above fails once the rule's bias misses points where the gap is
    extreme (sound for the default weights on many boxes, not for all weights)."""
    module, name, wrong = MUTANTS[op]
    case = next(c for c in WEIGHTED_CASES if c.op == op)
    monkeypatch.setattr(module, name, wrong)
    gen = torch.Generator().manual_seed(2)
    assert any(_weighted_gaps_hold(case, gen, WEIGHTED[op]) is False for _ in range(6))


@pytest.mark.parametrize("case", WEIGHTED_CASES, ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_the_seed_weights_reproduce_the_fixed_planes(case: Case) -> None:
    gen = torch.Generator().manual_seed(9)
    los, his = _probe(case)
    a = objective(case, los, gen)
    rule = REGISTRY[case.op].multi_relaxation
    assert rule is not None and rule.weights is not None
    fixed = rule.backward(case.node(), a, los, his, case.batched())
    seed = rule.weights.seed(case.node(), los, his, case.batched())
    assert fixed is not None and seed is not None
    rows = seed.unsqueeze(1).expand(seed.shape[0], ROWS, *seed.shape[1:])
    weighted = rule.weights.backward(case.node(), a, los, his, case.batched(), rows)
    assert weighted is not None
    torch.testing.assert_close(weighted.bias, fixed.bias, rtol=1e-12, atol=1e-12)
    for i, coeff in fixed.coefficients.items():
        torch.testing.assert_close(weighted.coefficients[i], coeff, rtol=1e-12, atol=1e-12)


def _fixed_planes(op_type: str) -> Op:
    """The registry's op with its rule's weights removed (alpha-CROWN keeps the seed planes)."""
    cls, rule = type(REGISTRY[op_type]), REGISTRY[op_type].multi_relaxation
    return type(f"Fixed{cls.__name__}", (cls,), {"multi_relaxation": dataclasses.replace(rule, weights=None)})()


def _weighted_network(op: str, seed: int, path: Path) -> list[int]:
    """A small network around one ``op`` node (the builders of the multi-relaxation tests);
    returns its input shape."""
    name = "MaxPool_3x3_pads" if op == "MaxPool" else op
    if name in NORMALISED:
        normalised(name, seed=seed, path=path)
        return [1, 3]
    if name in POOLED:
        pooled(*POOLED[name], seed=seed, path=path)
        return [1, 1, 4, 4]
    two_branch(op, False, seed, path)
    return [1, 3]


@pytest.mark.parametrize("op", sorted(WEIGHTED))
def test_alpha_with_weights_is_sound_and_tighter_than_with_fixed_planes(tmp_path: Path, op: str) -> None:
    """Every alpha bound is below every onnxruntime output (samples and corners), never below
    the fixed-plane alpha bound by more than rounding, and above it on some row."""
    rng, gains = np.random.default_rng(0), []
    for seed in range(3):
        path = tmp_path / f"{op}{seed}.onnx"
        shape = _weighted_network(op, seed, path)
        size = int(np.prod(shape))
        graph = load_model(path)
        rows = torch.cat([torch.eye(3), -torch.eye(3), torch.from_numpy(rng.normal(size=(4, 3)))]).double()
        centre = rng.normal(size=size)
        box = grid_box(centre - 0.5, centre + 0.5, np.dtype(np.float32))
        lower, upper = (torch.from_numpy(b).reshape(1, *shape) for b in box)
        config = AlphaConfig(iterations=30)
        weighted = alpha_lower_bound(Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper]), rows, config)
        fixed_graph = TorchGraph(graph, "cpu", torch.float64, {op: _fixed_planes(op)})
        fixed = alpha_lower_bound(Crown(fixed_graph, [lower], [upper]), rows, config)
        oracle = OnnxOracle(path)
        points = np.concatenate([box[0] + rng.random((300, size)) * (box[1] - box[0]),
                                 box[0] + rng.integers(0, 2, size=(8, size)) * (box[1] - box[0])])
        outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                          for p in points]))
        assert ((outs @ rows.T) >= weighted).all()
        assert (weighted >= fixed - 1e-9 * (1 + fixed.abs())).all()
        gains.append(float((weighted - fixed).max()))
    assert max(gains) > 1e-3, gains


@pytest.mark.parametrize("case", WEIGHTED_CASES[::2], ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_weights_with_infinite_bounds_give_no_nan(case: Case) -> None:
    """Unbounded and huge ends with random weights: finite coefficients, bias finite or -inf,
    finite gradients with respect to the weights, and still sound where sampled."""
    gen = torch.Generator().manual_seed(13)
    los, his = infinite_inputs(case, gen)
    rule = WEIGHTED[case.op]
    seed = rule.seed(case.node(), los, his, case.batched())
    assert seed is not None
    weights = _random_weights(seed, gen).requires_grad_(True)
    a = objective(case, los, gen)
    moved = rule.backward(case.node(), a, los, his, case.batched(), weights)
    backward_through(case, a, los, moved)
    assert moved is not None and weights.grad is not None and torch.isfinite(weights.grad).all()
    gap, scale = gaps(case, a, los, his, moved, gen)
    assert (gap >= -1e-9 * (1 + scale)).all()
