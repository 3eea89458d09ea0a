"""The one entry point of the exact engines, for ``--method milp|smt`` and for the fallback
of branch and bound alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from verifier.bounds.table import BoundTable
from verifier.deadline import Deadline
from verifier.exact.encoding import ExactOutcome
from verifier.exact.milp import MilpConfig, milp_check
from verifier.exact.smt import SmtConfig, smt_check
from verifier.spec.types import Clause

MAX_SECONDS = 1e6
"""Longest solve handed to a solver (a run without a deadline still gives it a number)."""


def exact_check(table: BoundTable, clauses: Sequence[Clause], engine: MilpConfig | SmtConfig,
                deadline: Deadline) -> ExactOutcome:
    """Decides with the engine ``engine`` configures (MILP or SMT) whether some input of the
    table's single box makes every row of some clause hold, until ``deadline`` at the latest.

    Returns the engine's outcome: UNSAT is a proof for the float model; SAT carries a
    candidate the caller must re-check with onnxruntime; UNKNOWN otherwise.

    Raises:
        ExactUnsupported: the network has an op without an exact encoding (named).
    """
    limit = min(engine.time_limit, max(0.0, deadline.remaining()), MAX_SECONDS)
    if isinstance(engine, MilpConfig):
        return milp_check(table, clauses, replace(engine, time_limit=limit), deadline)
    return smt_check(table, clauses, replace(engine, time_limit=limit), deadline)
