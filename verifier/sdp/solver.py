"""The low-rank (Burer–Monteiro) solver: an augmented Lagrangian over ``(u, V)``.

In centred, scaled variables ``u = (v - c) / r`` (every box becomes ``[-1, 1]`` or narrower)
the lifted matrix is ``X = u u^T + V V^T`` with a rank-``k`` factor ``V``, so every lifted
constraint of :class:`~verifier.sdp.problem.SdpProblem` is a quadratic in ``(u, V)``:

* box ``i``: ``ratio_i^2 - u_i^2 - ||V_i||^2 >= 0``;
* pair ``j``: ``kappa_j -+ (l1_j(u) l2_j(u) + (B1 V)_j . (B2 V)_j) >= 0``;
* linear rows in ``u`` alone, and the objective ``q u + q0``.

The augmented Lagrangian ``f - sum psi(h_j, y_j)`` (the usual one for inequalities ``h >= 0``)
is minimised by L-BFGS from the point a short PGD on the network found; the multipliers then
step ``y <- max(0, y - sigma h)`` and ``sigma`` grows while feasibility stalls. After each
outer step the multipliers go to :func:`verifier.sdp.certificate.certify`, which turns them
into a certified bound whatever their quality; the best is kept. When the lifted block of the
slack matrix has a negative eigenvalue (Lanczos), the point is not a global optimum of the
relaxation and the rank grows by one column along that eigenvector.

Augmented-Lagrangian multipliers are only as dual feasible as the inner problems were solved
(the certificate pays ``T * eps_feas`` for what is missing), so the last multipliers are then
*polished*: Adam ascends ``nu + T * sum_i min(0, lambda_i(S~(y) - nu E00))`` over ``y >= 0``
and ``nu`` (a valid, smoother lower bound than the certificate's ``T * lambda_min`` term), and
every ``certify_every`` steps the multipliers are certified.

Nothing here needs to be right for the bound to be sound: only the certificate is trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.ascent import Adam
from verifier.config import SdpConfig
from verifier.deadline import Deadline
from verifier.sdp.certificate import Certificate, Multipliers, certify, scaling
from verifier.sdp.lanczos import smallest_eigenpair
from verifier.sdp.problem import SdpProblem


@dataclass
class SdpResult:
    """A certified bound and how it was reached.

    Attributes:
        certificate: the best certificate (``row_bound`` is the certified clause-row bound).
        primal: the objective at the last ``(u, V)`` (not a bound: the point may be infeasible).
        attack: the objective at the PGD point (a true value of the network: an upper bound on
            the minimum up to float rounding).
        stats: iterations, rank, times, feasibility.
    """

    certificate: Certificate
    primal: float
    attack: float
    stats: dict[str, float | int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Scaled:
    q: Tensor
    q0: float
    G: Tensor
    g: Tensor
    B1: Tensor
    k1: Tensor
    B2: Tensor
    k2: Tensor
    kappa: Tensor
    ratio2: Tensor
    centre: np.ndarray
    radius: np.ndarray


def _scale(problem: SdpProblem, device: torch.device | str) -> _Scaled:
    centre, radius = scaling(problem)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=device)  # noqa: E731
    ratio = (problem.upper - problem.lower) / 2 / radius
    return _Scaled(t(problem.q * radius), float(problem.q0 + problem.q @ centre), t(problem.G * radius),
                   t(problem.g + problem.G @ centre), t(problem.B1 * radius), t(problem.k1 - problem.B1 @ centre),
                   t(problem.B2 * radius), t(problem.k2 - problem.B2 @ centre), t(problem.kappa), t(ratio**2),
                   centre, radius)


def _constraints(sp: _Scaled, u: Tensor, V: Tensor) -> Tensor:
    lin = sp.G @ u + sp.g
    box = sp.ratio2 - u**2 - (V**2).sum(dim=1)
    pair = (sp.B1 @ u - sp.k1) * (sp.B2 @ u - sp.k2) + ((sp.B1 @ V) * (sp.B2 @ V)).sum(dim=1)
    return torch.cat([lin, box, sp.kappa - pair, sp.kappa + pair])


def _multipliers(problem: SdpProblem, y: Tensor, radius: np.ndarray) -> Multipliers:
    p, n, m = problem.G.shape[0], problem.size, problem.B1.shape[0]
    flat = y.detach().cpu().numpy()
    return Multipliers(flat[:p], flat[p: p + n] / radius**2, flat[p + n: p + n + m], flat[p + n + m:])


@dataclass(frozen=True)
class _Layer:
    """The relations of one node (they do not read each other): their two terms as dense rows
    ``(2 k, n)``, constants ``(k, 2)``, signs and output variables ``(k,)``."""

    rows: Tensor
    consts: Tensor
    signs: Tensor
    outs: Tensor


def relation_layers(problem: SdpProblem, device: torch.device | str) -> list[_Layer]:
    """The problem's relations grouped by node, as tensors on ``device`` (built once per solve)."""
    groups: list[list[int]] = []
    for i, rel in enumerate(problem.relations):
        if groups and problem.relations[groups[-1][0]].node == rel.node:
            groups[-1].append(i)
        else:
            groups.append([i])
    layers = []
    for group in groups:
        rows = np.zeros((len(group), 2, problem.size))
        consts = np.zeros((len(group), 2))
        for j, i in enumerate(group):
            rel = problem.relations[i]
            rows[j][:, rel.vars] = rel.coefs
            consts[j] = rel.consts
        t = lambda a, dtype=torch.float64: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        layers.append(_Layer(t(rows.reshape(-1, problem.size)), t(consts),
                             t([problem.relations[i].sign for i in group]),
                             t([problem.relations[i].out for i in group], torch.int64)))
    return layers


