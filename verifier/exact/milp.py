"""Exact check of one input region by mixed-integer linear programming (pulp: HiGHS or CBC).

The program of :mod:`verifier.exact.encoding` becomes a MILP over its variables (the inputs
and the outputs of undecided max relations, with their CROWN bounds):

- a :class:`~verifier.exact.encoding.MaxRow` ``Y = sign * y = max_i T_i (+- err)`` becomes
  ``Y >= T_i - err`` for every term and ``Y <= T_i + err + M_i (1 - z_i)`` with binaries
  ``sum z_i = 1`` (one binary ``z, 1 - z`` for two terms), where
  ``M_i = min(U_Y - L_i - err, max_{j != i} U_j - L_i)`` from the bounds ``[L_j, U_j]`` of
  the terms and ``U_Y`` of ``Y`` (for ReLU this is the usual ``y <= x - l (1 - z)``,
  ``y <= u z``; stable neurons are affine in the encoding and cost no binary);
- the disjunction of clauses takes one binary ``delta_c`` per clause that bounds have not
  refuted, ``sum delta_c >= 1``; row ``r`` of clause ``c``, on the outputs ``y = E v + e``
  known within ``band``, reads ``(C_r E v + C_r e - d_r - |C_r| band) / S_r <= t + M_r (1 -
  delta_c)`` with ``S_r = 1 + |d_r| + sum_j |C_rj| max|y_j|`` (so the scaled row of a float
  execution lies in ``[-1, 1]``); a single clause needs no binary;
- the objective minimises ``t`` over ``-1 <= t <= margin``: the optimum is the point that
  violates a clause most deeply, a candidate that survives float rounding when re-checked.

Margin rule, and why ``unsat`` is sound: by the encoding's contract every float32 execution on
the box that violates clause ``c`` is a feasible point with ``t <= 0``. MILP solvers decide
feasibility only up to their tolerances, so the clause rows are relaxed to
``(C_r y - d_r) / S_r <= margin`` (``margin`` relative to the row's scale ``S_r``, 1e-6 by
default) while the solver runs with feasibility and integrality tolerances ``tolerance``
(1e-9): the margin is at least 100 times (by default 1000 times) the tolerance, so a true
violation is a point with slack far above what the solver's rounding can lose. ``unsat`` is
claimed only when the solver reports the MILP *infeasible* (HiGHS ``kInfeasible``, CBC
``Infeasible``), or when bounds alone refute every clause with the same margin. Every other
outcome is ``unknown``, except that a solution with ``t < 0`` (optimal, or the best found
when the time ran out) is returned as a ``sat`` candidate. A candidate is NOT a verdict: the
caller re-checks it with onnxruntime (it may exploit the float-error terms or the margin).
The soundness of ``unsat`` thus rests on the encoding (see its docstring) and on the solver's
infeasibility claim being right up to its tolerances; the engine is cross-checked against the
exact-arithmetic SMT engine and sampling in the tests.

:func:`verifier.exact.milp_rows.milp_row_minimum` reuses the same program
(:class:`MilpProgram`) with one spec row as the objective: figures for comparison tables, NOT
certified and never used to claim ``unsat``.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pulp

from verifier.bounds.table import BoundTable
from verifier.config import MilpConfig, MilpSolver
from verifier.deadline import Deadline
from verifier.exact.encoding import Encoding, ExactOutcome, ExactUnsupported, IntegerRow, MaxRow, StepRow, encode
from verifier.exact.small_lp import highs_banner_to_stderr
from verifier.result import Status
from verifier.spec.types import Clause

_STRICT_GAP = 1e-6
"""Relative distance from 0 that the strict program asks of a step's input beyond its band."""
_BIG_M_SLACK = 1e-9
"""Relative widening of every big-M constant (they are computed in float64)."""


