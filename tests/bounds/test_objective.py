"""Spec-row bounds (``verifier.bounds.objective``) against exact rational arithmetic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from verifier.bounds.crown import Crown
from verifier.bounds.objective import clause_refuted, clause_row_lower, difference_lower, spec_rows
from verifier.bounds.rounding import outward
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause


def _floats(rng: np.random.Generator, n: int) -> np.ndarray:
    """float64 values over many magnitudes, with signs, zeros and repeats."""
    mags = 10.0 ** rng.uniform(-30, 30, n)
    values = mags * rng.choice([-1.0, 1.0], n)
    values[rng.random(n) < 0.05] = 0.0
    picks = rng.random(n) < 0.1
    values[picks] = rng.choice(values, int(picks.sum()))
    return values


def test_difference_lower_is_exact_or_one_float_below() -> None:
    rng = np.random.default_rng(0)
    a = np.concatenate([_floats(rng, 4000), [1.0, 0.1, -1.0, 1e300]])
    b = np.concatenate([_floats(rng, 4000), [1.0, 0.3, -1.0, -1e300]])
    b[:400] = a[:400] * (1 + rng.uniform(-1e-10, 1e-10, 400))  # near-cancellation
    got = difference_lower(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    for x, y, g in zip(a, b, got, strict=True):
        exact = Fraction(float(x)) - Fraction(float(y))
        assert np.isfinite(g)
        assert Fraction(float(g)) <= exact
        assert Fraction(float(np.nextafter(g, np.inf))) > exact  # at most one float below
        if Fraction(float(x - y)) == exact:
            assert g == x - y  # exact differences are kept as they are


def test_difference_lower_with_infinities() -> None:
    inf = torch.tensor([-np.inf, np.inf, 1.0], dtype=torch.float64)
    got = difference_lower(inf, torch.tensor([0.0, 0.0, np.inf], dtype=torch.float64))
    assert got[0] == -np.inf and got[1] <= np.finfo(np.float64).max and got[2] == -np.inf


def test_rounding_steps_pass_gradients_without_torch_deriving_nextafter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimisers differentiate through ``difference_lower`` and ``outward``; torch 2.11
    has no derivative for ``nextafter`` (it raised on a GPU machine's torch 2.11). Here
    ``torch.nextafter`` refuses to be differentiated, as there; the steps still give gradient 1."""
    real = torch.nextafter

    def underivable(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise NotImplementedError("the derivative for 'nextafter' is not implemented.")
        return real(x, other)

    monkeypatch.setattr(torch, "nextafter", underivable)
    a = torch.tensor([0.1, 1.0, 1e-300], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.3, 1.0, -1e300], dtype=torch.float64, requires_grad=True)
    got = difference_lower(a, b)
    got.sum().backward()
    assert a.grad is not None and b.grad is not None
    assert torch.equal(a.grad, torch.ones(3, dtype=torch.float64))
    assert torch.equal(b.grad, -torch.ones(3, dtype=torch.float64))
    assert Fraction(float(got[0].detach())) <= Fraction(0.1) - Fraction(0.3) and got[1] == 0.0
    x = torch.tensor([0.1, -0.1], dtype=torch.float64, requires_grad=True)
    lo, hi = outward(x, x, torch.float32)
    (lo.sum() + hi.sum()).backward()
    assert x.grad is not None and torch.equal(x.grad, torch.full((2,), 2.0, dtype=torch.float64))
    assert (lo.double() <= x).all() and (hi.double() >= x).all() and (lo < hi).all()


def _exact_row_min(c: np.ndarray, d: float, lo: np.ndarray, hi: np.ndarray) -> Fraction:
    return sum((Fraction(float(cj)) * Fraction(float(lo[j] if cj > 0 else hi[j]))
                for j, cj in enumerate(c) if cj != 0), Fraction(0)) - Fraction(float(d))


def test_clause_row_lower_is_a_lower_bound_and_tight_on_single_term_rows() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        m = int(rng.integers(1, 5))
        lo = _floats(rng, m) * 1e-25
        hi = lo + np.abs(_floats(rng, m)) * 1e-25
        rows = [np.zeros(m) for _ in range(4)]
        rows[0][rng.integers(m)] = rng.choice([1.0, -1.0, 0.5, -4.0])  # power of two: tight
        rows[1][rng.integers(m)] = rng.uniform(-3, 3)  # any single coefficient
        rows[2] = rng.uniform(-2, 2, m)
        rows[3][rng.integers(m)] = 1.0
        c = np.stack(rows)
        d = np.array([rng.uniform(-1, 1) * 1e-25, rng.uniform(-1, 1) * 1e-25, 0.1e-25, hi[np.argmax(c[3])]])
        clause = Clause(c, d, np.array([False, False, False, True]))
        got = clause_row_lower(clause, torch.from_numpy(lo[None]), torch.from_numpy(hi[None]))[0].numpy()
        for r in range(4):
            exact = _exact_row_min(c[r], d[r], lo, hi)
            assert Fraction(float(got[r])) <= exact
        tight = _exact_row_min(c[0], d[0], lo, hi)
        assert Fraction(float(np.nextafter(got[0], np.inf))) > tight  # within one float
        assert got[3] <= 0 and clause_row_lower(clause, torch.from_numpy(hi[None]),
                                                torch.from_numpy(hi[None]))[0, 3] == 0.0


def test_strict_rows_are_refuted_by_a_touching_bound() -> None:
    # y in [0, 1]: "y < 0" and "y > 1" cannot hold (strict rows), "y <= 0" and "y >= 1" can
    c = np.array([[1.0], [-1.0]])
    d = np.array([0.0, -1.0])
    lo, hi = torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    for r in range(2):
        strict = Clause(c[r:r + 1], d[r:r + 1], np.array([True]))
        loose = Clause(c[r:r + 1], d[r:r + 1], np.array([False]))
        assert bool(clause_refuted(strict, lo, hi)[0]) and not bool(clause_refuted(loose, lo, hi)[0])
    raw = torch.tensor([[0.0, -1.0, -0.5]], dtype=torch.float64)  # bounds of C y: y >= 0, -y >= -1
    d3 = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    strict = torch.tensor([True, True, True])
    margins = spec_rows(raw, d3, strict=strict)
    assert (margins[0, :2] > 0).all() and margins[0, 2] == -0.5  # a negative bound is kept
    assert (spec_rows(raw, d3) <= 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spec_rows_work_in_float64_whatever_the_bounds_dtype(dtype: torch.dtype) -> None:
    # d = 0.1 is not a float32: subtracting it after a float32 cast would move the row
    raw = torch.tensor([[0.1]], dtype=torch.float64).to(dtype)
    d = torch.tensor([0.1], dtype=torch.float64)
    got = spec_rows(raw, d)
    assert got.dtype == torch.float64
    assert Fraction(float(got[0, 0])) <= Fraction(float(raw[0, 0])) - Fraction(0.1)


def test_float32_bounds_refuse_coefficients_they_cannot_represent(tmp_path: object) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = f"{tmp_path}/relu.onnx"
    onnx.save(model, path)
    tgraph = TorchGraph(load_model(path), "cpu", torch.float32)
    box = torch.tensor([[-1.0, 2.0]])
    crown = Crown(tgraph, [box - 1], [box + 1])
    assert crown.lower_bound(torch.tensor([[1.0, -0.5]], dtype=torch.float64)).shape == (1, 1)
    with pytest.raises(ValueError, match="not exactly representable"):
        crown.lower_bound(torch.tensor([[0.1, 0.0]], dtype=torch.float64))