def network_values(problem: SdpProblem, x: Tensor, layers: list[_Layer]) -> Tensor:
    """The exact (real-arithmetic) network's variables ``(B, n)`` at inputs ``x`` ``(B, inputs)``,
    differentiable: each relation output is ``sign * max_i T_i`` (``layers`` from
    :func:`relation_layers`)."""
    values = torch.zeros((x.shape[0], problem.size), dtype=x.dtype, device=x.device)
    values = values.index_copy(1, torch.as_tensor(problem.inputs, device=x.device), x)
    for layer in layers:
        terms = (values @ layer.rows.T).reshape(x.shape[0], -1, 2) + layer.consts
        values = values.index_copy(1, layer.outs, layer.signs * terms.max(dim=2).values)
    return values


def attack_start(problem: SdpProblem, config: SdpConfig, generator: torch.Generator,
                 device: torch.device | str) -> tuple[Tensor, float]:
    """PGD on the exact network towards the smallest objective: the best variables ``(n,)`` and
    their objective value."""
    lo = torch.as_tensor(problem.lower[problem.inputs], dtype=torch.float64, device=device)
    hi = torch.as_tensor(problem.upper[problem.inputs], dtype=torch.float64, device=device)
    q = torch.as_tensor(problem.q, dtype=torch.float64, device=device)
    starts = torch.rand((config.pgd_starts, lo.shape[0]), generator=generator, dtype=torch.float64).to(device)
    x = lo + starts * (hi - lo)
    x[0] = (lo + hi) / 2
    layers = relation_layers(problem, device)
    for step in range(config.pgd_steps):
        x = x.detach().requires_grad_(True)
        value = network_values(problem, x, layers) @ q
        (grad,) = torch.autograd.grad(value.sum(), x)
        size = 0.25 * (0.01 ** (step / max(1, config.pgd_steps - 1)))
        x = torch.minimum(torch.maximum(x - size * (hi - lo) * grad.sign(), lo), hi)
    with torch.no_grad():
        values = network_values(problem, x, layers)
        objective = values @ q + problem.q0
    best = int(torch.argmin(objective))
    return values[best], float(objective[best])


def solve_sdp(problem: SdpProblem, config: SdpConfig, device: torch.device | str = "cpu",
              deadline: Deadline | None = None, seed: int = 0, stop_above: float | None = None) -> SdpResult:
    """Runs the augmented Lagrangian from a PGD point and returns the best certificate (with
    gradients on, whatever the caller's grad mode).

    With ``stop_above`` (e.g. 0 for a clause row) the solve ends as soon as a certificate's
    ``row_bound`` exceeds it, and gives up early when it cannot: when the attack found a point
    whose row is at most ``stop_above`` (no lower bound can exceed a true value), or when the
    augmented Lagrangian converged to a primal value below it (the relaxation's optimum is
    then below it too, up to the primal point's small infeasibility). These shortcuts only
    save time; the returned certificate is valid either way."""
    with torch.enable_grad():
        return _solve(problem, config, device, deadline, seed, stop_above)