def _interval(coefs: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """Bounds of ``coefs @ y`` over the box, widened by a relative ``2**-40`` against rounding."""
    with np.errstate(invalid="ignore"):
        low = np.where(coefs > 0, coefs * lower, np.where(coefs < 0, coefs * upper, 0.0))
        high = np.where(coefs > 0, coefs * upper, np.where(coefs < 0, coefs * lower, 0.0))
    slack = 2.0**-40 * float(np.abs(low).sum() + np.abs(high).sum())
    lo, hi = float(low.sum()) - slack, float(high.sum()) + slack
    return (-math.inf if math.isnan(lo) else lo), (math.inf if math.isnan(hi) else hi)


def milp_check(table: BoundTable, clauses: Sequence[Clause], config: MilpConfig,
               deadline: Deadline | None = None, signs: Mapping[str, np.ndarray] | None = None) -> ExactOutcome:
    """Decides whether some input of ``table``'s box makes every row of some clause hold.

    Args:
        table: the bound table (CROWN) over the single input box (batch 1): the graph, the box, the bounds used
            for big-M constants and the float-error bounds.
        clauses: the disjunction ``C y <= d`` over the flattened outputs ``y``.
        config: solver, time limit, threads, margin and tolerance.
        deadline: the run's deadline (the solve stops at it).
        signs: sign constraints on intermediate values (name -> flat array of +1: ``v >= 0``,
            -1: ``v <= 0``, 0: none), e.g. the splits of a branch-and-bound domain. The check is
            then over the inputs of the box whose float execution satisfies them, and
            ``table``'s bounds need only hold there. Each is added as ``s * E v + band >= 0``
            on the value's expression ``E v`` and float band: implied by ``s * v >= 0``.

    Returns:
        ``unsat``: no float32 execution on the box violates a clause (see the module docstring
        for what this rests on); ``sat``: ``x`` is a candidate that the caller must re-check
        with onnxruntime; ``unknown``: anything else (time out, solver trouble, an optimum
        within the margin).

    Raises:
        ExactUnsupported: the network has an op without an exact encoding, a matrix over the
            size cap, or unbounded values where a big-M constant is needed.
    """
    start = time.monotonic()
    limit = (deadline or Deadline(None)).sooner(config.time_limit)
    if limit.expired():
        return ExactOutcome(Status.UNKNOWN, None, {"reason": "deadline"})
    enc = encode(table, keep=tuple(signs or ()))
    model = MilpProgram(enc, config)
    for name, sign in (signs or {}).items():
        model.add_signs(name, np.asarray(sign))
    if not model.add_clauses(clauses):
        stats = model.stats("bounds refute every clause", time.monotonic() - start, 0.0)
        return ExactOutcome(Status.UNSAT, None, stats)
    if limit.expired():
        return ExactOutcome(Status.UNKNOWN, None, model.stats("deadline", time.monotonic() - start, 0.0))
    outcome = model.solve(limit.remaining(), start)
    candidates = enc.steps or enc.integers  # a float32 candidate (see MilpProgram)
    if outcome.status is Status.SAT and candidates and not limit.expired():
        strict = MilpProgram(enc, config, strict=True)
        for name, sign in (signs or {}).items():
            strict.add_signs(name, np.asarray(sign))
        better = strict.solve(limit.remaining(), time.monotonic()) if strict.add_clauses(clauses) else None
        if better is not None and better.status is Status.SAT and better.x is not None:
            outcome = ExactOutcome(Status.SAT, better.x, {**outcome.stats, "strict_candidate": 1})
    return outcome


class MilpProgram:
    """The pulp problem built from an encoding; with ``relax`` every binary is a continuous
    variable in ``[0, 1]`` (the LP relaxation of the same big-M program); with ``strict`` the
    step relations take only their outer levels, each beyond its band (:meth:`step`): a
    program whose solutions are counterexamples up to the solver's tolerance, for candidates
    only (its infeasibility proves nothing)."""

    def __init__(self, enc: Encoding, config: MilpConfig, relax: bool = False, strict: bool = False) -> None:
        self.enc, self.config, self.relax, self.strict = enc, config, relax, strict
        self.problem = pulp.LpProblem("exact", pulp.LpMinimize)
        self.vars = [
            self.problem.add_variable(f"v{i}", None if math.isinf(lo) else lo, None if math.isinf(hi) else hi)
            for i, (lo, hi) in enumerate(zip(enc.lower, enc.upper, strict=True))
        ]
        self.binaries = 0
        self.rows = 0
        self.clauses_kept = 0
        for relation in enc.maxes:
            self.maximum(relation)
        for step in enc.steps:
            self.step(step)
        for row in enc.integers:
            self.integer(row)
        self.t = self.problem.add_variable("t", -1.0, config.margin)
        self.problem += pulp.LpAffineExpression([(self.t, 1.0)])

    def binary(self, name: str) -> pulp.LpVariable:
        """A new binary, or a continuous variable in ``[0, 1]`` when the program is relaxed."""
        if self.relax:
            return self.problem.add_variable(name, 0.0, 1.0)
        return self.problem.add_variable(name, cat=pulp.LpBinary)

    def expr(self, vars_: np.ndarray, coefs: np.ndarray, extra: Sequence[tuple[pulp.LpVariable, float]] = ()
             ) -> pulp.LpAffineExpression:
        """``sum coefs * v[vars] + sum(extra)``."""
        pairs = [(self.vars[int(v)], float(c)) for v, c in zip(vars_, coefs, strict=True) if c != 0.0]
        return pulp.LpAffineExpression(pairs + list(extra))

    def add(self, constraint: pulp.LpConstraint) -> None:
        self.problem += constraint
        self.rows += 1

    def maximum(self, rel: MaxRow) -> None:
        """Big-M form of ``|sign * y - max_i T_i| <= err`` (see the module docstring)."""
        if math.isinf(rel.err):
            return  # no information: y keeps only its bounds
        lo, hi = self.enc.lower[rel.out], self.enc.upper[rel.out]
        top = hi if rel.sign > 0 else -lo
        k = len(rel.consts)
        if k == 2:
            z = self.binary(f"z{self.binaries}")
            self.binaries += 1
            selectors: list[tuple[pulp.LpVariable, float, float]] = [(z, 1.0, 0.0), (z, -1.0, 1.0)]
        else:
            zs = [self.binary(f"z{self.binaries + i}") for i in range(k)]
            self.binaries += k
            self.add(pulp.LpAffineExpression([(z, 1.0) for z in zs]) == 1)
            selectors = [(z, 1.0, 0.0) for z in zs]
        term_vars = np.concatenate([[rel.out], rel.vars])
        for i in range(k):
            term_coefs = np.concatenate([[float(rel.sign)], -rel.coefs[i]])
            const = float(rel.consts[i])
            # Y - T_i >= -err
            self.add(self.expr(term_vars, term_coefs) >= const - rel.err)
            others = max(float(rel.highs[j]) for j in range(k) if j != i)
            big_m = max(0.0, min(top - float(rel.lows[i]) - rel.err, others - float(rel.lows[i])))
            if not math.isfinite(big_m):
                raise ExactUnsupported(f"node {rel.node!r}: unbounded values, no big-M constant for its "
                                       "piecewise-linear encoding")
            big_m = big_m * (1 + _BIG_M_SLACK) + _BIG_M_SLACK
            # Y - T_i - err <= M (1 - z_i), with z_i = scale * z + offset
            z, scale, offset = selectors[i]
            self.add(self.expr(term_vars, term_coefs, [(z, big_m * scale)])
                     <= const + rel.err + big_m * (1 - offset))

    def step(self, rel: StepRow) -> None:
        """Big-M form of a :class:`StepRow` with binaries ``p`` (the level above 0) and ``q``
        (below), ``p + q <= 1``, ``y = at + (above - at) p + (below - at) q``: ``E <= band``
        unless ``p``, ``E >= -band`` unless ``q`` (``E``: the input's expression)."""
        below, at, above = rel.levels
        p, q = self.binary(f"z{self.binaries}"), self.binary(f"z{self.binaries + 1}")
        self.binaries += 2
        self.add(pulp.LpAffineExpression([(p, 1.0), (q, 1.0)]) <= 1)
        self.add(pulp.LpAffineExpression([(self.vars[rel.out], 1.0), (p, at - above), (q, at - below)]) == at)
        if self.strict:  # p: E >= band + gap, q: E <= -band - gap, one of them
            gap = _STRICT_GAP * max(1.0, abs(rel.low), abs(rel.high))
            self.add(pulp.LpAffineExpression([(p, 1.0), (q, 1.0)]) >= 1)
            reach = max(rel.high, -rel.low) + rel.band + gap
            self.add(self.expr(rel.vars, rel.coefs, [(p, -reach)]) >= rel.band + gap - reach - rel.const)
            self.add(self.expr(rel.vars, rel.coefs, [(q, reach)]) <= reach - rel.band - gap - rel.const)
            return
        up = max(0.0, rel.high - rel.band) * (1 + _BIG_M_SLACK) + _BIG_M_SLACK
        down = max(0.0, -rel.band - rel.low) * (1 + _BIG_M_SLACK) + _BIG_M_SLACK
        self.add(self.expr(rel.vars, rel.coefs, [(p, -up)]) <= rel.band - rel.const)
        self.add(self.expr(rel.vars, rel.coefs, [(q, down)]) >= -rel.band - rel.const)

    def integer(self, rel: IntegerRow) -> None:
        """``offsets[0] - band <= E - y <= offsets[1] + band`` with ``y`` integral (continuous when
        relaxed); the strict program asks ``E - y`` to keep ``band`` plus a gap from each end."""
        y = self.vars[rel.out]
        if not self.relax:
            y.cat = pulp.LpInteger
        low, high = rel.offsets
        slack = rel.band
        if self.strict:
            slack = -rel.band - _STRICT_GAP * max(1.0, abs(self.enc.lower[rel.out]), abs(self.enc.upper[rel.out]))
        self.add(self.expr(rel.vars, rel.coefs, [(y, -1.0)]) >= low - slack - rel.const)
        self.add(self.expr(rel.vars, rel.coefs, [(y, -1.0)]) <= high + slack - rel.const)

    def add_signs(self, name: str, sign: np.ndarray) -> None:
        """``s_j * E_j v + band_j >= 0`` for every element ``j`` of value ``name`` with ``s_j != 0``.

        Raises:
            ExactUnsupported: ``name`` was not kept by the encoding (not a dynamic value)."""
        expr = self.enc.values.get(name)
        if expr is None:
            raise ExactUnsupported(f"no expression for value {name!r} to constrain")
        for j in np.flatnonzero(sign):
            band = float(expr.bands[j])
            if not math.isfinite(band):
                continue  # no information on the value: the constraint is dropped (a relaxation)
            s = float(sign[j])
            self.add(self.expr(expr.vars, s * expr.coefs[j]) >= -s * float(expr.consts[j]) - band)

    def add_clauses(self, clauses: Sequence[Clause]) -> bool:
        """Adds the disjunction (see the module docstring); False when bounds refute it all.

        Row ``r`` on the outputs ``y = E v + e +- band`` reads
        ``(C_r E v + C_r e - d_r - |C_r| band) / S_r <= t``: a float execution that satisfies
        ``C_r y <= d_r`` satisfies it with ``t = 0``."""
        outputs = self.enc.outputs
        assert outputs is not None
        y_lo, y_hi = self.enc.output_lower, self.enc.output_upper
        y_mag = np.maximum(np.abs(y_lo), np.abs(y_hi))
        kept: list[list[tuple[np.ndarray, float, float]]] = []
        for clause in clauses:
            rows = []
            low = -1.0
            for r in range(clause.num_rows):
                c = clause.C[r].astype(np.float64)
                d = float(clause.d[r])
                scale = 1.0 + abs(d) + float(np.abs(c) @ y_mag)
                if not math.isfinite(scale):
                    raise ExactUnsupported("unbounded network outputs: no scale for the clause rows")
                row_lo, row_hi = _interval(c, y_lo, y_hi)
                low = max(low, (row_lo - d) / scale)
                relaxed = d + float(np.abs(c) @ outputs.bands) - float(c @ outputs.consts)
                rows.append((c @ outputs.coefs / scale, relaxed / scale, (row_hi - d) / scale))
            if low <= self.config.margin:
                kept.append(rows)
        self.clauses_kept = len(kept)
        if not kept:
            return False
        deltas: list[pulp.LpVariable | None] = [None]
        if len(kept) > 1:
            deltas = [self.binary(f"clause{c}") for c in range(len(kept))]
            self.binaries += len(kept)
            self.add(pulp.LpAffineExpression([(d, 1.0) for d in deltas]) >= 1)
        for rows, delta in zip(kept, deltas, strict=True):
            for coefs, rhs, high in rows:
                if not math.isfinite(rhs):
                    continue  # an infinite band: the row may always hold
                extra: list[tuple[pulp.LpVariable, float]] = [(self.t, -1.0)]
                big_m = 0.0
                if delta is not None:
                    big_m = max(0.0, high + 1.0) * (1 + _BIG_M_SLACK) + _BIG_M_SLACK
                    extra.append((delta, big_m))
                self.add(self.expr(outputs.vars, coefs, extra) <= rhs + big_m)
        return True

    def set_row_objective(self, c: np.ndarray, d: float) -> float:
        """Makes ``c @ E v`` on the outputs' expression the objective (in place of ``t``, which
        then drops out of the solver's model) and returns its constant
        ``c @ e - d - |c| @ band`` (``-inf`` when a band the row uses is infinite).

        Raises:
            ValueError: ``c`` is not a vector over the flattened outputs."""
        outputs = self.enc.outputs
        assert outputs is not None
        if c.shape != outputs.consts.shape:
            raise ValueError(f"row of shape {c.shape} for {outputs.size} network outputs")
        used = c != 0.0
        constant = float(c[used] @ outputs.consts[used]) - d - float(np.abs(c[used]) @ outputs.bands[used])
        self.problem.setObjective(self.expr(outputs.vars, c @ outputs.coefs))
        return -math.inf if math.isnan(constant) else constant

    def minimum(self, seconds: float, constant: float) -> tuple[float, float | None, str]:
        """Solves the row objective with HiGHS: ``(lower, value, status)`` as in
        :class:`RowMinimum`, with ``constant`` added to the solver's figures."""
        import highspy

        model = self.run_highs(seconds, mip_rel_gap=0.0)
        raw = model.getModelStatus()
        info = model.getInfo()
        status = re.sub(r"(?<!^)(?=[A-Z])", "_", str(raw).rsplit(".", 1)[-1].removeprefix("k")).lower()
        value = None
        if info.primal_solution_status == 2:  # kSolutionStatusFeasible
            value = float(info.objective_function_value) + constant
        if raw == highspy.HighsModelStatus.kInfeasible:
            return math.inf, None, status
        if self.relax or self.binaries == 0:  # an LP: its optimum is the bound
            optimal = raw == highspy.HighsModelStatus.kOptimal
            return (value if optimal and value is not None else -math.inf), value, status
        bound = float(info.mip_dual_bound)  # -inf (or NaN) while HiGHS has none
        return (bound + constant if math.isfinite(bound) else -math.inf), value, status

    def stats(self, status: str, total: float, solve: float) -> dict[str, float | int | str]:
        return {"engine": f"milp-{self.config.solver}", "variables": len(self.vars) + 1 + self.binaries,
                "binaries": self.binaries, "constraints": self.rows, "seconds": total,
                "solve_seconds": solve, "solver_status": status}

    def solve(self, seconds: float, start: float) -> ExactOutcome:
        """Runs the solver and maps its answer (see the module docstring)."""
        began = time.monotonic()
        if self.config.solver is MilpSolver.HIGHS:
            infeasible, has_point, status = self._highs(seconds)
        else:
            infeasible, has_point, status = self._cbc(seconds)
        stats = self.stats(status, time.monotonic() - start, time.monotonic() - began)
        if infeasible:
            return ExactOutcome(Status.UNSAT, None, stats)
        if not has_point:
            return ExactOutcome(Status.UNKNOWN, None, stats)
        t = self.t.value()
        stats["objective"] = float("nan") if t is None else float(t)
        if t is None or t >= 0:
            stats["reason"] = "best point violates no clause outside the margin"
            return ExactOutcome(Status.UNKNOWN, None, stats)
        return ExactOutcome(Status.SAT, self.candidate(), stats)

    def run_highs(self, seconds: float, **options: float) -> Any:
        """Solves the problem with HiGHS (in-process) and returns the ``highspy.Highs`` model;
        ``options`` are extra HiGHS options (e.g. ``mip_rel_gap``)."""
        import highspy

        solver = pulp.HiGHS(msg=False, timeLimit=seconds, threads=self.config.threads,
                            mip_feasibility_tolerance=self.config.tolerance,
                            primal_feasibility_tolerance=self.config.tolerance, **options)
        highs_banner_to_stderr()
        # HiGHS keeps one thread pool per process, sized by the first solve; a later solve that
        # asks for another thread count then silently does nothing (status kNotset). Starting
        # from a fresh pool makes each solve independent of whatever ran HiGHS before it.
        highspy.Highs.resetGlobalScheduler(True)
        self.problem.solve(solver)
        return self.problem.solverModel

    def _highs(self, seconds: float) -> tuple[bool, bool, str]:
        import highspy

        model = self.run_highs(seconds)
        raw = model.getModelStatus()
        has_point = model.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
        infeasible = raw == highspy.HighsModelStatus.kInfeasible
        return infeasible, has_point and not infeasible, str(raw).rsplit(".", 1)[-1]

    def _cbc(self, seconds: float) -> tuple[bool, bool, str]:
        tol = self.config.tolerance
        with warnings.catch_warnings():  # deprecated in pulp 4; the bundled binary is the one we have
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=max(seconds, 0.01),
                                       threads=self.config.threads if self.config.threads > 1 else None,
                                       options=[f"primalTolerance {tol}", f"integerTolerance {tol}"])
        self.problem.solve(solver)
        status = self.problem.status
        infeasible = status == pulp.LpStatusInfeasible
        has_point = self.problem.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        return infeasible, has_point and not infeasible, f"{pulp.LpStatus[status]}/{self.problem.sol_status}"

    def candidate(self) -> np.ndarray:
        """The solution's inputs, clipped into their bounds (midpoint where a value is missing)."""
        lo = np.asarray(self.enc.lower)[self.enc.inputs]
        hi = np.asarray(self.enc.upper)[self.enc.inputs]
        values = [self.vars[int(v)].value() for v in self.enc.inputs]
        x = np.array([(a + b) / 2 if val is None else float(val) for val, a, b in zip(values, lo, hi, strict=True)])
        return np.clip(x, lo, hi)
