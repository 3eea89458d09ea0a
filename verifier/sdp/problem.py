"""The quadratically constrained program behind the SDP bound, built from the exact encoding.

Variables ``v`` are those of :func:`verifier.exact.encoding.encode`: the input elements and the
outputs of the max relations that bounds leave undecided (stable ReLUs are affine there and
cost nothing). Every float32 execution of the model on the box, extended with its values,
satisfies (``err`` is the relation's float error, the terms ``T_i = a_i v + k_i`` are exact
expressions of the variables, ``w = sign * v_out``, and ``l_i = w - T_i``):

* *linear rows* ``G v + g >= 0``: ``l_i + err >= 0`` (the max is at least each term) and, when
  the difference of the two terms changes sign over its bounds ``[dl, du]``, the triangle
  ``du (l_2 - l_1 - dl) / (du - dl) - l_2 + err >= 0`` (the max is below the chord);
* *complementarity pairs* ``|l_1 l_2| <= kappa``: exactly ``l_1 l_2 = 0`` for the exact max;
  with ``w = max(T_1, T_2) + e``, ``|e| <= err``, the product is ``e (|T_1 - T_2| + e)``, so
  ``kappa = err (max |T_1 - T_2| + err)``;
* *boxes* ``(v_i - lo_i)(hi_i - v_i) >= 0`` from the encoding's variable bounds (CROWN's,
  valid for every float execution).

The objective is a clause row ``C_r y - d_r`` with outputs ``y = A v + k`` known within
``band``: ``C_r y - d_r >= q v + q0 - objective_band``.

Relations other than a two-term maximum (MaxPool windows of more than two, say) have no
complementarity form here: :class:`SdpUnsupported` names the node.

Float64 arithmetic: the pair rows ``l_i`` are exact (a negated term and a +-1 coefficient on a
new variable). Rows and the objective computed with rounding (the triangle, ``q = C_r A``)
get a slack of ``2**-40`` times the magnitude of their terms, far above their float64 error,
so the stored program is implied by the exact one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from verifier.errors import ModelError
from verifier.exact.encoding import Encoding, MaxRow

DERIVED_SLACK = 2.0**-40
"""Relative slack of rows and objective computed in float64 (their rounding is far below)."""
UPWARD = 1.0 + 2.0**-30


class SdpUnsupported(ModelError):
    """The network has a relation the SDP bound cannot express, or an unbounded variable (a
    :class:`~verifier.errors.ModelError`: ``verify bounds --method sdp`` reports it as bad input;
    the verification pipeline falls back to its other methods)."""


@dataclass(frozen=True)
class SdpProblem:
    """``min q v + q0`` over the float executions, relaxed as described in the module docstring.

    Attributes:
        lower, upper: finite variable bounds ``(n,)``.
        q, q0: the objective; ``objective_band`` is subtracted from any bound of it.
        G, g: linear rows ``G v + g >= 0`` ``(p, n)``, ``(p,)``.
        B1, k1, B2, k2: complementarity pairs ``l_1 = B1 v - k1``, ``l_2 = B2 v - k2`` ``(m, n)``.
        kappa: ``|l_1 l_2| <= kappa`` ``(m,)``.
        inputs: the input variables, in the graph's flattened order.
        relations: the max relations, in the order of evaluation (to run the network,
            :func:`verifier.sdp.solver.network_values`).
    """

    lower: np.ndarray
    upper: np.ndarray
    q: np.ndarray
    q0: float
    objective_band: float
    G: np.ndarray
    g: np.ndarray
    B1: np.ndarray
    k1: np.ndarray
    B2: np.ndarray
    k2: np.ndarray
    kappa: np.ndarray
    inputs: np.ndarray
    relations: tuple[MaxRow, ...]

    @property
    def size(self) -> int:
        return int(self.lower.shape[0])


def _dense(rel: MaxRow, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The relation's terms as dense rows over all ``n`` variables, and their constants."""
    rows = np.zeros((rel.coefs.shape[0], n))
    rows[:, rel.vars] = rel.coefs
    return rows, rel.consts.astype(np.float64)