def _hopeless(problem: SdpProblem, value: float, violation: float, stop_above: float | None) -> bool:
    """True when a (nearly feasible) relaxation value ``value`` leaves no room above ``stop_above``."""
    if stop_above is None or violation > _CONVERGED:
        return False
    return value - problem.objective_band < stop_above - _CONVERGED * (1.0 + abs(value))


_CONVERGED = 1e-4  # a primal violation (and relative objective margin) this small counts as converged


def _solve(problem: SdpProblem, config: SdpConfig, device: torch.device | str, deadline: Deadline | None,
           seed: int, stop_above: float | None = None) -> SdpResult:
    start_time = time.monotonic()
    limit = (deadline or Deadline(None)).sooner(config.time_limit)
    generator = torch.Generator().manual_seed(seed)
    sp = _scale(problem, device)
    start, attack_value = attack_start(problem, config, generator, device)
    centre = torch.as_tensor(sp.centre, device=device)
    radius = torch.as_tensor(sp.radius, device=device)
    ratio = sp.ratio2.sqrt()
    u = torch.maximum(torch.minimum((start - centre) / radius, ratio), -ratio).detach()
    V = 1e-3 * torch.randn((problem.size, config.rank), generator=generator, dtype=torch.float64).to(device)
    count = sp.G.shape[0] + problem.size + 2 * problem.B1.shape[0]
    y = torch.zeros(count, dtype=torch.float64, device=device)
    sigma, last_violation = config.sigma, float("inf")
    best = certify(problem, _multipliers(problem, y, sp.radius), device, generator)
    stats: dict[str, float | int] = {"outer": 0, "escapes": 0}
    primal = attack_value
    done = lambda: stop_above is not None and best.row_bound > stop_above  # noqa: E731
    if _hopeless(problem, attack_value, 0.0, stop_above):  # a true point of the network is below
        stats.update(seconds=time.monotonic() - start_time, hopeless=1)
        return SdpResult(best, primal, attack_value, stats)
    for outer in range(config.outer_iterations):
        if limit.expired() or done():
            break
        u, V = _inner(sp, u, V, y, sigma, config.inner_iterations)
        with torch.no_grad():
            h = _constraints(sp, u, V)
            violation = float((-h).clamp(min=0).max()) if h.numel() else 0.0
            y = (y - sigma * h).clamp(min=0)
            primal = float(sp.q @ u + sp.q0)
        if violation > 0.25 * last_violation:
            sigma = min(sigma * config.sigma_growth, config.sigma_max)
        last_violation = violation
        cert = certify(problem, _multipliers(problem, y, sp.radius), device, generator)
        if cert.bound > best.bound:
            best = cert
        stats.update(outer=outer + 1, violation=violation, sigma=sigma, rank=int(V.shape[1]))
        if primal - best.bound <= config.gap_tolerance * (1.0 + abs(primal)) and violation <= config.gap_tolerance:
            break
        if V.shape[1] < config.max_rank:
            V, escaped = _escape(sp, y, V, config, generator)
            stats["escapes"] = int(stats["escapes"]) + int(escaped)
    if not done() and not _hopeless(problem, primal, float(stats.get("violation", 1.0)), stop_above):
        polished = _polish(problem, sp, y, best.nu, config, limit, device, generator, stop_above)
        if polished is not None and polished.bound > best.bound:
            best = polished
    stats.update(seconds=time.monotonic() - start_time, eps_feas=best.eps_feas, rank=int(V.shape[1]))
    return SdpResult(best, primal, attack_value, stats)


