"""Types of a normalised property: input regions, each with an output constraint in DNF.

A VNN-LIB file states the *violation* of a property. After normalisation it is a list of
:class:`Region` objects; the property is violated (``sat``) iff for some region some input
``x`` in the region's box makes every row of at least one of the region's clauses hold:
``C @ y <= d`` (or ``<`` for rows marked strict), where ``y`` is the flattened network
output. It holds (``unsat``) iff no region has such an input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class Clause:
    """A conjunction of halfspaces over the flattened output ``y``: ``C @ y <= d``.

    Attributes:
        C: float64 array of shape ``(rows, num_outputs)``.
        d: float64 array of shape ``(rows,)``.
        strict: bool array of shape ``(rows,)``; True where the row is ``C_r @ y < d_r``.
        exact: True when ``C`` and ``d`` equal the property's numbers exactly (every literal
            and every constant product is a float64 value), so that a counterexample may be
            checked in exact rational arithmetic (see :func:`verifier.witness.clause_holds`).
    """

    C: np.ndarray
    d: np.ndarray
    strict: np.ndarray
    exact: bool = False

    def __post_init__(self) -> None:
        if self.C.ndim != 2 or self.d.shape != (self.C.shape[0],):
            raise ValueError(f"Clause shapes disagree: C {self.C.shape}, d {self.d.shape}")
        if self.strict.shape != self.d.shape:
            raise ValueError(f"Clause strict mask shape {self.strict.shape} != {self.d.shape}")

    @property
    def num_rows(self) -> int:
        return int(self.C.shape[0])


@dataclass(frozen=True, eq=False)
class Region:
    """One input box with the disjunction of output clauses that violates the property there.

    Attributes:
        lower: float64 array ``(num_inputs,)``, lower bound of each flattened input.
        upper: float64 array ``(num_inputs,)``, upper bound; ``lower <= upper`` elementwise.
        clauses: the disjunction; an empty tuple never occurs (a region whose output part is
            trivially true gets one clause with zero rows).
    """

    lower: np.ndarray
    upper: np.ndarray
    clauses: tuple[Clause, ...]


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
