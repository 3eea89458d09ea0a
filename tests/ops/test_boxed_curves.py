"""The curves whose critical points depend on the box (:mod:`verifier.ops.boxed_curves`): Sin,
Cos and Gelu. The registry-wide tests (``test_relax``, ``test_free_slopes``) sample their lines;
here the assumptions the critical points rest on are checked against independent oracles, and
dropping the box-dependent points is caught.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.ops.elementwise_helpers import Case, Dyn, our_node
from tests.ops.test_free_slopes import _finite_boxes
from tests.ops.test_relax import violations
from verifier.ops.base import REGISTRY
from verifier.ops.boxed_curves import (
    COS,
    GELU,
    GELU_INFLECTION,
    PERIODIC_WIDTH,
    SIN,
    gelu_curvature_sign,
    gelu_slope,
)
from verifier.ops.curves import Curve, line_bias
from verifier.ops.relax import LinearBounds

GELU_CASES = {"none": Case("Gelu", (Dyn((4,)),), opset=20),
              "tanh": Case("Gelu", (Dyn((4,)),), opset=20, attrs={"approximate": "tanh"}, label="tanh")}


@pytest.mark.parametrize("mode", ["none", "tanh"])
def test_gelu_slope_is_the_derivative_and_the_curvature_changes_sign_only_at_the_inflections(mode: str) -> None:
    """``gelu_slope`` equals autograd's derivative of torch's own Gelu on [-60, 60]; the sign of
    ``f''`` (from a second autograd pass) is + inside ``(-c, c)`` and - outside, so ``f'`` is
    monotone on the three pieces the bisection searches."""
    node, _, _ = our_node(GELU_CASES[mode])
    x = torch.linspace(-60, 60, 240_001, dtype=torch.float64, requires_grad=True)
    f = torch.nn.functional.gelu(x, approximate=mode)
    (first,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    torch.testing.assert_close(gelu_slope(node, x.detach()), first.detach(), rtol=1e-12, atol=1e-14)
    c = GELU_INFLECTION[mode]
    inside = x.detach().abs() < c - 1e-6
    outside = x.detach().abs() > c + 1e-6
    curvature = gelu_curvature_sign(node, x.detach())
    assert bool((curvature[inside] > 0).all()) and bool((curvature[outside] < 0).all())
    tail = outside & (x.detach().abs() < 8)  # beyond that f'' underflows to 0
    assert bool((second[inside] > 0).all()) and bool((second[tail] < 0).all())


def _cases() -> list[tuple[str, Case, Curve]]:
    x = Dyn((4,))
    return [("Sin", Case("Sin", (x,)), SIN), ("Cos", Case("Cos", (x,)), COS),
            ("Gelu", GELU_CASES["none"], GELU), ("Gelu-tanh", GELU_CASES["tanh"], GELU)]


@pytest.mark.parametrize(("label", "case", "curve"), _cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_lines_without_the_box_dependent_points_are_caught(label: str, case: Case, curve: Curve) -> None:
    """Biases from the box ends alone (no roots of ``f' = a`` inside the box) cut the curve for
    slopes inside the span; with the points the lines hold at every sampled point."""
    node, _, _ = our_node(case)
    rule = REGISTRY[node.op].relaxation
    assert rule is not None and rule.span is not None
    lo, hi = _finite_boxes(0, rule, node)
    least, most = rule.span(node, lo, hi)
    a = least / 3 + most * 2 / 3
    ends_only = dataclasses.replace(curve, boxed=None)

    def lines(c: Curve) -> LinearBounds:
        return LinearBounds(a, line_bias(node, c, a, lo, hi, False), a, line_bias(node, c, a, lo, hi, True))

    assert violations(node, lines(ends_only), lo, hi) > 0
    assert violations(node, lines(curve), lo, hi) == 0


@pytest.mark.parametrize("op", ["Sin", "Cos"])
def test_periodic_lines_are_tight_on_narrow_boxes_and_wide_boxes_keep_intervals(op: str) -> None:
    """On a box of width 0.2 the relaxation's lines are within 0.01 of each other (constant
    bounds are about 0.2 apart); a box wider than :data:`PERIODIC_WIDTH` gets the interval
    bounds ``[-1, 1]`` with slope 0."""
    node, _, _ = our_node(Case(op, (Dyn((4,)),)))
    rule = REGISTRY[op].relaxation
    assert rule is not None
    lo = torch.tensor([[-3.0, 0.3, 1.4, 40.0]], dtype=torch.float64)
    hi = lo + 0.2
    lines = rule.rule(node, lo, hi, "adaptive", ())
    gap = (lines.upper_slope - lines.lower_slope) * hi + lines.upper_bias - lines.lower_bias
    gap = torch.maximum(gap, (lines.upper_slope - lines.lower_slope) * lo + lines.upper_bias - lines.lower_bias)
    assert bool((gap < 0.01).all())
    from verifier.ops.relax import relax

    wide = relax(REGISTRY[op], node, torch.tensor([[0.0]], dtype=torch.float64),
                 torch.tensor([[PERIODIC_WIDTH + 0.5]], dtype=torch.float64))
    assert wide is not None
    assert float(wide.lower_slope) == 0 and float(wide.upper_slope) == 0
    assert float(wide.lower_bias) <= -1 and float(wide.upper_bias) >= 1
