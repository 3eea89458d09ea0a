"""Free slopes (``Relaxation.line``/``span``): for ANY slope, the certified bias gives a line
that holds on the box, checked by sampling against the op's own forward for every op that
declares free slopes (the cases of :mod:`tests.ops.test_relax`, so a new op is covered), on
the boxes inside its domain (Log, Sqrt, Reciprocal); the boxes outside keep interval bounds.

Slopes are drawn inside the op's span, far outside it and of the wrong sign; a line rule that
forgets the interior critical points is caught; the bias's gradient in the slope is ``-x*`` at
the touching point (what alpha-CROWN follows).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.ops.elementwise_helpers import Case, Dyn, our_node
from tests.ops.test_relax import CASES, boxes, violations
from verifier.ir import Node
from verifier.ops.base import REGISTRY
from verifier.ops.curves import SIGMOID, line_bias
from verifier.ops.relax import LinearBounds, Relaxation, free_boxes

FREE = [c for c in CASES if (r := REGISTRY[c.op].relaxation) is not None and r.free_slopes]


def test_the_curves_have_free_slopes() -> None:
    assert {"Sigmoid", "Tanh", "Erf", "Exp", "Softplus", "Elu", "Abs", "Clip", "Log", "Sqrt",
            "Reciprocal", "Sin", "Cos", "Gelu"} <= {c.op for c in FREE}
    for op in ("Relu", "Sign"):  # a dedicated rule, interval bounds only
        relaxation = REGISTRY[op].relaxation
        assert relaxation is None or not relaxation.free_slopes


def _finite_boxes(seed: int, rule: Relaxation | None = None,
                  node: Node | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test boxes where free slopes apply (:func:`free_boxes`: finite, ``lo < hi``, inside
    the domain of ``node``'s op)."""
    lo, hi = boxes(seed)
    domain = None if rule is None else rule.domain
    keep = free_boxes(node or Node("n", "Identity", ("x",), ("y",)), lo, hi, domain)[0]
    return lo[keep].reshape(1, -1), hi[keep].reshape(1, -1)


def _slopes(rule: Relaxation, node, lo: torch.Tensor, hi: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Slopes inside the span, beyond it on both sides, and large ones of either sign."""
    assert rule.span is not None
    least, most = rule.span(node, lo, hi)
    assert bool((least <= most).all())
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(lo.shape, generator=gen, dtype=torch.float64)
    return [least + t * (most - least), least - 3 * t, most + 5 * t, -20 * t, 40 * t]


def _lines(rule: Relaxation, node, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> LinearBounds:
    assert rule.line is not None
    return LinearBounds(a, rule.line(node, a, lo, hi, False), a, rule.line(node, a, lo, hi, True))


@pytest.mark.parametrize("case", FREE, ids=lambda c: c.id)
def test_any_slope_gets_a_valid_line(case: Case) -> None:
    node, _, _ = our_node(case)
    rule = REGISTRY[node.op].relaxation
    assert rule is not None
    for seed in range(2):
        lo, hi = _finite_boxes(seed, rule, node)
        assert lo.numel() > 20
        for a in _slopes(rule, node, lo, hi, seed):
            lines = _lines(rule, node, a, lo, hi)
            finite = torch.isfinite(lines.lower_bias) & torch.isfinite(lines.upper_bias)
            assert float(finite.float().mean()) > 0.9  # infinite only where f overflows
            assert violations(node, lines, lo, hi, seed) == 0


def test_a_line_rule_without_the_critical_points_is_caught() -> None:
    """The sampling check can fail: biases from the box ends alone miss the S-curve's
    tangent points, for slopes between the ends' derivatives."""
    node, _, _ = our_node(Case("Sigmoid", (Dyn((4,)),)))
    ends_only = dataclasses.replace(SIGMOID, critical=lambda n, a: [])
    lo, hi = _finite_boxes(0)
    a = torch.full_like(lo, 0.2)
    def lines(curve):  # type: ignore[no-untyped-def]
        return LinearBounds(a, line_bias(node, curve, a, lo, hi, False), a, line_bias(node, curve, a, lo, hi, True))

    wrong, right = lines(ends_only), lines(SIGMOID)
    assert violations(node, wrong, lo, hi) > 0
    assert violations(node, right, lo, hi) == 0


def test_the_bias_gradient_is_minus_the_touching_point() -> None:
    node, _, _ = our_node(Case("Sigmoid", (Dyn((4,)),)))
    lo = torch.tensor([[-4.0, -1.0, 0.5]], dtype=torch.float64)
    hi = torch.tensor([[4.0, 3.0, 2.0]], dtype=torch.float64)
    a = torch.tensor([[0.1, 0.15, 0.05]], dtype=torch.float64, requires_grad=True)
    bias = line_bias(node, SIGMOID, a, lo, hi, upper=True)
    (grad,) = torch.autograd.grad(bias.sum(), a)
    step = 1e-6
    with torch.no_grad():
        ahead = line_bias(node, SIGMOID, a + step, lo, hi, upper=True)
        behind = line_bias(node, SIGMOID, a - step, lo, hi, upper=True)
    torch.testing.assert_close(grad, (ahead - behind) / (2 * step), rtol=1e-4, atol=1e-6)
