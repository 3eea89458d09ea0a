"""Small dense linear programs solved in-process with HiGHS, and the one-time redirection of
HiGHS's start-up banner (it would corrupt ``--json`` output on standard output)."""

from __future__ import annotations

import functools
import os
import sys

import numpy as np


@functools.cache
def highs_banner_to_stderr() -> None:
    """HiGHS prints a banner on file descriptor 1 when the process creates its first solver
    object; that would corrupt ``--json`` output, so the first one is created here, once, with
    fd 1 pointing to stderr."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def deepest_step(jacobian: np.ndarray, rows: np.ndarray, low: np.ndarray, high: np.ndarray,
                 cap: float = 1.0) -> np.ndarray | None:
    """The step ``delta`` ``(n,)`` within ``[low, high]`` that maximises ``t`` subject to
    ``rows + jacobian @ delta + t <= 0`` (``jacobian`` ``(R, n)``, ``rows`` ``(R,)``; ``t <= cap``):
    the move that puts every row of a linear model deepest below zero. None when HiGHS finds no
    optimum (the model is only a guide: callers check the point it leads to)."""
    import highspy

    highs_banner_to_stderr()
    count, n = jacobian.shape
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + 1, count
    lp.col_cost_ = np.r_[np.zeros(n), -1.0]
    lp.col_lower_ = np.r_[low, -highspy.kHighsInf]
    lp.col_upper_ = np.r_[high, cap]
    lp.row_lower_ = np.full(count, -highspy.kHighsInf)
    lp.row_upper_ = -rows
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.arange(0, count * (n + 1) + 1, n + 1)
    lp.a_matrix_.index_ = np.tile(np.arange(n + 1), count)
    lp.a_matrix_.value_ = np.hstack([jacobian, np.ones((count, 1))]).reshape(-1)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.asarray(solver.getSolution().col_value[:n], dtype=np.float64)
