"""Typed verification results. VNN-COMP strings are produced only by the writers in cli.py."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Status(enum.StrEnum):
    """Outcome of a verification run (and of branch and bound and the exact engines on one
    region); a member equals its VNN-COMP string (``Status.SAT == "sat"``).

    SAT: a counterexample was found and re-checked with onnxruntime (property violated).
    UNSAT: the property was proven for every input of every region (property holds).
    UNKNOWN: the methods that ran could decide neither.
    TIMEOUT: the time limit ran out first.
    """

    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"
    TIMEOUT = "timeout"


@dataclass(frozen=True, eq=False)
class Counterexample:
    """A re-checked violating input and the outputs onnxruntime computed for it.

    Attributes:
        x: the flattened input in the model's input precision (C order), as float64 values.
        y: the flattened outputs onnxruntime returned for ``x``.
        region: index of the spec region whose box contains ``x``.
        clause: index of the clause (in that region) that ``y`` satisfies.
    """

    x: np.ndarray
    y: np.ndarray
    region: int
    clause: int


@dataclass(frozen=True, eq=False)
class Result:
    """What :func:`verifier.verify` returns."""

    status: Status
    time: float
    counterexample: Counterexample | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON form documented in the README (status, time, counterexample...)."""
        cex = None
        if self.counterexample is not None:
            cex = {"x": self.counterexample.x.tolist(), "y": self.counterexample.y.tolist()}
        return {
            "status": self.status.value,
            "time": round(self.time, 6),
            "counterexample": cex,
            "stats": self.stats,
            "error": None,
        }