def _refuse_steps(enc: Encoding) -> None:
    """Raises SdpUnsupported naming the first step or rounding relation (the SDP bound encodes
    two-term maxima only)."""
    stepped = [row.node for row in enc.steps] + [row.node for row in enc.integers]
    if stepped:
        raise SdpUnsupported(f"node {stepped[0]!r}: a step (Sign, Floor, Ceil, Round); the SDP bound "
                             "handles two-term maxima (ReLU, LeakyReLU, Abs, Clip)")


def build_problem(enc: Encoding, c_row: np.ndarray, d_row: float) -> SdpProblem:
    """The program for the clause row ``c_row @ y - d_row`` over the encoding ``enc``.

    Raises:
        SdpUnsupported: a relation that is not a two-term maximum (a step such as Sign or
            Floor included), or a variable, term or output without finite bounds or bands.
    """
    _refuse_steps(enc)
    n = enc.num_vars
    lower, upper = np.asarray(enc.lower, dtype=np.float64), np.asarray(enc.upper, dtype=np.float64)
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise SdpUnsupported("a variable without finite bounds (the SDP bound needs them all)")
    magnitude = np.maximum(np.abs(lower), np.abs(upper))
    rows: list[np.ndarray] = []
    consts: list[float] = []
    b1, k1, b2, k2, kappa = [], [], [], [], []
    for rel in enc.maxes:
        if rel.coefs.shape[0] != 2:
            raise SdpUnsupported(f"node {rel.node!r}: a maximum of {rel.coefs.shape[0]} terms; the SDP bound "
                                 "handles two-term maxima (ReLU, LeakyReLU, Abs, Clip)")
        if not (math.isfinite(rel.err) and np.all(np.isfinite(rel.lows)) and np.all(np.isfinite(rel.highs))):
            raise SdpUnsupported(f"node {rel.node!r}: unbounded terms or float error")
        terms, k = _dense(rel, n)
        ells = -terms
        ells[:, rel.out] += rel.sign  # l_i = sign * v_out - T_i = ells[i] v - k[i]
        for i in range(2):
            rows.append(ells[i])
            consts.append(-k[i] + rel.err)
        dl, du = rel.lows[0] - rel.highs[1], rel.highs[0] - rel.lows[1]
        if dl < 0 < du:
            slope = du / (du - dl)
            row = slope * (ells[1] - ells[0]) - ells[1]
            const = slope * (-(k[1] - k[0]) - dl) + k[1] + rel.err
            rows.append(row)
            consts.append(const)
        b1.append(ells[0])
        k1.append(k[0])
        b2.append(ells[1])
        k2.append(k[1])
        spread = max(rel.highs[0] - rel.lows[1], rel.highs[1] - rel.lows[0], 0.0)
        kappa.append(rel.err * (spread + rel.err) * UPWARD)
    G = np.array(rows).reshape(len(rows), n)
    g = np.array(consts, dtype=np.float64)
    g = g + DERIVED_SLACK * (np.abs(G) @ magnitude + np.abs(g))
    assert enc.outputs is not None
    out = enc.outputs
    if not np.all(np.isfinite(out.bands)):
        raise SdpUnsupported("an output without a finite float band")
    q = np.zeros(n)
    q[out.vars] = c_row @ out.coefs
    q0 = float(c_row @ out.consts - d_row)
    scale = float(np.abs(c_row) @ (np.abs(out.coefs) @ magnitude[out.vars] + np.abs(out.consts)) + abs(d_row))
    band = (float(np.abs(c_row) @ out.bands) + DERIVED_SLACK * scale) * UPWARD
    empty = np.zeros((0, n))
    stack = (lambda xs: np.array(xs).reshape(len(xs), n)) if b1 else (lambda xs: empty)
    return SdpProblem(lower, upper, q, q0, band, G, g, stack(b1), np.array(k1, dtype=np.float64), stack(b2),
                      np.array(k2, dtype=np.float64), np.array(kappa, dtype=np.float64), enc.inputs.copy(),
                      tuple(enc.maxes))
