"""Shared cases and helpers of the multi-input relaxation tests (``test_multi_relax.py``,
``test_plane_weights.py``): the op cases with random boxes, the sampled gap of a relaxation,
infinite-bound inputs, and the small networks built around one op."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.ir import Node
from verifier.ops import REGISTRY
from verifier.ops.multi_relax import Moved

SAMPLES = 2000
ROWS = 3
BATCH = 3


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


def pool_case(shape: tuple[int, ...], **attrs: Any) -> Case:
    return Case("MaxPool", (shape,), tuple(attrs.items()))


BINARY_SHAPES = [((1, 6), (1, 6)), ((1, 6), (1, 1)), ((3, 1), (1, 4)), ((2, 3, 4), (4,))]
CASES = [
    *(Case(op, shapes) for op in ("Mul", "Max", "Min") for shapes in BINARY_SHAPES),
    *(Case(op, ((1, 6), (6,)), constant=(False, True)) for op in ("Max", "Min")),
    *(Case(op, ((6,), (2, 6)), constant=(True, False)) for op in ("Max", "Min")),
    Case("Max", ((1, 5),)),
    Case("Max", ((1, 5), (1, 5), (1, 1))),
    Case("Min", ((2, 4), (4,), (2, 1)), constant=(False, True, False)),
    pool_case((1, 2, 4, 4), kernel_shape=(2, 2), strides=(2, 2)),
    pool_case((1, 2, 5, 5), kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1)),
    pool_case((2, 1, 5, 6), kernel_shape=(2, 3), strides=(2, 1), pads=(0, 1, 1, 0), dilations=(2, 1), ceil_mode=1),
    pool_case((1, 2, 5, 5), kernel_shape=(2, 2), strides=(2, 2)),  # the last row and column are never read
    pool_case((1, 3, 7), kernel_shape=(3,), strides=(2,), pads=(1, 1)),
    pool_case((1, 1, 3, 4, 4), kernel_shape=(2, 2, 2), strides=(1, 2, 2)),
    pool_case((1, 1, 6, 6), kernel_shape=(3, 3), strides=(2, 2), auto_pad="SAME_UPPER"),
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


def inputs(case: Case, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
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


def gaps(case: Case, a: torch.Tensor, los: list[torch.Tensor], his: list[torch.Tensor], moved: Moved,
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


def objective(case: Case, los: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Random ``A (N, R, *out)`` of both signs with some zeros."""
    node, batched = case.node(), case.batched()
    out = REGISTRY[case.op].forward(node, los, batched)[0]
    a = torch.randn((BATCH, ROWS, *out.shape[1:]), generator=gen, dtype=torch.float64)
    return torch.where(torch.rand(a.shape, generator=gen) < 0.2, torch.zeros_like(a), a)


def check_shapes(case: Case, a: torch.Tensor, los: list[torch.Tensor], moved: Moved) -> None:
    assert moved.bias.shape == a.shape[:2]
    dynamic = {i for i, dyn in enumerate(case.batched()) if dyn}
    assert set(moved.coefficients) == dynamic
    for i, coeff in moved.coefficients.items():
        assert coeff.shape == (*a.shape[:2], *los[i].shape[1:])
        assert torch.isfinite(coeff).all()


def infinite_inputs(case: Case, gen: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Random boxes (:func:`inputs`) with some ends unbounded or beyond 1e120 (denominators,
    which need a box of one sign, are left as they are: tested separately)."""
    los, his = inputs(case, gen)
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
    check_shapes(case, a, los, moved)
    assert not torch.isnan(moved.bias).any() and (moved.bias < torch.inf).all()
    total = torch.where(torch.isfinite(moved.bias), moved.bias, 0.0).sum()
    total = total + sum(c.sum() for c in moved.coefficients.values())
    total.backward()


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
