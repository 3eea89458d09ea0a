"""Types of a normalised property: input regions, each with an output constraint in DNF.

A VNN-LIB file states the *violation* of a property. After normalisation it is a list of
:class:`Region` objects; the property is violated (``sat``) iff for some region some input
``x`` in the region's box makes every row of at least one of the region's clauses hold:
``C @ y <= d`` (or ``<`` for rows marked strict), where ``y`` is the flattened network
output. It holds (``unsat``) iff no region has such an input.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from verifier.spec.exact import settle_rhs


@dataclass(frozen=True)
class RealRow:
    """One row ``sum_j coeffs[j] * y_j <= d`` (``<`` when strict) with the property's exact
    real numbers, for checking a counterexample without rounding."""

    coeffs: tuple[tuple[int, Fraction], ...]
    d: Fraction
    strict: bool

    def holds(self, y: np.ndarray) -> bool:
        """The row at the float values ``y``, evaluated exactly (False at a non-finite ``y_j``)."""
        if not all(np.isfinite(y[j]) for j, _ in self.coeffs):
            return False
        total = sum((a * Fraction(float(y[j])) for j, a in self.coeffs), Fraction(0))
        return total < self.d if self.strict else total <= self.d


@dataclass(frozen=True)
class UnsettledRow:
    """Row ``index`` of a clause whose float coefficients were rounded (see
    :func:`verifier.spec.exact.float_row`): its float right-hand side is ``+inf`` until
    :meth:`Clause.settled` covers the rounding with bounds on the outputs.

    Attributes:
        index: the row.
        rhs: the exact right-hand side of the scaled real row.
        error: ``(j, e)``: the float coefficient of ``y_j`` is within ``e`` of the real one.
    """

    index: int
    rhs: Fraction
    error: tuple[tuple[int, float], ...]


@dataclass(frozen=True, eq=False)
class Clause:
    """A conjunction of halfspaces over the flattened output ``y``: ``C @ y <= d``.

    Attributes:
        C: float64 array of shape ``(rows, num_outputs)``.
        d: float64 array of shape ``(rows,)``.
        strict: bool array of shape ``(rows,)``; True where the row is ``C_r @ y < d_r``.
        exact: True when every row of ``C`` and ``d`` is the property's row exactly (up to a
            positive factor), so that a counterexample may be checked on them
            (see :func:`verifier.witness.clause_holds`).
        real: the property's rows with their exact numbers (set when ``exact`` is False).
        unsettled: rows whose coefficients were rounded; their ``d`` is ``+inf`` (never
            refuted) until :meth:`settled` is called with bounds on the outputs.

    Soundness contract: whatever ``y`` satisfies the property's real row satisfies the float
    row ``C_r·y <= d_r`` (the rounding is directed, see :mod:`verifier.spec.exact`), so a
    bound method that refutes the float rows refutes the property.
    """

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray
    exact: bool = False
    real: tuple[RealRow, ...] = ()
    unsettled: tuple[UnsettledRow, ...] = ()

    def __post_init__(self) -> None:
        if self.C.ndim != 2 or self.d.shape != (self.C.shape[0],):
            raise ValueError(f"Clause shapes disagree: C {self.C.shape}, d {self.d.shape}")
        if self.strict.shape != self.d.shape:
            raise ValueError(f"Clause strict mask shape {self.strict.shape} != {self.d.shape}")

    @property
    def num_rows(self) -> int:
        return int(self.C.shape[0])

    def settled(self, magnitude: np.ndarray) -> Clause:
        """This clause with every unsettled row's right-hand side made finite, valid for all
        outputs with ``|y_j| <= magnitude[j]`` (see :func:`verifier.spec.exact.settle_rhs`)."""
        if not self.unsettled:
            return self
        d = self.d.copy()
        for row in self.unsettled:
            d[row.index] = settle_rhs(row.rhs, dict(row.error), {j: float(magnitude[j]) for j, _ in row.error})
        return replace(self, d=d, unsettled=())


@dataclass(frozen=True, eq=False)
class Region:
    """One input box with the disjunction of output clauses that violates the property there.

    Attributes:
        lower: float64 array ``(num_inputs,)``, lower bound of each flattened input.
        upper: float64 array ``(num_inputs,)``, upper bound; ``lower <= upper`` elementwise.
        clauses: the disjunction; an empty tuple never occurs (a region whose output part is
            trivially true gets one clause with zero rows).
        inner_lower, inner_upper: the largest float64 box inside the property's real box,
            where it differs from ``lower``/``upper`` (a bound that is not a float64 number:
            ``lower``/``upper`` are rounded outward, these inward); None otherwise.
    """

    lower: np.ndarray
    upper: np.ndarray
    clauses: tuple[Clause, ...]
    inner_lower: np.ndarray | None = None
    inner_upper: np.ndarray | None = None

    @property
    def witness_box(self) -> tuple[np.ndarray, np.ndarray]:
        """The box a counterexample must lie in: every float64 point of it is in the real box."""
        if self.inner_lower is None or self.inner_upper is None:
            return self.lower, self.upper
        return self.inner_lower, self.inner_upper

    @property
    def unsettled(self) -> bool:
        """True when some clause has rows that need output bounds (:meth:`Clause.settled`)."""
        return any(c.unsettled for c in self.clauses)

    def settled(self, magnitude: np.ndarray) -> Region:
        """This region with every clause :meth:`Clause.settled` for ``|y| <= magnitude``."""
        if not self.unsettled:
            return self
        return replace(self, clauses=tuple(c.settled(magnitude) for c in self.clauses))


@dataclass(frozen=True, eq=False)
class Spec:
    """A parsed VNN-LIB property.

    Attributes:
        num_inputs: number of declared ``X_i`` (indices 0..num_inputs-1, flattened input).
        num_outputs: number of declared ``Y_j`` (flattened output).
        regions: the input regions, in the order they appear in the file's DNF expansion.
        source: the file the spec came from, if any.
    """

    num_inputs: int
    num_outputs: int
    regions: tuple[Region, ...]
    source: Path | None = field(default=None)
