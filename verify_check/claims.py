"""Checking a region's claimed bounds of the ReLU inputs (:class:`verify_check.certificate.Claims`).

Layer by layer, from the bounds already checked: the checker's own bounds of the layer's input
(intervals, forms, CROWN with the default slopes) and, at the positions with proving slopes,
CROWN with those on the rows ``+e_p`` and ``-e_p``. A claim holds when its lower end is at most
the best proven lower bound and its upper end at least the best proven upper bound; the proven
bounds (at least as tight) are what the tree then uses.
"""

from __future__ import annotations

import numpy as np

from verify_check.bounds import backward, bound_values, relu_inputs
from verify_check.certificate import Claims
from verify_check.model import Chain


class ClaimError(Exception):
    """A claimed bound is tighter than what its proof gives (the message names it)."""


def checked_claims(chain: Chain, lower: np.ndarray, upper: np.ndarray, claims: Claims
                   ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Bounds ``(1, n)`` of every ReLU input (by value index) proven on the box ``[lower,
    upper]`` ``(n,)``, each at least as tight as the claims; raises :class:`ClaimError`."""
    checked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    feeds = relu_inputs(chain)
    for j, value in enumerate(feeds):
        values = bound_values(chain, lower[None], upper[None], checked, stop=value)
        lo, hi = values.lo[value][0].copy(), values.hi[value][0].copy()
        rows = claims.rows[j]
        if rows.size:
            lam = np.zeros((1, 2 * rows.size, lo.size))
            lam[0, np.arange(rows.size), rows] = 1.0
            lam[0, rows.size + np.arange(rows.size), rows] = -1.0
            slopes = {feeds[k]: s.reshape(1, 2 * rows.size, -1) for k, s in claims.slopes[j].items()}
            found = backward(chain, values, value, lam, np.zeros((1, 2 * rows.size)), slopes).lower[0]
            lo[rows] = np.maximum(lo[rows], found[:rows.size])
            hi[rows] = np.minimum(hi[rows], -found[rows.size:])
        for end, bad in (("lower", claims.lower[j] > lo), ("upper", claims.upper[j] < hi)):
            if bad.any():
                p = int(np.nonzero(bad)[0][0])
                claimed = claims.lower[j][p] if end == "lower" else claims.upper[j][p]
                proven = lo[p] if end == "lower" else hi[p]
                raise ClaimError(f"the claimed {end} bound {claimed!r} of ReLU layer {j}'s input {p} is tighter "
                                 f"than its proof gives ({proven!r})")
        checked[value] = (lo[None], hi[None])
    return checked
