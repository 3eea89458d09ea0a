"""Exact check of one input region by SMT over the reals (z3, linear real arithmetic).

The program of :mod:`verifier.exact.encoding` becomes a z3 formula over real variables, with
every float64 number converted to the exact rational it denotes (no rounding anywhere):

- variable bounds as linear inequalities;
- a :class:`~verifier.exact.encoding.MaxRow` ``|sign * y - max_i T_i| <= err`` as
  ``And(Y >= T_i - err for all i)`` and ``Or(Y <= T_i + err for some i)``, which is exactly
  that relation; no big-M constant is involved;
- the output property as ``Or`` over the clauses of ``And`` over their rows, on the output
  expressions ``E`` with bands ``b``: ``C_r E <= d_r + |C_r| b`` (``<`` for strict rows), the
  band sum formed in exact rationals. No solver margin is needed: z3 computes exactly.

z3's simplex works on exact rationals, whose sizes grow with every pivot; it decides networks
with a few tens of undecided neurons, and times out (``unknown``) beyond that.

Soundness: ``unsat`` from z3 is a proof that the program has no solution; by the encoding's
contract every float32 execution on the box that violates a clause would be one, so none
exists. ``sat`` gives a model, which is only a candidate: the model usually lies on the
boundary of a clause, where float rounding may move the network's output back across it, so
the engine then maximises the depth ``t`` by which the point violates every row of the
model's clause, ``C_r y <= d_r - t S_r`` (``S_r = 1 + |d_r| + sum_j |C_rj| max|y_j|``), with
the model's piece of every max fixed (a linear program, solved exactly by z3's optimiser);
when that depth is below 1e-5 it searches once more among all pieces for a point at least
that deep. It falls back to the model itself. The caller re-checks the candidate with onnxruntime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import z3

from verifier.bounds.table import BoundTable
from verifier.config import SmtConfig
from verifier.deadline import Deadline
from verifier.exact.encoding import Encoding, ExactOutcome, IntegerRow, MaxRow, StepRow, encode
from verifier.result import Status
from verifier.spec.types import Clause

SHALLOW = 1e-5
"""Depth (relative to the row scale) below which a counterexample is searched for again."""
_DEEPEN_SHARE = 0.2
"""Share of the remaining time the search for the deepest counterexample may use."""


def exact(value: float) -> z3.ArithRef:
    """The rational that the float64 ``value`` denotes, exactly."""
    return _rational(Fraction(float(value)))


def _rational(q: Fraction) -> z3.ArithRef:
    return z3.RealVal(f"{q.numerator}/{q.denominator}")


def smt_check(table: BoundTable, clauses: Sequence[Clause], config: SmtConfig,
              deadline: Deadline | None = None) -> ExactOutcome:
    """Decides whether some input of ``table``'s box makes every row of some clause hold.

    Args:
        table: the bound table (CROWN) over the single input box (batch 1): the graph, the box, the bounds of
            every value and the float-error bounds.
        clauses: the disjunction ``C y <= d`` (``<`` for strict rows) over the flattened
            outputs ``y``.
        config: the time limit.
        deadline: the run's deadline (the query stops at it).

    Returns:
        ``unsat``: no float32 execution on the box violates a clause (exact arithmetic, see
        the module docstring); ``sat``: ``x`` is a candidate that the caller must re-check
        with onnxruntime; ``unknown``: time out or z3 gave up.

    Raises:
        ExactUnsupported: the network has an op without an exact encoding or a matrix over
            the size cap.
    """
    start = time.monotonic()
    limit = (deadline or Deadline(None)).sooner(config.time_limit)
    if limit.expired():
        return ExactOutcome(Status.UNKNOWN, None, {"reason": "deadline"})
    enc = encode(table)
    query = _Query(enc)
    query.solver.add(query.disjunction(clauses))
    stats: dict[str, float | int | str] = {"engine": "smt-z3", "variables": enc.num_vars,
                                           "disjunctions": len(enc.maxes) + len(enc.steps) + (len(clauses) > 1),
                                           "integers": len(enc.integers),
                                           "constraints": len(query.solver.assertions())}
    if limit.expired():
        return ExactOutcome(Status.UNKNOWN, None, {**stats, "reason": "deadline"})
    began = time.monotonic()
    result = query.check(limit.remaining())
    stats["solve_seconds"] = time.monotonic() - began
    stats["solver_status"] = str(result)
    x = None
    if result == z3.sat:
        x = query.deepest(clauses, limit, stats)
    elif result != z3.sat and result != z3.unsat:
        stats["reason"] = query.solver.reason_unknown()
    stats["seconds"] = time.monotonic() - start
    status = Status.UNSAT if result == z3.unsat else Status.SAT if result == z3.sat else Status.UNKNOWN
    return ExactOutcome(status, x, stats)


class _Query:
    """The z3 solver holding the network's program."""

    def __init__(self, enc: Encoding) -> None:
        self.enc = enc
        self.v = [z3.Real(f"v{i}") for i in range(enc.num_vars)]
        self.solver = z3.Solver()
        self.choices: list[list[z3.BoolRef]] = []  # the disjuncts of each MaxRow
        for var, lo, hi in zip(self.v, enc.lower, enc.upper, strict=True):
            if math.isfinite(lo):
                self.solver.add(var >= exact(lo))
            if math.isfinite(hi):
                self.solver.add(var <= exact(hi))
        for relation in enc.maxes:
            self.maximum(relation)
        for step in enc.steps:
            self.step(step)
        for row in enc.integers:
            self.integer(row)
        assert enc.outputs is not None
        self.outputs = enc.outputs
        self.y = [self.sum(enc.outputs.vars, enc.outputs.coefs[j]) + exact(enc.outputs.consts[j])
                  for j in range(enc.outputs.size)]

    def sum(self, vars_: np.ndarray, coefs: np.ndarray) -> z3.ArithRef:
        """``sum coefs * v[vars]`` with exact coefficients."""
        terms = [self.v[int(j)] if c == 1.0 else exact(c) * self.v[int(j)]
                 for j, c in zip(vars_, coefs, strict=True) if c != 0.0]
        return z3.Sum(terms) if terms else z3.RealVal(0)

    def maximum(self, rel: MaxRow) -> None:
        """``|sign * y - max_i T_i| <= err`` as a conjunction and a disjunction."""
        if math.isinf(rel.err):
            return
        y = self.v[rel.out] if rel.sign > 0 else -self.v[rel.out]
        err = exact(rel.err)
        uppers = []
        for coefs, k in zip(rel.coefs, rel.consts, strict=True):
            term = self.sum(rel.vars, coefs) + exact(k)
            self.solver.add(y >= term - err)
            uppers.append(y <= term + err)
        self.solver.add(z3.Or(uppers))
        self.choices.append(uppers)

    def step(self, rel: StepRow) -> None:
        """A :class:`StepRow` as a disjunction of its three levels."""
        below, at, above = (exact(v) for v in rel.levels)
        e = self.sum(rel.vars, rel.coefs) + exact(rel.const)
        band, y = exact(rel.band), self.v[rel.out]
        self.solver.add(z3.Or(z3.And(y == above, e >= -band), z3.And(y == below, e <= band),
                              z3.And(y == at, e >= -band, e <= band)))

    def integer(self, rel: IntegerRow) -> None:
        """An :class:`IntegerRow`: ``y`` integral, ``E - y`` within the offsets widened by the band."""
        e = self.sum(rel.vars, rel.coefs) + exact(rel.const)
        band, y = exact(rel.band), self.v[rel.out]
        low, high = (exact(v) for v in rel.offsets)
        self.solver.add(z3.IsInt(y), e - y >= low - band, e - y <= high + band)

    def disjunction(self, clauses: Sequence[Clause]) -> z3.BoolRef:
        """``Or`` over the clauses of the conjunction of their rows."""
        return z3.Or([self.rows(c, None) for c in clauses]) if clauses else z3.BoolVal(False)

    def rows(self, clause: Clause, depth: z3.ArithRef | None) -> z3.BoolRef:
        """The rows of ``clause`` on the output expressions ``E`` with bands ``b``:
        ``C_r E <= d_r + |C_r| b`` (``<`` for a strict row) when ``depth`` is None, else
        ``C_r E + depth * S_r <= d_r + |C_r| b``. A row with an infinite band is left out."""
        y_mag = np.maximum(np.abs(self.enc.output_lower), np.abs(self.enc.output_upper))
        rows = []
        for r in range(clause.num_rows):
            nz = np.flatnonzero(clause.C[r])
            coefs = clause.C[r, nz].astype(np.float64)
            bands = self.outputs.bands[nz]
            if not np.all(np.isfinite(bands)):
                continue
            expr = (z3.Sum([exact(c) * self.y[int(j)] for j, c in zip(nz, coefs, strict=True)]) if nz.size
                    else z3.RealVal(0))
            d = float(clause.d[r])
            rhs = Fraction(d) + sum((Fraction(abs(float(c))) * Fraction(float(b))
                                     for c, b in zip(coefs, bands, strict=True)), Fraction(0))
            if depth is not None:
                scale = 1.0 + abs(d) + float(np.abs(coefs) @ y_mag[nz])
                rows.append(expr + (exact(scale) if math.isfinite(scale) else 1) * depth <= _rational(rhs))
            elif bool(clause.strict[r]):
                rows.append(expr < _rational(rhs))
            else:
                rows.append(expr <= _rational(rhs))
        return z3.And(rows) if rows else z3.BoolVal(True)

    def check(self, seconds: float) -> z3.CheckSatResult:
        self.solver.set("timeout", _milliseconds(seconds))
        return self.solver.check()

    def deepest(self, clauses: Sequence[Clause], limit: Deadline, stats: dict[str, float | int | str]
                ) -> np.ndarray:
        """Inputs of a deep counterexample after a ``sat`` check (see the module docstring):
        the deepest point of the model's pieces; when that is shallower than
        :data:`SHALLOW`, once more from a model at least that deep, if one exists."""
        x, depth = self.deepest_in_pieces(self.solver.model(), clauses, limit)
        if depth < SHALLOW and not limit.expired():
            self.solver.push()
            self.solver.add(z3.Or([self.rows(c, z3.RealVal(SHALLOW)) for c in clauses]))
            if self.check(min(limit.remaining(), max(1.0, _DEEPEN_SHARE * limit.remaining()))) == z3.sat:
                x2, depth2 = self.deepest_in_pieces(self.solver.model(), clauses, limit)
                if depth2 > depth:
                    x, depth = x2, depth2
            self.solver.pop()
        stats["depth"] = depth
        return x

    def deepest_in_pieces(self, model: z3.ModelRef, clauses: Sequence[Clause], limit: Deadline
                          ) -> tuple[np.ndarray, float]:
        """The point that violates the model's clause most deeply with the model's piece of
        every max fixed (a linear program, solved exactly by z3's optimiser): depth ``t``
        maximal with ``C_r y <= d_r - t S_r`` for every row. The model itself (depth -inf)
        when the optimiser gives no answer in time."""
        x = self.inputs(model)
        clause = next((c for c in clauses if z3.is_true(model.eval(self.rows(c, None), model_completion=True))), None)
        if clause is None or limit.expired():
            return x, -math.inf
        opt = z3.Optimize()
        opt.set("timeout", _milliseconds(min(limit.remaining(), max(1.0, _DEEPEN_SHARE * limit.remaining()))))
        opt.add(*self.solver.assertions())
        for literals in self.choices:
            opt.add(next(lit for lit in literals if z3.is_true(model.eval(lit, model_completion=True))))
        depth = z3.Real("depth")
        opt.add(depth <= 1, self.rows(clause, depth))
        opt.maximize(depth)
        if opt.check() != z3.sat:
            return x, -math.inf
        best = opt.model()
        return self.inputs(best), _to_float(best.eval(depth, model_completion=True))

    def inputs(self, model: z3.ModelRef) -> np.ndarray:
        """The model's input values as float64, clipped into their bounds."""
        values = [_to_float(model.eval(self.v[int(j)], model_completion=True)) for j in self.enc.inputs]
        lo = np.asarray(self.enc.lower)[self.enc.inputs]
        hi = np.asarray(self.enc.upper)[self.enc.inputs]
        x = np.where(np.isnan(values), (lo + hi) / 2, np.asarray(values))
        return np.clip(x, lo, hi)


def _milliseconds(seconds: float) -> int:
    """A z3 timeout: at least 1 ms, at most its largest value (no limit)."""
    return min(2**32 - 1, max(1, int(seconds * 1000))) if math.isfinite(seconds) else 2**32 - 1


def _to_float(value: z3.ExprRef) -> float:
    """A rational z3 value as float64 (NaN for anything else)."""
    return float(value.as_fraction()) if isinstance(value, z3.RatNumRef) else float("nan")
