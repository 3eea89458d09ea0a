"""Curves whose critical points depend on the box: Sin and Cos (periodic) and Gelu (roots of
``f'(x) = a`` found by bisection), for :func:`verifier.ops.curves.curve_relaxation`.

Soundness, as for every curve: the extremum of ``g(x) = f(x) - a x`` on ``[l, u]`` lies at a
box end or where ``f'(x) = a``, and every such point of the box must be a candidate.

- ``cos(x - s)`` (Cos: ``s = 0``; Sin: ``s = pi/2``): ``f'(x) = a`` at ``s + t + 2 pi k`` with
  ``t`` in ``{asin(-a), pi - asin(-a)}``. On a box of width at most :data:`PERIODIC_WIDTH` the
  roots of each family lie among seven consecutive ``k`` from the one just below ``l`` (one
  to spare on each side against the rounding of ``k``). Wider boxes are outside the
  relaxation's domain: they keep the interval bounds.
- Gelu: ``f''`` changes sign only at ``±c`` (``c = sqrt 2`` for ``x Phi(x)``; about 1.4185 for the
  tanh form, found below by bisection; both checked by ``tests/ops/test_boxed_curves.py`` on a
  fine grid), so ``f'`` is monotone on ``(-inf, -c]``, ``[-c, c]`` and ``[c, inf)``: on each
  piece's part of the box, bisection brackets the one root (or ends at the piece's end where
  there is none, a harmless extra point). A point off by the bisection's last step moves ``g``
  only to second order, far inside the line fitter's margin.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from verifier.ir import Node
from verifier.ops.curves import BISECTION_STEPS, BoxPoints, Curve, Slopes, smooth_slopes
from verifier.ops.relax import Domain

PERIODIC_WIDTH = 6 * math.pi
"""Widest box on which Sin and Cos get lines (wider ones: interval bounds)."""
LINE_WIDTH = math.pi
"""Widest box on which the rule itself (CROWN) tries sloped lines for Sin and Cos; up to
:data:`PERIODIC_WIDTH` the optimisers search slopes in ``[-1, 1]`` from its constant ones."""

_TAU = 2 * math.pi
_K = math.sqrt(2 / math.pi)  # the tanh form: u = _K (x + _C x^3)
_C = 0.044715


def _narrow(node: Node, lo: Tensor, hi: Tensor) -> Tensor:
    return hi - lo <= PERIODIC_WIDTH


NARROW: Domain = _narrow
"""The boxes of width at most :data:`PERIODIC_WIDTH`."""


def _wave_points(shift: float) -> BoxPoints:
    """The roots of ``f'(x) = a`` for ``f(x) = cos(x - shift)`` near a box (see the module)."""

    def points(node: Node, a: Tensor, lo: Tensor, hi: Tensor) -> list[Tensor]:
        s = torch.asin((-a).clamp(-1.0, 1.0))  # |a| > 1 has no root: the clamped ones are extra points
        out = []
        for t in (s, math.pi - s):
            base = shift + t
            first = torch.floor((lo - base) / _TAU) - 1
            out += [base + _TAU * (first + j) for j in range(7)]
        return out

    return points


def _wave_slopes(shift: float) -> Slopes:
    """Chord and midpoint tangent on boxes of width at most :data:`LINE_WIDTH`; none wider (the
    rule keeps slope 0 there: on a wider box the line best at the midpoint is often worse
    than the constant bounds for the rows that use it)."""
    candidates = smooth_slopes(lambda node, x: -torch.sin(x - shift))

    def slopes(node: Node, lo: Tensor, hi: Tensor) -> list[Tensor]:
        narrow = hi - lo <= LINE_WIDTH
        return [torch.where(narrow, c, torch.nan) for c in candidates(node, lo, hi)]

    return slopes


def _unit_span(node: Node, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    return torch.full_like(lo, -1.0), torch.ones_like(hi)


SIN = Curve(lambda n, a: [], _wave_slopes(math.pi / 2), _wave_points(math.pi / 2), _unit_span)
COS = Curve(lambda n, a: [], _wave_slopes(0.0), _wave_points(0.0), _unit_span)


def _tanh_form(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``tanh(u)``, ``u'`` and ``u''`` of the tanh form at ``x``."""
    return torch.tanh(_K * (x + _C * x**3)), _K * (1 + 3 * _C * x * x), 6 * _K * _C * x


def gelu_slope(node: Node, x: Tensor) -> Tensor:
    """``f'(x)`` of the node's Gelu (``approximate`` none or tanh)."""
    if node.attr("approximate", "none") == "tanh":
        t, du, _ = _tanh_form(x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * torch.exp(-0.5 * x * x) / math.sqrt(_TAU)


def gelu_curvature_sign(node: Node, x: Tensor) -> Tensor:
    """A positive multiple of ``f''(x)`` (its sign is what the pieces rest on)."""
    if node.attr("approximate", "none") == "tanh":
        t, du, ddu = _tanh_form(x)
        return du - x * t * du * du + 0.5 * x * ddu  # f'' = (1 - t^2) times this
    return 2 - x * x  # f'' = phi(x) (2 - x^2)


def _tanh_inflection() -> float:
    """The positive root of the tanh form's ``f''`` (between 1 and 2), by float64 bisection."""
    node = Node("gelu", "Gelu", ("x",), ("y",), {"approximate": "tanh"})
    lo, hi = torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(gelu_curvature_sign(node, mid)) > 0 else (lo, mid)
    return float(lo)


GELU_INFLECTION = {"none": math.sqrt(2), "tanh": _tanh_inflection()}
"""``c``: ``f''`` is positive on ``(-c, c)`` and negative outside."""


def _root(node: Node, a: Tensor, left: Tensor, right: Tensor, rising: bool) -> Tensor:
    """Bisection for ``f'(x) = a`` on ``[left, right]`` where ``f'`` is monotone."""
    for _ in range(BISECTION_STEPS):
        mid = left / 2 + right / 2
        below = gelu_slope(node, mid) < a
        go_right = below if rising else ~below
        left, right = torch.where(go_right, mid, left), torch.where(go_right, right, mid)
    return left / 2 + right / 2


def _gelu_points(node: Node, a: Tensor, lo: Tensor, hi: Tensor) -> list[Tensor]:
    c = _gelu_breaks(node)[1]
    out = []
    for start, end, rising in ((-math.inf, -c, False), (-c, c, True), (c, math.inf, False)):
        left, right = lo.clamp(min=start), hi.clamp(max=end)
        root = _root(node, a, left, torch.maximum(left, right), rising)
        out.append(torch.where(left <= right, root, torch.nan))
    return out


def _gelu_breaks(node: Node) -> tuple[float, ...]:
    c = GELU_INFLECTION[str(node.attr("approximate", "none"))]
    return (-c, c)


GELU = Curve(lambda n, a: [], smooth_slopes(gelu_slope, _gelu_breaks), _gelu_points)
