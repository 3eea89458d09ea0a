"""One spec row minimised over the MILP program of :mod:`verifier.exact.milp`, for tables that
compare bounds (NOT certified; never used to claim ``unsat``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from verifier.bounds.table import BoundTable
from verifier.config import MilpConfig
from verifier.deadline import Deadline
from verifier.exact.encoding import encode
from verifier.exact.milp import MilpProgram


@dataclass(frozen=True)
class RowMinimum:
    """The minimum of one spec row over the encoding, as found by :func:`milp_row_minimum`.

    NOT certified: the figures rest on the solver's floating-point tolerances (see
    :func:`milp_row_minimum`); they are for comparison tables only.

    Attributes:
        lower: a lower bound of the row: the solver's dual bound (MILP) or the LP optimum
            (``relax``); ``-inf`` when the solve did not give one, ``inf`` when the solver
            claims the program infeasible (which a correct encoding never is).
        value: the objective at the best feasible point found (the LP optimum with ``relax``),
            None if none was found.
        status: the solver's status, short and snake case (``"optimal"``, ``"time_limit"``,
            ``"infeasible"``, ...), or ``"deadline"`` (nothing was built: the time had run
            out) or ``"infinite_band"`` (an output the row uses has no float-error bound).
        seconds: wall-clock time of the whole call (encoding included).
        binaries: binaries of the MILP (relaxed to ``[0, 1]`` with ``relax``); 0 when nothing
            was built.
    """

    lower: float
    value: float | None
    status: str
    seconds: float
    binaries: int


def milp_row_minimum(table: BoundTable, c: np.ndarray, d: float, config: MilpConfig,
                     deadline: Deadline | None = None, relax: bool = False) -> RowMinimum:
    """Minimises one spec row ``c @ y - d`` over the encoding of ``table``'s box, exactly (MILP)
    or over the LP relaxation (``relax``), for tables that compare bounds.

    The objective is ``c @ (E v + e) - d - |c| @ band`` on the outputs' expression ``E v + e``
    and float band of :func:`~verifier.exact.encoding.encode`, so at the program point of every
    float execution on the box it is at most the execution's row: the minimum is a lower
    bound of the row over the float model. With ``relax`` every binary of the big-M program
    becomes a continuous variable in ``[0, 1]``: the standard LP relaxation with CROWN's
    intermediate bounds (for ReLU, the triangle relaxation up to the big-M constants' relative
    ``1e-9`` widening; for maxima of more terms, the weaker big-M relaxation).

    These figures are NOT certified: the dual bound and the LP optimum are the solver's
    floating-point answers, right only up to its tolerances (feasibility ``config.tolerance``,
    MIP gaps ``mip_rel_gap = 0`` and HiGHS's default absolute gap). They are for comparison
    tables only; the pipeline never uses them to claim ``unsat`` (:func:`milp_check` does that,
    by infeasibility with a margin).

    Args:
        table: the bound table (CROWN) over the single input box (batch 1), as for :func:`milp_check`.
        c: ``(outputs,)`` row coefficients over the flattened outputs.
        d: the row's right-hand side.
        config: time limit, threads and tolerance; the solver must be ``"highs"`` (the dual
            bound is read from the in-process HiGHS model).
        deadline: the run's deadline (the solve stops at it, as does ``config.time_limit``).
        relax: solve the LP relaxation instead of the MILP.

    Returns:
        The row's lower bound, best value, solver status, time and binary count. When the
        solve did not finish, ``lower`` is the MILP's dual bound so far (possibly ``-inf``),
        or ``-inf`` for the LP.

    Raises:
        ValueError: ``config.solver`` is not ``"highs"``, or ``c`` does not match the outputs.
        ExactUnsupported: as for :func:`milp_check`.
    """
    start = time.monotonic()
    if config.solver != "highs":
        raise ValueError(f"milp_row_minimum needs the solver 'highs' (for its dual bound), not {config.solver!r}")
    limit = (deadline or Deadline(None)).sooner(config.time_limit)
    if limit.expired():
        return RowMinimum(-math.inf, None, "deadline", time.monotonic() - start, 0)
    model = MilpProgram(encode(table), config, relax)
    constant = model.set_row_objective(np.asarray(c, dtype=np.float64), float(d))
    lower: float
    value: float | None
    if not math.isfinite(constant):
        lower, value, status = -math.inf, None, "infinite_band"
    elif not model.problem.objective:  # no variable in the row: it is a constant
        lower, value, status = constant, constant, "optimal"
    elif limit.expired():
        lower, value, status = -math.inf, None, "deadline"
    else:
        lower, value, status = model.minimum(limit.remaining(), constant)
    return RowMinimum(lower, value, status, time.monotonic() - start, model.binaries)
