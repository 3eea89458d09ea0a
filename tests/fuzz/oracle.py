"""Independent oracles for the verdicts of fuzz cases: z3 for the VNN-LIB 1.0 text, onnxruntime
for the network, exact rationals throughout.

The property text is read by z3 (``z3.parse_smt2_string``), not by the verifier's parser. SMT-LIB
has no exponent notation and no negative literals, so :func:`smt_text` first retokenises the
file with its own small scanner and rewrites every number token (``1e-5``, ``.5``, ``5.``,
``-3``) into an exact SMT-LIB rational ``(/ N.0 D.0)``; comments go, a leading byte-order mark
goes. Inputs and outputs enter as the exact rational values of the floats the network used.

* ``sat``: the counterexample's ``x`` is run through onnxruntime on the model file; the
  outputs must match the reported ``y`` closely, and z3 must find the whole property
  satisfiable with ``X_i = x_i`` and ``Y_j = y_j`` (onnxruntime's outputs, then the reported).
* ``unsat``: if z3 finds the property unsatisfiable even with free outputs, that settles it.
  Otherwise the input box (z3's optimum of each ``X_i`` over the property) is sampled (corners,
  centre and random float32 points), each point run through onnxruntime, and the property
  evaluated exactly on ``(x, y)``: no point may satisfy it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import z3

ort.set_default_logger_severity(3)

_TOKEN = re.compile(r';[^\n]*|[()]|\|[^|]*\||"(?:[^"]|"")*"|[^\s();"|]+')
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
MAX_DEPTH = 400
"""Deeper property texts are not handed to z3 (its parser recurses)."""
SAMPLES = 256
Y_RTOL, Y_ATOL = 1e-5, 1e-6


@dataclass(frozen=True)
class Verdict:
    """The oracle's finding on one verdict: ``checked`` (confirmed), ``failed`` or ``none``."""

    status: str
    detail: str = ""


def smt_text(text: str) -> str | None:
    """The property as SMT-LIB with exact rationals, or None when it is too deep for z3."""
    text = text.removeprefix("\ufeff")
    out, depth = [], 0
    for token in _TOKEN.findall(text):
        if token.startswith(";"):
            continue
        depth += token == "("
        depth -= token == ")"
        if depth > MAX_DEPTH:
            return None
        out.append(_rational(token) if _NUMBER.fullmatch(token) else token)
    return " ".join(out)


def _rational(token: str) -> str:
    """An SMT-LIB term with the exact value of a decimal number token."""
    value = Fraction(token)
    body = f"(/ {abs(value.numerator)}.0 {value.denominator}.0)"
    return f"(- {body})" if value < 0 else body


