"""Relaxations of :mod:`verifier.ops.multi_relax` (``Op.multi_relaxation``): sound by sampling, exact where decided,
NaN-free with infinite bounds, and sound and tighter than the interval cut inside CROWN.

The direct tests check ``<A, f(x)> >= sum_i <A_i, x_i> + bias`` in float64 at thousands of
points of random boxes (degenerate intervals, intervals touching 0, broadcasting) for random
``A`` of both signs. Every registered op that declares a multi-input relaxation must have cases here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Node
from verifier.ops import REGISTRY
from verifier.ops.base import Op
from verifier.ops.multi_relax import Moved, MultiRule
from verifier.witness import OnnxOracle, grid_box, snap_into_box

SAMPLES = 2000
ROWS = 3
BATCH = 3

MULTI_RELAXATIONS: dict[str, MultiRule] = {
    name: op.multi_relaxation for name, op in REGISTRY.items() if op.multi_relaxation is not None
}
"""Every op that declares a multi-input relaxation (read from the registry)."""


def _without_rule(op_type: str) -> Op:
    """The registry's op with its multi-input relaxation removed (CROWN then cuts the node)."""
    cls = type(REGISTRY[op_type])
    return type(f"Cut{cls.__name__}", (cls,), {"multi_relaxation": None})()


