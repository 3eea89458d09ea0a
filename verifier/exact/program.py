"""The piecewise-linear program that :func:`verifier.exact.encoding.encode` builds (its
soundness contract is that module's docstring): affine expressions with bands, max relations,
the program itself, the exact engines' outcome and the error for what cannot be encoded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from verifier.result import Status

MAX_DENSE_ENTRIES = 20_000_000
"""Largest dense matrix (rows x columns) built for one node."""


class ExactUnsupported(Exception):
    """The network cannot be encoded exactly (an op without an encoding, a matrix too large,
    unbounded values where a big-M constant is needed); the message names node and op."""


@dataclass(frozen=True)
class ExactOutcome:
    """Result of an exact engine on one input region.

    Attributes:
        status: UNSAT (no input of the box violates a clause: a proof for the float model),
            SAT (``x`` is a candidate counterexample, NOT yet validated: the caller must
            re-check it with onnxruntime) or UNKNOWN.
        x: the candidate (flattened, concatenated inputs, float64) when the status is SAT.
        stats: sizes, times and the solver's own status.
    """

    status: Status
    x: np.ndarray | None
    stats: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Affine:
    """Elements ``e`` of a value: ``coefs[e] @ v[vars] + consts[e]``, true value within ``bands[e]``.

    Attributes:
        vars: ``(K,)`` variable indices (the support of the value).
        coefs: ``(size, K)`` float64.
        consts: ``(size,)`` float64.
        bands: ``(size,)`` float64, non-negative (``inf``: no information).
    """

    vars: np.ndarray
    coefs: np.ndarray
    consts: np.ndarray
    bands: np.ndarray

    @property
    def size(self) -> int:
        return int(self.consts.shape[0])


@dataclass(frozen=True)
class MaxRow:
    """``|sign * v[out] - max_i T_i| <= err`` with ``T_i = coefs[i] @ v[vars] + consts[i]``.

    ``lows``/``highs`` bound each term over every float execution; at least two terms remain
    (a single one makes the output an expression instead). ``err`` includes the terms' bands.
    """

    out: int
    sign: int
    vars: np.ndarray
    coefs: np.ndarray
    consts: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    err: float
    node: str


@dataclass(frozen=True)
class StepRow:
    """``v[out]`` is ``levels[0]``, ``levels[1]`` or ``levels[2]`` as the float value ``x`` of
    one element is ``< 0``, ``= 0`` or ``> 0`` (Sign: -1, 0, 1), where ``x`` lies within
    ``coefs @ v[vars] + const +- band``; ``low``/``high`` bound that expression over every
    float execution. Encoded as: ``v[out]`` is the first level only if the expression is at
    most ``band``, the last only if at least ``-band``, the middle only if both."""

    out: int
    vars: np.ndarray
    coefs: np.ndarray
    const: float
    band: float
    low: float
    high: float
    levels: tuple[float, float, float]
    node: str


@dataclass(frozen=True)
class IntegerRow:
    """``v[out]`` is an integer ``k`` with ``x - k`` in ``[offsets[0], offsets[1]]`` (Floor,
    Ceil, Round: :meth:`verifier.ops.base.Op.integer_offsets`), where the float value ``x`` of
    one element lies within ``coefs @ v[vars] + const +- band``. Encoded as ``k`` integer
    (bounded by ``v[out]``'s bounds) and ``offsets[0] - band <= E - k <= offsets[1] + band``."""

    out: int
    vars: np.ndarray
    coefs: np.ndarray
    const: float
    band: float
    offsets: tuple[float, float]
    node: str


@dataclass
class Encoding:
    """The program: variable bounds, max, step and integer relations, the inputs' variables (flattened graph
    inputs, concatenated) and the outputs as expressions with their CROWN bounds.

    ``origin[v]`` names what variable ``v`` stands for: (value name, flat element); the inner
    maximum of a Clip is named ``"<output>:inner"``."""

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    origin: list[tuple[str, int]] = field(default_factory=list)
    maxes: list[MaxRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)
    integers: list[IntegerRow] = field(default_factory=list)
    inputs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outputs: Affine | None = None
    output_lower: np.ndarray = field(default_factory=lambda: np.zeros(0))
    output_upper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    values: dict[str, Affine] = field(default_factory=dict)

    @property
    def num_vars(self) -> int:
        return len(self.lower)

    def new_vars(self, lower: np.ndarray, upper: np.ndarray, value: str, first: int = 0) -> np.ndarray:
        """Adds variables for elements ``first, first + 1, ...`` of ``value`` with the given
        bounds; returns their indices."""
        start = len(self.lower)
        self.lower.extend(float(v) for v in lower)
        self.upper.extend(float(v) for v in upper)
        self.origin.extend((value, first + i) for i in range(len(lower)))
        return np.arange(start, len(self.lower), dtype=np.int64)

    def magnitude(self, vars_: np.ndarray) -> np.ndarray:
        """``max(|lower|, |upper|)`` of each variable."""
        return np.maximum(np.abs(np.asarray(self.lower)[vars_]), np.abs(np.asarray(self.upper)[vars_]))

    def size_of(self, expr: Affine) -> np.ndarray:
        """A bound on ``|coefs @ v + consts|`` over the variable bounds, per element."""
        with np.errstate(invalid="ignore"):
            mags = np.abs(expr.coefs) @ self.magnitude(expr.vars) if expr.vars.size else np.zeros(expr.size)
        return np.nan_to_num(mags + np.abs(expr.consts), nan=math.inf)


def constant_expr(value: float) -> Affine:
    """One element that is the constant ``value`` (no variable, no band)."""
    return Affine(np.zeros(0, dtype=np.int64), np.zeros((1, 0)), np.array([value]), np.zeros(1))


def variable_expr(var: int) -> Affine:
    """One element that is variable ``var`` itself (no band)."""
    return Affine(np.array([var]), np.ones((1, 1)), np.zeros(1), np.zeros(1))


def gather(expr: Affine, index: np.ndarray) -> Affine:
    """The elements ``index`` of ``expr`` (support trimmed to the columns they use)."""
    coefs = expr.coefs[index]
    used = np.flatnonzero(np.any(coefs != 0, axis=0)) if coefs.size else np.zeros(0, dtype=np.int64)
    return Affine(expr.vars[used], coefs[:, used], expr.consts[index], expr.bands[index])


def stack(parts: list[Affine], max_entries: int = MAX_DENSE_ENTRIES) -> Affine:
    """The concatenation of expressions, over the union of their supports.

    Raises:
        ExactUnsupported: the result would have more than ``max_entries`` coefficients.
    """
    support = np.unique(np.concatenate([p.vars for p in parts])) if parts else np.zeros(0, dtype=np.int64)
    size = sum(p.size for p in parts)
    if size * support.size > max_entries:
        raise ExactUnsupported(f"the expressions would have {size} x {support.size} coefficients, "
                               f"over the cap of {max_entries}")
    rows = []
    for p in parts:
        block = np.zeros((p.size, support.size))
        block[:, np.searchsorted(support, p.vars)] = p.coefs
        rows.append(block)
    return Affine(support.astype(np.int64), np.concatenate(rows) if rows else np.zeros((0, 0)),
                  np.concatenate([p.consts for p in parts]), np.concatenate([p.bands for p in parts]))
