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


def best_multipliers(base: np.ndarray, base_const: float, per: np.ndarray, per_const: np.ndarray,
                     low: np.ndarray, high: np.ndarray, cap: float) -> np.ndarray | None:
    """The multipliers ``beta`` ``(K,)`` in ``[0, cap]`` that maximise ``min over x in [low,
    high]`` of ``(base + per.T @ beta) @ x + base_const + per_const @ beta`` (``base`` ``(n,)``,
    ``per`` ``(K, n)``, ``per_const`` ``(K,)``): a Lagrangian dual, solved as the linear program
    ``max base_const + per_const @ beta + low @ p - high @ q`` subject to ``p - q = base +
    per.T @ beta``, ``p, q >= 0`` (the minimum over a box of ``a @ x`` is the maximum of ``low
    @ p - high @ q`` over such a split of ``a``). None when HiGHS finds no optimum. The
    multipliers are a guide only: the caller bounds with them, certified."""
    import highspy

    highs_banner_to_stderr()
    k, n = per.shape
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = k + 2 * n, n
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.r_[per_const, low, -high]
    lp.col_lower_ = np.zeros(k + 2 * n)
    lp.col_upper_ = np.r_[np.full(k, cap), np.full(2 * n, highspy.kHighsInf)]
    lp.row_lower_ = lp.row_upper_ = base  # p - q - per.T @ beta = base
    matrix = np.hstack([-per.T, np.eye(n), -np.eye(n)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.arange(0, n * (k + 2 * n) + 1, k + 2 * n)
    lp.a_matrix_.index_ = np.tile(np.arange(k + 2 * n), n)
    lp.a_matrix_.value_ = matrix.reshape(-1)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.clip(np.asarray(solver.getSolution().col_value[:k], dtype=np.float64), 0.0, cap)