@dataclass(frozen=True)
class Case:
    """An op with attributes and the static shapes of its inputs; ``constant[i]`` marks the
    constant ones (the others are dynamic), ``one_signed[i]`` the inputs whose boxes stay on
    one side of 0 (denominators)."""

    op: str
    shapes: tuple[tuple[int, ...], ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    constant: tuple[bool, ...] = ()
    one_signed: tuple[bool, ...] = ()

    def node(self) -> Node:
        names = tuple(f"in{i}" for i in range(len(self.shapes)))
        return Node("n", self.op, names, ("out",), MappingProxyType(dict(self.attrs)))

    def batched(self) -> list[bool]:
        return [not (i < len(self.constant) and self.constant[i]) for i in range(len(self.shapes))]


def _pool(shape: tuple[int, ...], **attrs: Any) -> Case:
    return Case("MaxPool", (shape,), tuple(attrs.items()))


BINARY_SHAPES = [((1, 6), (1, 6)), ((1, 6), (1, 1)), ((3, 1), (1, 4)), ((2, 3, 4), (4,))]
CASES = [
    *(Case(op, shapes) for op in ("Mul", "Max", "Min") for shapes in BINARY_SHAPES),
    *(Case(op, ((1, 6), (6,)), constant=(False, True)) for op in ("Max", "Min")),
    *(Case(op, ((6,), (2, 6)), constant=(True, False)) for op in ("Max", "Min")),
    Case("Max", ((1, 5),)),
    Case("Max", ((1, 5), (1, 5), (1, 1))),
    Case("Min", ((2, 4), (4,), (2, 1)), constant=(False, True, False)),
    _pool((1, 2, 4, 4), kernel_shape=(2, 2), strides=(2, 2)),
    _pool((1, 2, 5, 5), kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
    _pool((2, 1, 5, 6), kernel_shape=(2, 3), strides=(2, 1), pads=(0, 1, 1, 0), dilations=(2, 1), ceil_mode=1),
    _pool((1, 2, 5, 5), kernel_shape=(2, 2), strides=(2, 2)),  # the last row and column are never read
    _pool((1, 3, 7), kernel_shape=(3,), strides=(2,), pads=(1, 1)),
    _pool((1, 1, 3, 4, 4), kernel_shape=(2, 2, 2), strides=(1, 2, 2)),
    _pool((1, 1, 6, 6), kernel_shape=(3, 3), strides=(2, 2), auto_pad="SAME_UPPER"),
    *(Case(op, ((2, 3, 4),), (("axes", axes), ("keepdims", keep)))
      for op in ("ReduceMax", "ReduceMin") for axes, keep in (((1,), 1), ((0, 2), 0), (None, 0), ((), 1))),
    Case("ReduceMax", ((2, 3),), (("axes", ()), ("keepdims", 1), ("noop_with_empty_axes", 1))),
    Case("GlobalMaxPool", ((1, 2, 3, 3),)),
    *(Case("Div", shapes, one_signed=(False, True)) for shapes in BINARY_SHAPES),
    Case("Div", ((6,), (2, 6)), constant=(True, False), one_signed=(False, True)),
    *(Case(op, (shape,), attrs) for op in ("Softmax", "LogSoftmax") for shape, attrs in (
        ((1, 5), (("axis", -1),)), ((2, 3, 4), (("axis", 1),)), ((3, 4), (("axis", 0),)),
        ((2, 3, 2), (("axis", 1), ("_opset", 11))), ((1, 1), (("axis", 1),)))),
]


def _box(shape: tuple[int, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random bounds ``(BATCH, *shape)`` with degenerate intervals and intervals ending at 0."""
    full = (BATCH, *shape)
    centre = torch.randn(full, generator=gen, dtype=torch.float64)
    width = torch.rand(full, generator=gen, dtype=torch.float64) * 2
    kind = torch.randint(0, 6, full, generator=gen)
    lo, hi = centre - width / 2, centre + width / 2
    hi = torch.where(kind == 0, lo, hi)  # degenerate
    lo = torch.where(kind == 1, torch.zeros_like(lo), lo)  # touching 0 from above
    hi = torch.where(kind == 2, torch.zeros_like(hi), hi)  # touching 0 from below
    return torch.minimum(lo, hi), hi


def _one_signed(lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The box moved to start 0.05 to 2 away from 0, on a random side, its width kept."""
    start = 0.05 + 2 * torch.rand(lo.shape, generator=gen, dtype=lo.dtype)
    flip = torch.rand(lo.shape, generator=gen) < 0.5
    width = hi - lo
    return torch.where(flip, -start - width, start), torch.where(flip, -start, start + width)


def _inputs(case: Case, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    los, his = [], []
    for i, (shape, dyn) in enumerate(zip(case.shapes, case.batched(), strict=True)):
        if dyn:
            lo, hi = _box(shape, gen)
            if i < len(case.one_signed) and case.one_signed[i]:
                lo, hi = _one_signed(lo, hi, gen)
        else:
            lo = hi = torch.randn(shape, generator=gen, dtype=torch.float64)
        los.append(lo)
        his.append(hi)
    return los, his


def _sample(lo: torch.Tensor, hi: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` points of the box, a third of the coordinates at its ends."""
    u = torch.rand((count, *lo.shape), generator=gen, dtype=lo.dtype)
    end = torch.randint(0, 3, u.shape, generator=gen)
    u = torch.where(end == 0, torch.zeros_like(u), torch.where(end == 1, torch.ones_like(u), u))
    finite_lo = torch.where(torch.isfinite(lo), lo, torch.where(torch.isfinite(hi), hi - 5, torch.zeros_like(lo)))
    finite_hi = torch.where(torch.isfinite(hi), hi, finite_lo + 5)
    return finite_lo + u * (finite_hi - finite_lo)


def _gaps(case: Case, a: torch.Tensor, los: list[torch.Tensor], his: list[torch.Tensor], moved: Moved,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``<A, f(x)> - (sum_i <A_i, x_i> + bias)`` at sampled points ``(S, N, R)``, and a scale."""
    node, batched = case.node(), case.batched()
    points = [_sample(lo, hi, SAMPLES, gen).flatten(0, 1) if dyn else lo
              for lo, hi, dyn in zip(los, his, batched, strict=True)]
    out = REGISTRY[case.op].forward(node, points, batched)[0]
    out = out.reshape(SAMPLES, BATCH, -1)
    value = torch.einsum("snk,nrk->snr", out, a.reshape(*a.shape[:2], -1))
    scale = torch.einsum("snk,nrk->snr", out.abs(), a.abs().reshape(*a.shape[:2], -1))
    linear = moved.bias.unsqueeze(0).expand(SAMPLES, -1, -1)
    scale = scale + moved.bias.abs().nan_to_num(posinf=0.0)
    for i, coeff in moved.coefficients.items():
        x = points[i].reshape(SAMPLES, BATCH, -1)
        linear = linear + torch.einsum("snk,nrk->snr", x, coeff.flatten(2))
        scale = scale + torch.einsum("snk,nrk->snr", x.abs(), coeff.abs().flatten(2))
    return value - linear, scale


def _objective(case: Case, los: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Random ``A (N, R, *out)`` of both signs with some zeros."""
    node, batched = case.node(), case.batched()
    out = REGISTRY[case.op].forward(node, los, batched)[0]
    a = torch.randn((BATCH, ROWS, *out.shape[1:]), generator=gen, dtype=torch.float64)
    return torch.where(torch.rand(a.shape, generator=gen) < 0.2, torch.zeros_like(a), a)


def _check_shapes(case: Case, a: torch.Tensor, los: list[torch.Tensor], moved: Moved) -> None:
    assert moved.bias.shape == a.shape[:2]
    dynamic = {i for i, dyn in enumerate(case.batched()) if dyn}
    assert set(moved.coefficients) == dynamic
    for i, coeff in moved.coefficients.items():
        assert coeff.shape == (*a.shape[:2], *los[i].shape[1:])
        assert torch.isfinite(coeff).all()


def test_every_rule_has_cases() -> None:
    assert {case.op for case in CASES} == set(MULTI_RELAXATIONS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.op}{list(c.shapes)}{dict(c.attrs)}")
def test_relaxation_is_sound_by_sampling(case: Case) -> None:
    gen = torch.Generator().manual_seed(len(str(case)))
    for _ in range(3):
        los, his = _inputs(case, gen)
        a = _objective(case, los, gen)
        moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, los, his, case.batched())
        assert moved is not None
        _check_shapes(case, a, los, moved)
        assert torch.isfinite(moved.bias).all()
        gap, scale = _gaps(case, a, los, his, moved, gen)
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
    los, _ = _inputs(case, gen)
    a = _objective(case, los, gen)
    moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, los, los, case.batched())
    assert moved is not None
    gap, scale = _gaps(case, a, los, los, moved, gen)
    assert (gap.abs() <= 1e-12 * (1 + scale)).all()


@pytest.mark.parametrize("op", ["MaxPool", "Max"])
def test_separated_windows_are_exact_and_not_refined(op: str) -> None:
    """Boxes far apart: each window's maximum is one known element, so ``max = x_j``."""
    gen = torch.Generator().manual_seed(5)
    if op == "MaxPool":
        case = _pool((1, 1, 4, 4), kernel_shape=(2, 2), strides=(2, 2))
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
    los, his = _inputs(case, gen)
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


def infinite_inputs(case: Case, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random boxes (:func:`_inputs`) with some ends unbounded or beyond 1e120 (denominators,
    which need a box of one sign, are left as they are: tested separately)."""
    los, his = _inputs(case, gen)
    for i, (lo, hi, dyn) in enumerate(zip(los, his, case.batched(), strict=True)):
        if dyn and not (i < len(case.one_signed) and case.one_signed[i]):
            pick = torch.rand(lo.shape, generator=gen)
            lo[pick < 0.15] = -torch.inf
            hi[(pick > 0.1) & (pick < 0.25)] = torch.inf
            hi[(pick > 0.9)] = torch.where(lo[pick > 0.9] > -torch.inf, lo[pick > 0.9], 0.0) + 1e120
    return los, his


def backward_through(case: Case, a: torch.Tensor, los: list[torch.Tensor], moved: Moved | None) -> None:
    """Checks a rule's result on infinite inputs (shapes, no NaN or +inf in the bias) and runs
    autograd through its bias and coefficients (the caller checks the gradients)."""
    assert moved is not None
    _check_shapes(case, a, los, moved)
    assert not torch.isnan(moved.bias).any() and (moved.bias < torch.inf).all()
    total = torch.where(torch.isfinite(moved.bias), moved.bias, 0.0).sum()
    total = total + sum(c.sum() for c in moved.coefficients.values())
    total.backward()


@pytest.mark.parametrize("case", CASES[::2],
                         ids=lambda c: f"{c.op}{list(c.shapes)}")
def test_infinite_bounds_give_no_nan(case: Case) -> None:
    """Unbounded and huge ends: finite coefficients, bias finite or -inf, finite gradients."""
    gen = torch.Generator().manual_seed(11)
    los, his = infinite_inputs(case, gen)
    leaves = [t.clone().requires_grad_(dyn) for t, dyn in zip(los, case.batched(), strict=True)]
    a = _objective(case, los, gen).requires_grad_(True)
    moved = MULTI_RELAXATIONS[case.op].backward(case.node(), a, leaves, his, case.batched())
    backward_through(case, a, los, moved)
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert all(leaf.grad is None or torch.isfinite(leaf.grad).all() for leaf in leaves)
    gap, scale = _gaps(case, a.detach(), los, his, moved, gen)
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


def _save(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], shape: list[int], path: Path) -> None:
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def two_branch(op: str, const: bool, seed: int, path: Path) -> None:
    """x (1, 3) -> Gemm, Gemm (or a constant) -> OP -> Gemm (1, 3); Div's denominator is
    ``Softplus(Gemm) + 0.5``."""
    rng = np.random.default_rng(seed)
    inits = {"W1": rng.normal(size=(6, 3)) / 2, "b1": rng.normal(size=6) * 0.2,
             "W3": rng.normal(size=(3, 6)) / 2, "b3": rng.normal(size=3) * 0.2}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1)]
    if const:
        inits["k"] = rng.normal(size=6) * 0.5
    else:
        inits["W2"], inits["b2"] = rng.normal(size=(6, 3)) / 2, rng.normal(size=6) * 0.2
        nodes.append(helper.make_node("Gemm", ["x", "W2", "b2"], ["k"], transB=1))
    if op == "Div":  # a denominator kept above 0.5: Softplus(k) + 0.5
        inits["half"] = np.array([0.5])
        nodes += [helper.make_node("Softplus", ["k"], ["ks"]), helper.make_node("Add", ["ks", "half"], ["kd"])]
    second = "kd" if op == "Div" else "k"
    nodes += [helper.make_node(op, ["h1", second], ["a"]), helper.make_node("Gemm", ["a", "W3", "b3"], ["y"], transB=1)]
    _save(nodes, inits, [1, 3], path)


def pooled(op: str, attrs: dict[str, Any], width: int, seed: int, path: Path) -> None:
    """x (1, 1, 4, 4) -> Conv (2 channels, pads 1) -> OP -> Flatten -> Gemm (1, 3)."""
    rng = np.random.default_rng(seed)
    inits = {"K": rng.normal(size=(2, 1, 3, 3)) / 2, "kb": rng.normal(size=2) * 0.2,
             "W": rng.normal(size=(3, width)) / np.sqrt(width), "b": rng.normal(size=3) * 0.2}
    nodes = [helper.make_node("Conv", ["x", "K", "kb"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["p"], **attrs), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["y"], transB=1)]
    _save(nodes, inits, [1, 1, 4, 4], path)


def normalised(op: str, seed: int, path: Path) -> None:
    """x (1, 3) -> Gemm (6) -> OP along axis 1 -> Gemm (1, 3)."""
    rng = np.random.default_rng(seed)
    inits = {"W1": rng.normal(size=(6, 3)), "b1": rng.normal(size=6) * 0.2,
             "W3": rng.normal(size=(3, 6)), "b3": rng.normal(size=3) * 0.2}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], transB=1), helper.make_node(op, ["h1"], ["a"], axis=1),
             helper.make_node("Gemm", ["a", "W3", "b3"], ["y"], transB=1)]
    _save(nodes, inits, [1, 3], path)


NORMALISED = ("Softmax", "LogSoftmax")
TWO_BRANCH = {"Mul": ("Mul", False), "Div": ("Div", False), "Max": ("Max", False), "Max_const": ("Max", True),
              "Min": ("Min", False), "Min_const": ("Min", True)}
POOLED: dict[str, tuple[str, dict[str, Any], int]] = {
    "MaxPool_2x2": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 8),
    "MaxPool_3x3_pads": ("MaxPool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 32),
    "GlobalMaxPool": ("GlobalMaxPool", {}, 2),
    "ReduceMax": ("ReduceMax", {"axes": [3], "keepdims": 1}, 8),
    "ReduceMin": ("ReduceMin", {"axes": [1], "keepdims": 0}, 16),
}


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
