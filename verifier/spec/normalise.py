"""From per-assert DNFs of literals to the grouped input regions of a :class:`Spec`.

Both VNN-LIB parsers (1.0 in ``vnnlib.py``, 2.0 in ``vnnlib2.py``) reduce every ``assert`` to a
DNF whose literals are input bounds (:class:`Bound`), rows over the flattened output
(:class:`Row`) or constants (``bool``). :class:`Normaliser` conjoins the asserts without
expanding the single-conjunct ones (a CIFAR file with 6144 bound asserts and one 9-way ``or``
gives 9 conjuncts, not a blow-up) and groups conjuncts with the same input box into one
:class:`Region`.

Literals hold exact rationals (:mod:`verifier.spec.exact`); the normaliser is the one place
where they become float64: boxes rounded outward (the inner box kept for counterexamples),
rows by :func:`~verifier.spec.exact.float_row`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from verifier.errors import SpecError
from verifier.spec.exact import bracket, float_row
from verifier.spec.types import Clause, RealRow, Region, UnsettledRow

MAX_CONJUNCTS = 100_000
"""Largest DNF (number of conjuncts) a parser will build before refusing the file."""


class Bound(NamedTuple):
    """``lower <= input[var] <= upper``, exactly; None for a side without a bound."""

    var: int
    lower: Fraction | None
    upper: Fraction | None


class Row(NamedTuple):
    """``sum(coeffs[j] * y_j) <= d`` over the flattened output (``<`` when strict), exactly."""

    coeffs: dict[int, Fraction]
    d: Fraction
    strict: bool


Literal = Bound | Row | bool
Conjunct = list[Literal]
_Side = Fraction | None
_BoxKey = tuple[tuple[int, _Side, _Side], ...]  # the entries that differ from the base box


def _tighter_lower(a: _Side, b: _Side) -> _Side:
    return a if b is None or (a is not None and a >= b) else b


def _tighter_upper(a: _Side, b: _Side) -> _Side:
    return a if b is None or (a is not None and a <= b) else b


def _rounded(side: _Side, missing: float) -> tuple[float, float]:
    """``(round_down, round_up)`` of a bound; ``(missing, missing)`` for a side without one."""
    return (missing, missing) if side is None else bracket(side)


def _empty(lo: _Side, hi: _Side) -> bool:
    return lo is not None and hi is not None and lo > hi


def _x_name(index: int) -> str:
    return f"X_{index}"


class Normaliser:
    """Turns the per-assert DNFs into grouped regions without expanding the base conjunct.

    Args:
        source: file name used in error messages.
        num_inputs, num_outputs: sizes of the flattened input and output.
        input_name: how an error message names flattened input ``i`` (``X_i`` by default).
        search_radius: None (default) to refuse an input without a lower or upper bound; else
            such a side is replaced by ``-r``/``+r`` for ``r = search_radius`` and
            :attr:`truncated` is set: the regions are then a *subset* of the property's, good
            for finding counterexamples but not for proofs.
    """

    def __init__(self, source: str, num_inputs: int, num_outputs: int,
                 input_name: Callable[[int], str] = _x_name, search_radius: float | None = None) -> None:
        self.search_radius = search_radius
        self.truncated = False
        self.source = source
        self.num_inputs = num_inputs
        self.num_outputs = num_outputs
        self.input_name = input_name
        self.lower: list[_Side] = [None] * num_inputs
        self.upper: list[_Side] = [None] * num_inputs
        self._base: tuple[np.ndarray, ...] | None = None

    def run(self, asserts: list[list[Conjunct]]) -> tuple[Region, ...]:
        """The regions of the conjunction of ``asserts`` (each a DNF; ``[]`` is false).

        Raises:
            SpecError: the DNF would exceed :data:`MAX_CONJUNCTS`, or an input of some region
                has no lower or upper bound.
        """
        base: Conjunct = []
        choices: list[list[Conjunct]] = []
        for dnf in asserts:
            if not dnf:
                return ()  # an assert that is false: the spec is trivially unsat
            if len(dnf) == 1:
                base.extend(dnf[0])
            else:
                choices.append(dnf)
        if math.prod(len(c) for c in choices) > MAX_CONJUNCTS:
            raise SpecError(
                f"{self.source}: unsupported: the DNF of the asserts exceeds "
                f"{MAX_CONJUNCTS} conjuncts; split the property into several files"
            )
        base_rows = self.apply_base(base)
        if base_rows is None:
            return ()
        groups: dict[_BoxKey, list[list[Row]]] = {}
        for combo in itertools.product(*choices):
            extra = self.apply_extra(itertools.chain.from_iterable(combo))
            if extra is not None:
                key, rows = extra
                groups.setdefault(key, []).append(base_rows + rows)
        return tuple(self.region(key, clauses) for key, clauses in groups.items())

    def apply_base(self, literals: Conjunct) -> list[Row] | None:
        """Tighten the base box and collect the base rows; None if the base is empty/false."""
        lower, upper, rows = self.lower, self.upper, []
        for lit in literals:
            if isinstance(lit, Bound):
                lower[lit.var] = _tighter_lower(lit.lower, lower[lit.var])
                upper[lit.var] = _tighter_upper(lit.upper, upper[lit.var])
            elif isinstance(lit, Row):
                rows.append(lit)
            elif not lit:
                return None
        if any(_empty(lo, hi) for lo, hi in zip(lower, upper, strict=True)):
            return None
        return rows

    def apply_extra(self, literals: itertools.chain[Literal]) -> tuple[_BoxKey, list[Row]] | None:
        """The box changes and rows of one disjunctive choice; None if it is empty/false."""
        changed: dict[int, tuple[_Side, _Side]] = {}
        rows: list[Row] = []
        for lit in literals:
            if isinstance(lit, Bound):
                lo, hi = changed.get(lit.var, (self.lower[lit.var], self.upper[lit.var]))
                changed[lit.var] = (_tighter_lower(lit.lower, lo), _tighter_upper(lit.upper, hi))
            elif isinstance(lit, Row):
                rows.append(lit)
            elif not lit:
                return None
        if any(_empty(lo, hi) for lo, hi in changed.values()):
            return None
        key = tuple(
            (i, lo, hi)
            for i, (lo, hi) in sorted(changed.items())
            if (lo, hi) != (self.lower[i], self.upper[i])
        )
        return key, rows

    def base_box(self) -> tuple[np.ndarray, ...]:
        """The base box rounded outward and inward: ``(lower, upper, inner_lower,
        inner_upper)``; a side without a bound is infinite."""
        if self._base is None:
            lower = [_rounded(v, -math.inf) for v in self.lower]
            upper = [_rounded(v, math.inf) for v in self.upper]
            self._base = (np.array([lo[0] for lo in lower]), np.array([hi[1] for hi in upper]),
                          np.array([lo[1] for lo in lower]), np.array([hi[0] for hi in upper]))
        return self._base

    def region(self, key: _BoxKey, clauses: list[list[Row]]) -> Region:
        """The region of one box (the base box changed by ``key``) and its clauses."""
        lower, upper, inner_lower, inner_upper = (a.copy() for a in self.base_box())
        for i, lo, hi in key:
            lower[i], inner_lower[i] = _rounded(lo, -math.inf)
            inner_upper[i], upper[i] = _rounded(hi, math.inf)
        for outer, inner, side in ((lower, inner_lower, "lower"), (upper, inner_upper, "upper")):
            unbounded = np.flatnonzero(np.isinf(outer))
            if unbounded.size and self.search_radius is not None:
                outer[unbounded] = inner[unbounded] = np.sign(outer[unbounded]) * self.search_radius
                self.truncated = True
            elif unbounded.size:
                self.refuse_unbounded(int(unbounded[0]), side, key)
        same = np.array_equal(lower, inner_lower) and np.array_equal(upper, inner_upper)
        return Region(lower, upper, tuple(self.clause(rows) for rows in clauses),
                      None if same else inner_lower, None if same else inner_upper)

    def refuse_unbounded(self, index: int, side: str, key: _BoxKey) -> None:
        """Raises the error for input ``index`` having no finite ``side`` bound."""
        name = self.input_name(index)
        sides = {i: (lo, hi) for i, lo, hi in key}
        value = sides.get(index, (self.lower[index], self.upper[index]))[0 if side == "lower" else 1]
        where = "" if not key else " in one of the input regions"
        if value is not None:
            raise SpecError(f"{self.source}: the {side} bound of {name}{where} is beyond the float64 range")
        raise SpecError(f"{self.source}: {name} has no {side} bound{where}; "
                        f"every input needs (assert (<= {name} ...)) and (assert (>= {name} ...))")

    def clause(self, rows: list[Row]) -> Clause:
        """The float clause of exact rows (see :func:`~verifier.spec.exact.float_row`)."""
        matrix = np.zeros((len(rows), self.num_outputs), dtype=np.float64)
        d = np.zeros(len(rows), dtype=np.float64)
        unsettled: list[UnsettledRow] = []
        exact = True
        for r, row in enumerate(rows):
            converted = float_row(row.coeffs, row.d)
            for j, a in converted.coeffs.items():
                matrix[r, j] = a
            d[r] = converted.d
            exact &= converted.exact
            if converted.error:
                unsettled.append(UnsettledRow(r, converted.rhs, tuple(sorted(converted.error.items()))))
        strict = np.array([row.strict for row in rows], dtype=bool)
        real = () if exact else tuple(RealRow(tuple(sorted(row.coeffs.items())), row.d, row.strict) for row in rows)
        return Clause(matrix, d, strict, exact, real, tuple(unsettled))
