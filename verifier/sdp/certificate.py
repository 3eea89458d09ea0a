"""A certified lower bound of the SDP objective from any non-negative multipliers (weak duality).

Let ``p = (1, v)`` for a float execution ``v`` (it satisfies every constraint of the
:class:`~verifier.sdp.problem.SdpProblem`, and so does its lift ``P = p p^T``). For multipliers
``lam >= 0`` (linear rows), ``mu >= 0`` (boxes), ``pi_plus, pi_minus >= 0`` (the two sides of
each complementarity pair) the Lagrangian is a quadratic form:

    q v + q0 - lam (G v + g) - mu . box(v) - pi_plus (kappa - l1 l2) - pi_minus (kappa + l1 l2)
        = p^T S p,

with ``S`` the *dual slack matrix* (:func:`slack_matrix`). Every subtracted term is a
multiplier times a satisfied constraint, so ``q v + q0 >= p^T S p``. Change the basis to the
centred, scaled ``H p = (1, (v - c) / r)`` (``c`` the box centres, ``r >= `` the radii, so
``||H p||^2 <= T <= 1 + n``, :func:`unit_bounds`) and split off ``nu`` at the corner: with
``S~ = H^-T S H^-1``,

    p^T S p = nu + (Hp)^T (S~ - nu E00) (Hp) >= nu - T max(0, -lambda_min(S~ - nu E00)).

That is the bound: ``nu - T eps_feas`` with ``eps_feas = max(0, -lambda_min)`` (the primal
value minus the duality gap, with a penalty for dual infeasibility). It holds for *any*
multipliers; the solver's only job is to find good ones.

Floating point: ``S~`` is formed in float64 next to the same sums of absolute values, and the
difference to the exact matrix is bounded by ``gamma_K`` times that (``K`` counts every term of
every entry, with room to spare); its Frobenius norm bounds the spectral shift (Weyl). The
smallest eigenvalue of the computed matrix ``A`` is bounded below without trusting an
eigensolver: Lanczos proposes ``theta``, and a Cholesky factorisation ``L L^T`` of
``A - (theta - delta) I`` that runs to completion proves ``A - (theta - delta) I + D >= 0``
for the backward error ``|D| <= gamma_{N+1} |L| |L|^T`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, Thm 10.3; we use ``gamma_{4(N+1)}`` to cover blocked LAPACK code), so
``lambda_min(A) >= theta - delta - gamma ||L||_F^2`` minus the rounding of the shift. When the
factorisation fails, ``delta`` grows; Gershgorin's bound is the last resort.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from verifier.ops.base import gamma
from verifier.sdp.lanczos import smallest_eigenpair
from verifier.sdp.problem import SdpProblem

_U64 = 2.0**-53
_UPWARD = 1.0 + 2.0**-30


@dataclass(frozen=True)
class Multipliers:
    """Non-negative multipliers of an :class:`SdpProblem`'s constraints (original coordinates).

    Attributes:
        linear: ``(p,)`` for ``G v + g >= 0``.
        box: ``(n,)`` for ``(v - lo)(hi - v) >= 0``.
        pair_plus, pair_minus: ``(m,)`` for ``kappa - l1 l2 >= 0`` and ``kappa + l1 l2 >= 0``.
    """

    linear: np.ndarray
    box: np.ndarray
    pair_plus: np.ndarray
    pair_minus: np.ndarray


@dataclass(frozen=True)
class Certificate:
    """A certified lower bound of ``q v + q0`` over every float execution (``objective_band``
    not yet subtracted: :attr:`row_bound` does that).

    Attributes:
        bound: ``nu - T eps_feas``, rounded down.
        nu: the value split off at the corner.
        eps_feas: ``max(0, -lambda_min)`` of the scaled slack matrix, certified (rounded up).
        trace: ``T``, the bound on ``||H p||^2``.
        row_bound: ``bound - objective_band``: a certified lower bound of the clause row.
    """

    bound: float
    nu: float
    eps_feas: float
    trace: float
    row_bound: float


def slack_matrix(problem: SdpProblem, mult: Multipliers) -> tuple[np.ndarray, np.ndarray]:
    """The dual slack matrix ``S`` ``(n + 1, n + 1)`` (float64) of the module docstring, and the
    same formula over absolute values of every term (for rounding bounds)."""
    lam, mu = np.maximum(mult.linear, 0.0), np.maximum(mult.box, 0.0)
    pp, pm = np.maximum(mult.pair_plus, 0.0), np.maximum(mult.pair_minus, 0.0)
    rho = pm - pp  # the coefficient of l1 l2 in the subtracted terms
    lo, hi = problem.lower, problem.upper
    B1, B2, k1, k2 = problem.B1, problem.B2, problem.k1, problem.k2
    n = problem.size
    cross = B1.T @ (rho[:, None] * B2)
    M = np.diag(mu) - (cross + cross.T) / 2
    lin = problem.q - problem.G.T @ lam - (lo + hi) * mu + B1.T @ (rho * k2) + B2.T @ (rho * k1)
    s00 = problem.q0 - lam @ problem.g + mu @ (lo * hi) - (pp + pm) @ problem.kappa - rho @ (k1 * k2)
    arho = np.abs(rho)
    across = np.abs(B1).T @ (arho[:, None] * np.abs(B2))
    M_abs = np.diag(mu) + (across + across.T) / 2
    lin_abs = (np.abs(problem.q) + np.abs(problem.G).T @ lam + np.abs(lo + hi) * mu
               + np.abs(B1).T @ (arho * np.abs(k2)) + np.abs(B2).T @ (arho * np.abs(k1)))
    s00_abs = (abs(problem.q0) + lam @ np.abs(problem.g) + mu @ np.abs(lo * hi) + (pp + pm) @ problem.kappa
               + arho @ np.abs(k1 * k2))
    S = np.empty((n + 1, n + 1))
    S_abs = np.empty((n + 1, n + 1))
    for target, corner, half, block in ((S, s00, lin / 2, M), (S_abs, s00_abs, lin_abs / 2, M_abs)):
        target[0, 0] = corner
        target[0, 1:] = half
        target[1:, 0] = half
        target[1:, 1:] = block
    return S, S_abs


def scaling(problem: SdpProblem) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``c`` and positive scales ``r >= `` the radii of the variable boxes."""
    centre = (problem.lower + problem.upper) / 2
    radius = (problem.upper - problem.lower) / 2 * _UPWARD
    floor = 1e-6 * np.maximum(1.0, np.abs(centre))
    return centre, np.maximum(radius, floor)


