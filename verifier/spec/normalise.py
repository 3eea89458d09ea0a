"""From per-assert DNFs of literals to the grouped input regions of a :class:`Spec`.

Both VNN-LIB parsers (1.0 in ``vnnlib.py``, 2.0 in ``vnnlib2.py``) reduce every ``assert`` to a
DNF whose literals are input bounds (:class:`Bound`), rows over the flattened output
(:class:`Row`) or constants (``bool``). :class:`Normaliser` conjoins the asserts without
expanding the single-conjunct ones (a CIFAR file with 6144 bound asserts and one 9-way ``or``
gives 9 conjuncts, not a blow-up) and groups conjuncts with the same input box into one
:class:`Region`. Boxes are kept exactly as parsed, never widened.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from verifier.errors import SpecError
from verifier.spec.types import Clause, Region

MAX_CONJUNCTS = 100_000
"""Largest DNF (number of conjuncts) a parser will build before refusing the file."""


class Bound(NamedTuple):
    """``lower <= input[var] <= upper`` (one side may be infinite)."""

    var: int
    lower: float
    upper: float


class Row(NamedTuple):
    """``sum(coeffs[j] * y_j) <= d`` over the flattened output (``<`` when strict)."""

    coeffs: dict[int, float]
    d: float
    strict: bool
    exact: bool = False  # coeffs and d are the property's numbers exactly


Literal = Bound | Row | bool
Conjunct = list[Literal]
_BoxKey = tuple[tuple[int, float, float], ...]  # the entries that differ from the base box


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
        self.lower = [-math.inf] * num_inputs
        self.upper = [math.inf] * num_inputs

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
                if lit.lower > lower[lit.var]:
                    lower[lit.var] = lit.lower
                if lit.upper < upper[lit.var]:
                    upper[lit.var] = lit.upper
            elif isinstance(lit, Row):
                rows.append(lit)
            elif not lit:
                return None
        if any(lo > hi for lo, hi in zip(lower, upper, strict=True)):
            return None
        return rows

    def apply_extra(self, literals: itertools.chain[Literal]) -> tuple[_BoxKey, list[Row]] | None:
        """The box changes and rows of one disjunctive choice; None if it is empty/false."""
        changed: dict[int, tuple[float, float]] = {}
        rows: list[Row] = []
        for lit in literals:
            if isinstance(lit, Bound):
                lo, hi = changed.get(lit.var, (self.lower[lit.var], self.upper[lit.var]))
                changed[lit.var] = (max(lo, lit.lower), min(hi, lit.upper))
            elif isinstance(lit, Row):
                rows.append(lit)
            elif not lit:
                return None
        if any(lo > hi for lo, hi in changed.values()):
            return None
        key = tuple(
            (i, lo, hi)
            for i, (lo, hi) in sorted(changed.items())
            if (lo, hi) != (self.lower[i], self.upper[i])
        )
        return key, rows

    def region(self, key: _BoxKey, clauses: list[list[Row]]) -> Region:
        lower = np.array(self.lower, dtype=np.float64)
        upper = np.array(self.upper, dtype=np.float64)
        for i, lo, hi in key:
            lower[i], upper[i] = lo, hi
        for bounds, side in ((lower, "lower"), (upper, "upper")):
            unbounded = np.flatnonzero(np.isinf(bounds))
            if unbounded.size and self.search_radius is not None:
                bounds[unbounded] = np.sign(bounds[unbounded]) * self.search_radius
                self.truncated = True
            elif unbounded.size:
                name = self.input_name(int(unbounded[0]))
                raise SpecError(
                    f"{self.source}: {name} has no {side} bound"
                    f"{'' if not key else ' in one of the input regions'}; "
                    f"every input needs (assert (<= {name} ...)) and (assert (>= {name} ...))"
                )
        return Region(lower, upper, tuple(self.clause(rows) for rows in clauses))

    def clause(self, rows: list[Row]) -> Clause:
        matrix = np.zeros((len(rows), self.num_outputs), dtype=np.float64)
        for r, row in enumerate(rows):
            for j, a in row.coeffs.items():
                matrix[r, j] = a
        d = np.array([row.d for row in rows], dtype=np.float64)
        strict = np.array([row.strict for row in rows], dtype=bool)
        return Clause(matrix, d, strict, exact=all(row.exact for row in rows))
