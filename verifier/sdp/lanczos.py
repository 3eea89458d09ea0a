"""The smallest eigenpair of a symmetric operator by Lanczos iteration (matrix-vector products only).

An *estimate*: Ritz values approach the smallest eigenvalue from above and may miss it when the
start vector is nearly orthogonal to its eigenvector, so nothing certified may rest on it alone
(:mod:`verifier.sdp.certificate` proves its lower bounds by a Cholesky factorisation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def smallest_eigenpair(matvec: Callable[[Tensor], Tensor], size: int, steps: int = 60,
                       generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                       device: torch.device | str = "cpu") -> tuple[float, Tensor]:
    """Estimates ``(lambda_min, unit eigenvector)`` of the symmetric ``size x size`` operator
    ``matvec`` with at most ``steps`` Lanczos steps and full reorthogonalisation (so the Krylov
    basis stays orthonormal in floating point); exact once ``steps >= size``."""
    steps = max(1, min(steps, size))
    start = torch.randn(size, generator=generator, dtype=dtype).to(device)
    basis = torch.zeros((steps, size), dtype=dtype, device=device)
    alphas, betas = [], []
    q = start / start.norm()
    for j in range(steps):
        basis[j] = q
        w = matvec(q)
        alpha = torch.dot(q, w)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalisation (twice is enough)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        alphas.append(alpha)
        beta = w.norm()
        if j == steps - 1 or float(beta) <= 1e-12 * max(1.0, abs(float(alpha))):
            basis = basis[: j + 1]
            break
        betas.append(beta)
        q = w / beta
    k = len(alphas)
    tri = torch.diag(torch.stack(alphas))
    if k > 1:
        off = torch.stack(betas[: k - 1])
        tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tri)
    vector = basis.T @ vectors[:, 0]
    return float(values[0]), vector / vector.norm()