def exact(values: Any) -> list[Fraction]:
    """Exact rationals of floats."""
    return [Fraction(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


class SpecOracle:
    """The property of one VNN-LIB 1.0 file, read by z3 in a context of its own."""

    def __init__(self, text: str) -> None:
        """Reads ``text`` (VNN-LIB 1.0) with z3; raises when z3 cannot read it."""
        source = smt_text(text)
        if source is None:
            raise ValueError("nested too deeply for the oracle")
        self.ctx = z3.Context()
        self.assertions = list(z3.parse_smt2_string(source, ctx=self.ctx))
        self.formula = z3.And(self.assertions) if self.assertions else z3.BoolVal(True, self.ctx)
        self._compiled: Callable[[dict[str, Fraction]], Any] | None = None

    def var(self, name: str) -> z3.ArithRef:
        """The real constant ``name`` in this context."""
        return z3.Real(name, self.ctx)

    def satisfiable(self, fixed: dict[str, Fraction] | None = None, timeout_ms: int = 20_000) -> bool | None:
        """Is the property satisfiable (with some variables fixed)? None when z3 gives up."""
        solver = z3.Solver(ctx=self.ctx)
        solver.set("timeout", timeout_ms)
        solver.add(self.formula)
        for name, value in (fixed or {}).items():
            solver.add(self.var(name) == z3.RealVal(value, self.ctx))
        result = solver.check()
        return None if result == z3.unknown else result == z3.sat

    def _solver(self, fixed: dict[str, Fraction], optimise: bool = False, timeout_ms: int = 10_000) -> Any:
        """A z3 solver (or optimiser) holding the property and the ``fixed`` values."""
        solver = z3.Optimize(ctx=self.ctx) if optimise else z3.Solver(ctx=self.ctx)
        solver.set("timeout", timeout_ms)
        solver.add(self.formula)
        for name, value in fixed.items():
            solver.add(self.var(name) == z3.RealVal(value, self.ctx))
        return solver

    def extent(self, name: str, fixed: dict[str, Fraction] | None = None) -> tuple[Fraction, Fraction] | None:
        """The exact minimum and maximum of ``name`` over the property (some variables fixed);
        None if unbounded, infeasible or unknown."""
        ends = []
        for sense in ("min", "max"):
            opt = self._solver(fixed or {}, optimise=True)
            handle = opt.minimize(self.var(name)) if sense == "min" else opt.maximize(self.var(name))
            if opt.check() != z3.sat:
                return None
            value = _numeral((opt.lower if sense == "min" else opt.upper)(handle))
            if value is None:
                return None  # unbounded or a strict optimum
            ends.append(value)
        return ends[0], ends[1]

    def input_box(self, n_inputs: int) -> list[tuple[Fraction, Fraction]] | None:
        """Each ``X_i``'s exact minimum and maximum over the property (one z3 call with
        independent objectives); None if one is unbounded or not found."""
        opt = self._solver({}, optimise=True)
        opt.set(priority="box")
        handles = [(opt.minimize(self.var(f"X_{i}")), opt.maximize(self.var(f"X_{i}"))) for i in range(n_inputs)]
        if opt.check() != z3.sat:
            return None
        box = [(_numeral(opt.lower(low)), _numeral(opt.upper(high))) for low, high in handles]
        if any(lo is None or hi is None for lo, hi in box):
            return None
        return box  # type: ignore[return-value]

    def solve(self, fixed: dict[str, Fraction], within: dict[str, tuple[Fraction, Fraction]],
              prefer: dict[str, Fraction]) -> dict[str, Fraction] | None:
        r"""A model with ``fixed`` values, others strictly inside ``within`` and as many as
        possible equal to their ``prefer``\ red values; None if there is none."""
        solver = self._solver(fixed, optimise=True)
        for name, (lo, hi) in within.items():
            solver.add(self.var(name) > z3.RealVal(lo, self.ctx), self.var(name) < z3.RealVal(hi, self.ctx))
        for name, value in prefer.items():
            solver.add_soft(self.var(name) == z3.RealVal(value, self.ctx))
        if solver.check() != z3.sat:
            return None
        model = solver.model()
        return {name: _numeral(model.eval(self.var(name), model_completion=True)) or Fraction(0) for name in within}

    def holds(self, env: dict[str, Fraction]) -> bool | None:
        """The property evaluated exactly at a full assignment (None: not evaluable)."""
        if self._compiled is None:
            self._compiled = _compile(self.formula)
        try:
            return bool(self._compiled(env))
        except (_NotEvaluable, ZeroDivisionError, KeyError):
            return None


def _numeral(value: z3.ExprRef) -> Fraction | None:
    """The exact value of a z3 numeral (integer or rational), else None."""
    if z3.is_int_value(value):
        return Fraction(value.as_long())
    if z3.is_rational_value(value):
        return Fraction(value.numerator_as_long(), value.denominator_as_long())
    return None


class _NotEvaluable(Exception):
    """A construct the exact evaluator does not handle."""


_ARITH: dict[int, Callable[[list[Any]], Any]] = {
    z3.Z3_OP_ADD: sum,
    z3.Z3_OP_SUB: lambda a: a[0] - sum(a[1:]),
    z3.Z3_OP_UMINUS: lambda a: -a[0],
    z3.Z3_OP_MUL: lambda a: np.prod(a, dtype=object) if a else Fraction(1),
    z3.Z3_OP_DIV: lambda a: a[0] / a[1],
    z3.Z3_OP_TO_REAL: lambda a: a[0],
    z3.Z3_OP_LE: lambda a: all(x <= y for x, y in itertools.pairwise(a)),
    z3.Z3_OP_GE: lambda a: all(x >= y for x, y in itertools.pairwise(a)),
    z3.Z3_OP_LT: lambda a: all(x < y for x, y in itertools.pairwise(a)),
    z3.Z3_OP_GT: lambda a: all(x > y for x, y in itertools.pairwise(a)),
    z3.Z3_OP_EQ: lambda a: all(x == y for x, y in itertools.pairwise(a)),
    z3.Z3_OP_DISTINCT: lambda a: len(set(a)) == len(a),
    z3.Z3_OP_AND: all,
    z3.Z3_OP_OR: any,
    z3.Z3_OP_NOT: lambda a: not a[0],
    z3.Z3_OP_IMPLIES: lambda a: (not a[0]) or a[1],
    z3.Z3_OP_XOR: lambda a: a[0] != a[1],
    z3.Z3_OP_ITE: lambda a: a[1] if a[0] else a[2],
}


def _compile(expr: z3.ExprRef) -> Callable[[dict[str, Fraction]], Any]:
    """A closure evaluating ``expr`` with exact rationals (variables looked up by name)."""
    if z3.is_true(expr) or z3.is_false(expr):
        value = z3.is_true(expr)
        return lambda env: value
    number = _numeral(expr)
    if number is not None:
        return lambda env: number
    kind = expr.decl().kind()
    if kind == z3.Z3_OP_UNINTERPRETED and expr.num_args() == 0:
        name = expr.decl().name()
        return lambda env: env[name]
    if kind not in _ARITH:
        raise _NotEvaluable(str(expr.decl()))
    rule = _ARITH[kind]
    children = [_compile(c) for c in expr.children()]
    return lambda env: rule([c(env) for c in children])


class ModelRunner:
    """onnxruntime on a model file, one input tensor and one output, single-threaded."""

    def __init__(self, path: Path) -> None:
        """Loads ``path``; raises what onnxruntime raises on a model it cannot load."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.shape = [d if isinstance(d, int) and d >= 0 else 1 for d in first.shape]  # symbolic: 1
        self.dtype = np.float64 if first.type == "tensor(double)" else np.float32

    @property
    def size(self) -> int:
        """Number of input elements."""
        return int(np.prod(self.shape))

    def run(self, x: np.ndarray) -> np.ndarray:
        """The flattened first output at one input point."""
        feed = {self.input_name: np.asarray(x, dtype=self.dtype).reshape(self.shape)}
        return np.asarray(self.session.run(None, feed)[0]).ravel()


# --------------------------------------------------------------------------- verdict checks


def check_sat(spec: SpecOracle, model: Path, x: list[float], y: list[float]) -> Verdict:
    """A ``sat`` counterexample: onnxruntime must reproduce ``y`` and z3 must accept (x, y)."""
    try:
        runner = ModelRunner(model)
    except Exception as exc:
        return Verdict("failed", f"sat on a model onnxruntime cannot load: {exc}"[:300])
    if len(x) != runner.size:
        return Verdict("failed", f"counterexample has {len(x)} inputs, the model {runner.size}")
    x_model = np.asarray(x, dtype=runner.dtype)
    try:
        mine = runner.run(x_model)
    except Exception as exc:
        return Verdict("failed", f"sat, but onnxruntime cannot run the counterexample: {exc}"[:300])
    if len(y) != mine.size or not np.allclose(np.asarray(y, dtype=np.float64), mine, rtol=Y_RTOL, atol=Y_ATOL):
        return Verdict("failed", f"reported y {y} but onnxruntime gives {mine.tolist()}")
    if not (np.all(np.isfinite(mine)) and np.all(np.isfinite(x_model))):
        return Verdict("none", "non-finite counterexample or outputs: no exact check")
    x_exact = exact(x_model)
    if x_exact != exact(x):
        return Verdict("failed", f"counterexample x {x} is not a point of the model's input type")
    note = ""
    for label, outputs in (("onnxruntime's", mine.tolist()), ("the reported", y)):
        ys = {f"Y_{j}": v for j, v in enumerate(exact(outputs))}
        answer = spec.satisfiable({f"X_{i}": v for i, v in enumerate(x_exact)} | ys)
        if answer is None:
            return Verdict("none", "z3 gave up on the counterexample")
        moved = [] if answer else _nearest_float_exception(spec, x_exact, ys, runner.dtype)
        if moved is None:
            return Verdict("failed", f"z3: the property is false at x={x} with {label} outputs y={outputs}")
        if moved:
            names = ", ".join(f"X_{i}" for i in moved)
            note = f" ({names}: the nearest float to an interval that holds none, as documented)"
    return Verdict("checked", "counterexample confirmed by onnxruntime and z3" + note)


def _nearest_float_exception(spec: SpecOracle, x: list[Fraction], ys: dict[str, Fraction],
                             dtype: type) -> list[int] | None:
    """README, soundness rules: where an interval of the box holds no value of the input type,
    the nearest one is used. Returns the coordinates where ``x`` does that, or None when the
    exception does not explain the miss.

    z3 looks for a model with every ``X_i`` strictly between the floats next to ``x_i`` (as
    many as possible equal to ``x_i``). For each coordinate it moved, the others at the
    model's values, none of the three floats ``down_i < x_i < up_i`` may be feasible: then the
    feasible interval around the model's value lies strictly inside ``(down_i, up_i)`` (an
    interval reaching a float beyond would contain ``down_i`` or ``up_i``), so it holds no
    float, and ``x_i`` is its nearest one (it is within one ulp). Intervals are the right
    notion here because a VNN-LIB 1.0 input constraint bounds one input at a time."""
    point = {f"X_{i}": value for i, value in enumerate(x)}
    neighbours = {}
    for i in range(len(x)):
        v = dtype(float(x[i]))
        neighbours[f"X_{i}"] = (Fraction(float(np.nextafter(v, dtype(-np.inf)))),
                                Fraction(float(np.nextafter(v, dtype(np.inf)))))
    model = spec.solve(ys, neighbours, point)
    if model is None:
        return None
    moved = [i for i in range(len(x)) if model[f"X_{i}"] != x[i]]
    for i in moved:
        name = f"X_{i}"
        others = {n: model[n] for n in point if n != name}
        for value in (neighbours[name][0], x[i], neighbours[name][1]):
            if spec.satisfiable(ys | others | {name: value}) is not False:
                return None
    return moved


def _float32_inside(lo: Fraction, hi: Fraction, dtype: type) -> tuple[float, float] | None:
    """The smallest and largest value of ``dtype`` in [lo, hi], or None when there is none."""
    info = np.finfo(dtype)
    low = dtype(max(float(lo), float(info.min)))
    if Fraction(float(low)) < lo:
        low = np.nextafter(low, dtype(np.inf))
    high = dtype(min(float(hi), float(info.max)))
    if Fraction(float(high)) > hi:
        high = np.nextafter(high, dtype(-np.inf))
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        return None
    return float(low), float(high)


def sample_points(box: list[tuple[float, float]], dtype: type, count: int, seed: int) -> list[np.ndarray]:
    """Corners (at most 64), the centre and random points of a box, in ``dtype``."""
    rng = np.random.default_rng(seed)
    lo = np.array([b[0] for b in box])
    hi = np.array([b[1] for b in box])
    corners = itertools.islice(itertools.product(*box), 64)
    points: list[np.ndarray] = [np.array(c, dtype=dtype) for c in corners]
    points.append(np.clip((lo / 2 + hi / 2).astype(dtype), lo.astype(dtype), hi.astype(dtype)))
    while len(points) < count:
        points.append(np.clip(rng.uniform(lo, hi).astype(dtype), lo.astype(dtype), hi.astype(dtype)))
    return points


def check_unsat(spec: SpecOracle, model: Path, seed: int = 0, count: int = SAMPLES) -> Verdict:
    """An ``unsat``: no sampled input of the box may satisfy the property with its outputs."""
    feasible = spec.satisfiable()
    if feasible is False:
        return Verdict("checked", "z3: the property is unsatisfiable for every output")
    try:
        runner = ModelRunner(model)
    except Exception as exc:
        return Verdict("none", f"onnxruntime cannot load the model: {exc}"[:200])
    exact_box = spec.input_box(runner.size)
    if exact_box is None:
        return Verdict("none", "input box unbounded or not found by z3")
    box, pinned = [], {}
    for i, (lo, hi) in enumerate(exact_box):
        inside = _float32_inside(lo, hi, runner.dtype)
        if inside is None:  # README: the nearest float of the input type is what the model gets
            nearest = float(runner.dtype(float(lo)))
            inside, pinned[f"X_{i}"] = (nearest, nearest), lo
        box.append(inside)
    undecided = 0
    for x in sample_points(box, runner.dtype, count, seed):
        try:
            y = runner.run(x)
        except Exception as exc:
            return Verdict("none", f"onnxruntime cannot run the model: {exc}"[:200])
        if not np.all(np.isfinite(y)):
            undecided += 1
            continue
        env = {f"X_{i}": v for i, v in enumerate(exact(x))} | pinned | {f"Y_{j}": v for j, v in enumerate(exact(y))}
        holds = spec.holds(env)
        undecided += holds is None
        if holds:
            return Verdict("failed", f"unsat, but x={x.tolist()} gives y={y.tolist()} satisfying the property")
    if undecided:
        return Verdict("none", f"{undecided} sampled points not evaluable exactly")
    return Verdict("checked", f"{count} sampled points of the box violate no output constraint")
