"""Exact constant arithmetic for both VNN-LIB versions, and the one step where it becomes float.

VNN-LIB's numbers are real numbers. Both parsers read every literal as an exact rational
(:func:`parse_number`) and fold constant arithmetic exactly (:func:`checked` bounds the size of
the results, so a hostile file cannot make the arithmetic slow). Nothing is rounded until the
normaliser builds the float64 boxes and rows the bound methods work with, and there every
rounding is directed so that a proof about the float numbers is a proof about the real ones:

* boxes are rounded **outward** (:func:`round_down` for lower bounds, :func:`round_up` for
  upper bounds), so the float box contains the real box; the largest float box *inside* the
  real box is kept too, for checking counterexamples (:class:`~verifier.spec.types.Region`);
* rows ``c·y <= d`` are rounded **towards refutation being harder**, i.e. the float row is
  implied by the real one, see :func:`float_row`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

MAX_EXPONENT = 1000
"""Largest decimal exponent (in magnitude) of a literal, after moving its point: nonzero
numbers whose magnitude lies outside ``1e-1000 .. 9.99e1000`` are refused."""

MAX_DIGITS = 4000
"""Longest digit string of a literal."""

MAX_BITS = 20_000
"""Largest numerator or denominator (in bits, about 6000 decimal digits) of a folded constant."""

_NUMBER = re.compile(r"([-+]?)(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([-+]?\d+))?")


class NumberRangeError(ValueError):
    """A literal or a folded constant outside the supported range (the message says which)."""


def parse_number(text: str) -> Fraction | None:
    """The exact value of a decimal literal (``3``, ``-0.25``, ``.5``, ``5.``, ``1e-5``), or
    None when ``text`` is not one.

    Raises:
        NumberRangeError: more than :data:`MAX_DIGITS` digits, or a value whose magnitude is
            beyond ``10**MAX_EXPONENT`` (or a nonzero one below ``10**-MAX_EXPONENT``).
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    sign, whole, fraction, bare, exponent = match.groups()
    digits = (whole or "") + (fraction or bare or "")
    if len(digits) > MAX_DIGITS:
        raise NumberRangeError(f"number with more than {MAX_DIGITS} digits")
    if exponent is not None and len(exponent.lstrip("+-0")) > 8:
        raise NumberRangeError(f"number out of the supported range 1e-{MAX_EXPONENT} to 1e{MAX_EXPONENT}")
    scale = (int(exponent) if exponent else 0) - len(fraction or bare or "")
    mantissa = int(digits)
    if mantissa == 0:
        return Fraction(0)
    magnitude = scale + len(digits.lstrip("0"))  # the value lies in [10**(magnitude-1), 10**magnitude)
    if not -MAX_EXPONENT <= magnitude - 1 <= MAX_EXPONENT:
        raise NumberRangeError(f"number out of the supported range 1e-{MAX_EXPONENT} to 1e{MAX_EXPONENT}")
    value = Fraction(mantissa * 10**scale) if scale >= 0 else Fraction(mantissa, 10**-scale)
    return -value if sign == "-" else value


def numeric_literal(text: str) -> Fraction | None:
    """:func:`parse_number`, or None for a token that does not look like a number at all.

    Raises:
        NumberRangeError: a number out of range, or a token that starts like a number (a
            digit or a point, maybe after a sign) but is not one ("bad number").
    """
    value = parse_number(text)
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    if value is None and unsigned[:1] in tuple("0123456789."):
        raise NumberRangeError("bad number")
    return value


def checked(value: Fraction) -> Fraction:
    """``value`` itself, after checking that its numerator and denominator stay below
    :data:`MAX_BITS` bits (so exact folding stays cheap).

    Raises:
        NumberRangeError: the constant is too large or too finely divided.
    """
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise NumberRangeError(f"constant arithmetic beyond {MAX_BITS}-bit numerators or denominators "
                               f"(about 10^{int(MAX_BITS * math.log10(2))})")
    return value


Key = TypeVar("Key", bound=Hashable)
Linear = tuple[dict[Key, Fraction], Fraction]
"""A linear term: coefficient per variable, and a constant."""


def combine(terms: Sequence[Linear[Key]], scales: Sequence[Fraction]) -> Linear[Key]:
    """``sum(scale * term)`` over linear terms, exactly.

    Raises:
        NumberRangeError: a coefficient or the constant grows beyond :data:`MAX_BITS`.
    """
    coeffs: dict[Key, Fraction] = {}
    constant = Fraction(0)
    for (term_coeffs, value), scale in zip(terms, scales, strict=True):
        for key, a in term_coeffs.items():
            coeffs[key] = checked(coeffs.get(key, 0) + scale * a)
        if value:
            constant = checked(constant + scale * value)
    return coeffs, constant