def unit_bounds(problem: SdpProblem, centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Bounds on ``|v_i - c_i| / r_i`` over the boxes (at most 1; the half-width plus the
    rounding of the centre, over the scale)."""
    reach = (problem.upper - problem.lower) / 2 + 4 * np.spacing(np.abs(centre))
    return np.minimum(1.0, reach / radius * _UPWARD)


def scaled_slack(S: np.ndarray, S_abs: np.ndarray, centre: np.ndarray, radius: np.ndarray,
                 terms: int) -> tuple[np.ndarray, float]:
    """``S~ = H^-T S H^-1`` with ``H^-1 = [[1, 0], [c, diag(r)]]``, and a bound on the Frobenius
    norm of its difference to the exact product of the exact ``S`` (``terms``: the most terms
    summed in one entry of ``S``)."""
    n = S.shape[0] - 1
    inv = np.zeros((n + 1, n + 1))
    inv[0, 0] = 1.0
    inv[1:, 0] = centre
    inv[1:, 1:] = np.diag(radius)
    scaled = inv.T @ S @ inv
    bound_abs = np.abs(inv).T @ S_abs @ np.abs(inv)
    error = gamma(2 * (terms + 2 * n + 8), _U64) * bound_abs
    return scaled, float(np.sqrt(np.sum(error**2)) * _UPWARD)


def lambda_min_lower(A: Tensor, generator: torch.Generator | None = None) -> float:
    """A certified lower bound of the smallest eigenvalue of the float64 symmetric matrix ``A``
    as stored (see the module docstring)."""
    N = A.shape[0]
    theta, _ = smallest_eigenpair(lambda x: A @ x, N, steps=min(N, 80), generator=generator,
                                  dtype=A.dtype, device=A.device)
    scale = float(torch.linalg.matrix_norm(A)) + 1.0
    chol_gamma = gamma(4 * (N + 1), _U64)
    diag_mag = float(A.diagonal().abs().max())
    delta = 1e-9 * scale
    eye = torch.eye(N, dtype=A.dtype, device=A.device)
    for _ in range(8):
        shift = theta - delta
        factor, info = torch.linalg.cholesky_ex(A - shift * eye)
        if int(info) == 0 and bool(torch.isfinite(factor).all()):
            backward = chol_gamma * float((factor**2).sum()) * _UPWARD
            rounding = 2 * _U64 * (diag_mag + abs(shift))
            return shift - backward - rounding
        delta *= 10.0
    off = A.abs().sum(dim=1) - A.diagonal().abs()
    return float((A.diagonal() - off).min()) - 4 * N * _U64 * float(A.abs().sum(dim=1).max())


def certify(problem: SdpProblem, mult: Multipliers, device: torch.device | str = "cpu",
            generator: torch.Generator | None = None) -> Certificate:
    """The certified lower bound of the module docstring for these multipliers.

    ``nu`` is chosen by :func:`_best_nu`; the bound holds for any ``nu``."""
    S, S_abs = slack_matrix(problem, mult)
    terms = problem.G.shape[0] + 2 * problem.B1.shape[0] + 2 * problem.size + 4
    centre, radius = scaling(problem)
    scaled, form_error = scaled_slack(S, S_abs, centre, radius, terms)
    trace = (1.0 + float(np.sum(unit_bounds(problem, centre, radius) ** 2))) * _UPWARD
    A = torch.as_tensor(scaled, dtype=torch.float64, device=device)
    nu = _best_nu(A, trace)
    A[0, 0] = A[0, 0] - nu
    form_error += 2 * _U64 * (abs(float(scaled[0, 0])) + abs(nu))
    lam = lambda_min_lower(A, generator) - form_error
    eps_feas = max(0.0, -lam)
    bound = nu - trace * eps_feas * _UPWARD
    bound = math.nextafter(bound - 4 * _U64 * (abs(nu) + trace * eps_feas), -math.inf)
    row = math.nextafter(bound - problem.objective_band - 2 * _U64 * (abs(bound) + problem.objective_band), -math.inf)
    if not math.isfinite(row):
        row = -math.inf
    return Certificate(bound, nu, eps_feas, trace, row)


def _best_nu(A: Tensor, trace: float) -> float:
    """A good ``nu`` for the bound (any is valid). For ``A = [[a, s^T], [s, M]]`` and a shift
    ``t > max(0, -lambda_min(M))``, ``nu(t) = a + t - s^T (M + t I)^-1 s`` makes
    ``A - nu E00 + t I`` PSD (Schur complement), so the bound is about ``nu(t) - T t``:
    ``g(t) = a - (T - 1) t - sum_i w_i / (lambda_i + t)`` with ``w = (Q^T s)^2`` over the
    eigenpairs of ``M``, concave in ``t``; its maximiser is found by bisection on ``g'``."""
    if A.shape[0] == 1:
        return float(A[0, 0])
    a = float(A[0, 0])
    lams, Q = torch.linalg.eigh(A[1:, 1:])
    w = (Q.T @ A[1:, 0]) ** 2
    floor = max(0.0, -float(lams[0]))
    tiny = 1e-12 * (1.0 + float(lams.abs().max()))

    def slope(t: float) -> float:
        return float((w / (lams + t) ** 2).sum()) - (trace - 1.0)

    low, high = floor + tiny, floor + 1.0
    while slope(high) > 0 and high < 1e12:
        high = floor + 2 * (high - floor)
    if slope(low) <= 0:
        high = low
    for _ in range(100):
        mid = (low + high) / 2
        if slope(mid) > 0:
            low = mid
        else:
            high = mid
    t = high
    return a + t - float((w / (lams + t)).sum())
