"""Exact VNN-LIB numbers and the directed rounding to float64 (``verifier.spec.exact``).

Oracles: Python's own ``Fraction`` parsing of decimal strings, the defining inequalities of
directed rounding checked in rationals with ``math.nextafter``, and, for rows, the implication
"real row holds => float row holds" evaluated exactly at random points.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.spec.exact import (
    MAX_BITS,
    MAX_DIGITS,
    MAX_EXPONENT,
    NumberRangeError,
    checked,
    float_row,
    parse_number,
    round_down,
    round_up,
    settle_rhs,
)

decimals = st.builds(
    lambda sign, whole, frac, exp: f"{sign}{whole}{'.' + frac if frac is not None else ''}{exp}",
    st.sampled_from(["", "-", "+"]),
    st.from_regex(r"[0-9]{1,30}", fullmatch=True),
    st.one_of(st.none(), st.from_regex(r"[0-9]{0,30}", fullmatch=True)),
    st.one_of(st.just(""), st.integers(-400, 400).map(lambda e: f"e{e}"),
              st.integers(-400, 400).map(lambda e: f"E{e:+d}")),
)


@settings(max_examples=300, deadline=None)
@given(decimals)
def test_literals_are_read_exactly(text: str) -> None:
    assert parse_number(text) == Fraction(text.lower())


@pytest.mark.parametrize(("text", "value"), [(".5", Fraction(1, 2)), ("5.", Fraction(5)), ("-0.0", Fraction(0)),
                                             ("1e-400", Fraction(1, 10**400)), ("007", Fraction(7))])
def test_literal_forms(text: str, value: Fraction) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["X_0", "1e", "e5", "1..2", "0x10", "nan", "inf", "-", "+.", "1.5.2", "1e5.5"])
def test_non_numbers_are_not_numbers(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize("text", [f"1e{MAX_EXPONENT + 1}", f"-1e-{MAX_EXPONENT + 1}", "1e999999999999",
                                  "1" * (MAX_DIGITS + 1), f"0.{'0' * (MAX_EXPONENT + 5)}1"])
def test_literals_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(NumberRangeError):
        parse_number(text)


def test_folding_beyond_the_size_limit_is_refused() -> None:
    big = parse_number(f"1e{MAX_EXPONENT}")
    assert big is not None
    value = Fraction(1)
    with pytest.raises(NumberRangeError):
        for _ in range(MAX_BITS):
            value = checked(value * big)


rationals = st.builds(Fraction, st.integers(-(10**40), 10**40), st.integers(1, 10**40))


@settings(max_examples=400, deadline=None)
@given(st.one_of(rationals, st.floats(allow_nan=False, allow_infinity=False).map(Fraction),
                 st.integers(-(10**400), 10**400).map(Fraction)))
def test_directed_rounding(value: Fraction) -> None:
    down, up = round_down(value), round_up(value)
    assert Fraction(down) <= value if math.isfinite(down) else down == -math.inf
    assert Fraction(up) >= value if math.isfinite(up) else up == math.inf
    if math.isfinite(down) and math.nextafter(down, math.inf) != math.inf:
        assert Fraction(math.nextafter(down, math.inf)) > value
    if math.isfinite(up) and math.nextafter(up, -math.inf) != -math.inf:
        assert Fraction(math.nextafter(up, -math.inf)) < value
    assert not (up == 0 and math.copysign(1, up) < 0)  # zero comes out as +0.0


def test_a_row_of_floats_is_kept() -> None:
    row = float_row({0: Fraction(-1), 3: Fraction(0.5)}, Fraction(0.25))
    assert row.exact and row.coeffs == {0: -1.0, 3: 0.5} and row.d == 0.25 and not row.error


def test_a_single_variable_row_is_divided_by_its_coefficient() -> None:
    """The issue's case: ``1e-200 * 1e-200 * Y_0 >= 1e-200 * 1e-200 * 3.99...`` is exactly
    ``-Y_0 <= -3.99...``, with the right-hand side rounded up."""
    tiny = Fraction(1, 10**400)
    row = float_row({0: -tiny}, -tiny * Fraction("3.991125645861615"))
    assert row.coeffs == {0: -1.0} and not row.error
    assert row.d == round_up(Fraction("-3.991125645861615"))


coefficients = st.one_of(rationals, st.integers(-5, 5).map(Fraction),
                         st.sampled_from([Fraction(1, 10**400), Fraction(10**300)]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 4), coefficients.filter(lambda a: a != 0), min_size=1, max_size=5),
       rationals, st.lists(st.floats(-1e6, 1e6), min_size=5, max_size=5), st.floats(1.0, 1e6))
def test_a_real_row_implies_its_settled_float_row(coeffs: dict[int, Fraction], d: Fraction, y: list[float],
                                                   bound: float) -> None:
    """Wherever ``|y_j| <= bound``: if the real row holds at ``y``, the float row holds too
    (evaluated exactly), and the real row holds exactly where ``y`` moved onto it."""
    row = float_row(coeffs, d)
    rhs = settle_rhs(row.rhs, row.error, {j: bound for j in range(5)}) if row.error else row.d
    assert math.isinf(row.d) or not row.error
    points = [[max(-bound, min(bound, v)) for v in y]]
    # a point on the real hyperplane (exactly, where the clipped solution stays in the box)
    j, a = next(iter(coeffs.items()))
    on = list(points[0])
    rest = sum((c * Fraction(on[k]) for k, c in coeffs.items() if k != j), Fraction(0))
    target = (d - rest) / a
    on[j] = round_down(target) if a > 0 else round_up(target)
    if abs(on[j]) <= bound:
        points.append(on)
    for point in points:
        real = sum((c * Fraction(point[k]) for k, c in coeffs.items()), Fraction(0)) <= d
        floated = sum((Fraction(c) * Fraction(point[k]) for k, c in row.coeffs.items()), Fraction(0)) <= Fraction(rhs) \
            if math.isfinite(rhs) else True
        assert floated or not real


def test_settling_with_an_unbounded_output_refutes_nothing() -> None:
    assert settle_rhs(Fraction(1), {0: 1e-17}, {0: math.inf}) == math.inf


def test_the_right_hand_side_is_rounded_so_that_the_real_row_implies_the_float_row() -> None:
    """``y0 + y1 <= 0.1`` at ``y0 = fl(0.1)`` (just above a tenth), ``y1 = -2**-57``: the sum is
    just below a tenth, so the real row holds; the float row must hold too (a right-hand side
    rounded down to the float below 0.1 would exclude this point)."""
    row = float_row({0: Fraction(1), 1: Fraction(1)}, Fraction(1, 10))
    y0, y1 = Fraction(0.1), Fraction(-(2.0**-57))
    assert y0 + y1 <= Fraction(1, 10)
    assert row.coeffs == {0: 1.0, 1: 1.0} and not row.error
    assert y0 + y1 <= Fraction(row.d)