def scaled_slack_torch(sp: _Scaled, y: Tensor) -> Tensor:
    """The slack matrix in the scaled variables (differentiable in the multipliers ``y``; the
    same matrix as :func:`verifier.sdp.certificate.scaled_slack`, without rounding bounds)."""
    p, n, m = sp.G.shape[0], sp.q.shape[0], sp.B1.shape[0]
    lam, mu, plus, minus = y[:p], y[p: p + n], y[p + n: p + n + m], y[p + n + m:]
    rho = minus - plus
    cross = sp.B1.T @ (rho[:, None] * sp.B2)
    block = torch.diag(mu) - (cross + cross.T) / 2
    lin = sp.q - sp.G.T @ lam + sp.B1.T @ (rho * sp.k2) + sp.B2.T @ (rho * sp.k1)
    corner = sp.q0 - lam @ sp.g - mu @ sp.ratio2 - (plus + minus) @ sp.kappa - rho @ (sp.k1 * sp.k2)
    top = torch.cat([corner.reshape(1), lin / 2])
    return torch.cat([top[None], torch.cat([lin[:, None] / 2, block], dim=1)], dim=0)


def _polish(problem: SdpProblem, sp: _Scaled, y: Tensor, nu: float, config: SdpConfig, limit: Deadline,
            device: torch.device | str, generator: torch.Generator, stop_above: float | None = None
            ) -> Certificate | None:
    """Dual ascent from the multipliers ``y`` (see the module docstring); the best certificate
    (returned as soon as its ``row_bound`` exceeds ``stop_above``)."""
    if config.polish_steps <= 0:
        return None
    trace = 1.0 + problem.size
    mult = y.clone().requires_grad_(True)
    corner = torch.tensor(nu if np.isfinite(nu) else 0.0, dtype=torch.float64, device=device, requires_grad=True)
    optimiser = Adam([([mult, corner], config.polish_rate)])
    e00 = torch.zeros((problem.size + 1, problem.size + 1), dtype=torch.float64, device=device)
    e00[0, 0] = 1.0
    best: Certificate | None = None
    for step in range(1, config.polish_steps + 1):
        if limit.expired():
            break
        smooth = step <= config.polish_steps * config.polish_smooth_share
        values = torch.linalg.eigvalsh(scaled_slack_torch(sp, mult) - corner * e00)
        objective = corner + trace * (values.clamp(max=0).sum() if smooth else values[0].clamp(max=0))
        optimiser.zero_grad()
        (-objective).backward()
        optimiser.step()
        with torch.no_grad():
            mult.clamp_(min=0)
        if step % config.certify_every == 0 or step == config.polish_steps:
            cert = certify(problem, _multipliers(problem, mult.detach(), sp.radius), device, generator)
            if best is None or cert.bound > best.bound:
                best = cert
            if stop_above is not None and best.row_bound > stop_above:
                break
    return best


def _inner(sp: _Scaled, u: Tensor, V: Tensor, y: Tensor, sigma: float, iterations: int) -> tuple[Tensor, Tensor]:
    """L-BFGS on the augmented Lagrangian at fixed multipliers."""
    u = u.clone().requires_grad_(True)
    V = V.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([u, V], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-14, history_size=20)

    def closure() -> Tensor:
        optimiser.zero_grad()
        h = _constraints(sp, u, V)
        penalty = ((y - sigma * h).clamp(min=0) ** 2 - y**2).sum() / (2 * sigma)
        loss = sp.q @ u + sp.q0 + penalty
        loss.backward()
        return loss

    optimiser.step(closure)
    return u.detach(), V.detach()


def _escape(sp: _Scaled, y: Tensor, V: Tensor, config: SdpConfig, generator: torch.Generator) -> tuple[Tensor, bool]:
    """Adds a column along the lifted block's most negative direction, if there is one."""
    p, n, m = sp.G.shape[0], sp.q.shape[0], sp.B1.shape[0]
    mu, rho = y[p: p + n], y[p + n + m:] - y[p + n: p + n + m]

    def matvec(x: Tensor) -> Tensor:  # M = diag(mu) - (B1^T diag(rho) B2 + B2^T diag(rho) B1) / 2
        return mu * x - (sp.B1.T @ (rho * (sp.B2 @ x)) + sp.B2.T @ (rho * (sp.B1 @ x))) / 2

    value, vector = smallest_eigenpair(matvec, n, steps=min(n, 40), generator=generator, device=V.device)
    if value >= -config.escape_tolerance:
        return V, False
    scale = 1e-2 * float(sp.ratio2.max().sqrt())
    return torch.cat([V, scale * vector[:, None]], dim=1), True