def nearest(value: Fraction) -> float:
    """The float64 nearest to ``value`` (``±inf`` beyond the float64 range)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def bracket(value: Fraction) -> tuple[float, float]:
    """``(round_down(value), round_up(value))`` from one conversion: equal when ``value`` is a
    float64, else the two floats around it (``±inf`` beyond the float64 range)."""
    f = nearest(value)
    if math.isinf(f):
        largest = math.nextafter(math.inf, 0.0)
        return (largest, f) if f > 0 else (f, -largest)
    f += 0.0  # a zero comes out as +0.0
    numerator, denominator = f.as_integer_ratio()
    difference = numerator * value.denominator - value.numerator * denominator  # sign of f - value
    if difference == 0:
        return f, f
    if difference < 0:
        return f, math.nextafter(f, math.inf)
    return math.nextafter(f, -math.inf), f


def round_down(value: Fraction) -> float:
    """The largest float64 ``<= value`` (``-inf`` below the float64 range)."""
    return bracket(value)[0]


def round_up(value: Fraction) -> float:
    """The smallest float64 ``>= value`` (``inf`` above the float64 range)."""
    return bracket(value)[1]


def is_float(value: Fraction) -> bool:
    """True when ``value`` is exactly a finite float64."""
    f = nearest(value)
    return math.isfinite(f) and Fraction(f) == value


@dataclass(frozen=True)
class FloatRow:
    """The float64 row a bound method works with, for one real row ``c·y <= d``.

    Attributes:
        coeffs: float coefficient per output index (no zeros).
        rhs: the exact right-hand side of the scaled real row (``coeffs`` before rounding).
        d: the float right-hand side; ``+inf`` while :attr:`error` is nonzero (the row cannot
            be used before :func:`settle_rhs` has accounted for the coefficient rounding).
        error: upper bound of ``|c_j - coeffs_j|`` per output index, where a coefficient
            is not a float (empty when every coefficient is exact).
        exact: True when ``coeffs·y <= d`` is the real row times a positive number (so a
            counterexample may be checked on the float row itself).
    """

    coeffs: dict[int, float]
    rhs: Fraction
    d: float
    error: dict[int, float]
    exact: bool


def float_row(coeffs: dict[int, Fraction], d: Fraction) -> FloatRow:
    """The float row for the real row ``coeffs·y <= d`` (``<`` alike; no zero coefficients).

    A row whose numbers are all floats is kept as it is. Otherwise it is scaled by a positive
    number first: by ``1/|c|`` when it has one variable (giving ``±y_j <= d/|c|``), else by the
    power of two that brings its largest coefficient into ``[1, 2)``. Then the right-hand side
    is rounded up (a real ``y`` with ``c·y <= d`` satisfies the float row); coefficients that
    are still not floats are rounded to nearest and their rounding error recorded, to be
    covered by :func:`settle_rhs` once bounds on ``|y|`` are known.
    """
    if all(is_float(a) for a in coeffs.values()) and is_float(d):
        return FloatRow({j: float(a) for j, a in coeffs.items()}, d, float(d), {}, True)
    if len(coeffs) == 1:
        ((j, a),) = coeffs.items()
        single = d / abs(a)
        return FloatRow({j: 1.0 if a > 0 else -1.0}, single, round_up(single), {}, is_float(single))
    largest = max(abs(a) for a in coeffs.values())
    shift = -math.floor(math.log2(largest.numerator) - math.log2(largest.denominator))
    scale = Fraction(2) ** shift
    while largest * scale >= 2:
        scale /= 2
    while largest * scale < 1:
        scale *= 2
    scaled = {j: a * scale for j, a in coeffs.items()}
    rounded = {j: nearest(a) for j, a in scaled.items()}
    error = {j: round_up(abs(scaled[j] - Fraction(f))) for j, f in rounded.items() if Fraction(f) != scaled[j]}
    rhs = d * scale
    exact = not error and is_float(rhs)
    coefficients = {j: f for j, f in rounded.items() if f != 0.0}
    return FloatRow(coefficients, rhs, math.inf if error else round_up(rhs), error, exact)


def settle_rhs(d: Fraction, error: dict[int, float], magnitude: dict[int, float]) -> float:
    """The float right-hand side of a row whose rounded coefficients differ from the real ones
    by at most ``error`` (see :func:`float_row`), valid wherever ``|y_j| <= magnitude[j]``:
    ``round_up(d + sum_j error_j * magnitude_j)``, computed exactly. A real ``y`` in that box
    with ``c·y <= d`` then satisfies the float row, because
    ``c'·y = c·y + (c' - c)·y <= d + sum_j error_j |y_j|``. Infinite magnitudes give ``inf``
    (a row that is never refuted).
    """
    total = d
    for j, e in error.items():
        m = magnitude[j]
        if not math.isfinite(m):
            return math.inf
        total += Fraction(e) * Fraction(m)
    return round_up(total)
