"""Checking a region's claimed bounds of the ReLU inputs (:class:`verify_check.certificate.Claims`),
one stage of them at a time, as the search found them.

A stage starts from the checker's own bounds (intervals, forms, CROWN with the default slopes)
over the earlier stages' proven ones. Then, layer by layer, the positions with proving slopes:
CROWN with those slopes on the rows ``+e_p`` and ``-e_p``, from the start and the slopes'
bounds of the earlier layers (CROWN with fixed slopes is not monotone in the intermediate
bounds, so they are taken as the search had them, not tightened further first). Then, layer by
layer again, CROWN from all of those, and where the certificate gives a tree for a claim (a
search on the network cut at the layer's input), that tree: checked as a region's tree
(:func:`verify_check.tree.check_region`) on the cut network from the earlier layers' proven
bounds, refuting ``side * x_p < bound``, it proves that bound and its margin. A claim holds
when its lower end is at most the best proven lower bound and its upper end at least the best
proven upper bound; the proven bounds (at least as tight) are what the trees then use.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from verify_check.bounds import backward, bound_values, relu_inputs
from verify_check.certificate import Claims, Tree
from verify_check.model import Chain
from verify_check.spec import Region, float32_box
from verify_check.tree import Invalid, check_region, value_sizes

Known = dict[int, tuple[np.ndarray, np.ndarray]]


class ClaimError(Exception):
    """A claimed bound is tighter than what its proof gives (the message names it)."""


def checked_claims(chain: Chain, region: Region, claims: Claims, floor: Known) -> Known:
    """Bounds ``(1, n)`` of every ReLU input (by value index) proven on the region's box, each
    at least as tight as the claims and as ``floor`` (the earlier stages' proven bounds);
    raises :class:`ClaimError`."""
    lower, upper = float32_box(region)
    feeds = relu_inputs(chain)
    start = bound_values(chain, lower[None], upper[None], floor)
    checked = _by_slopes(chain, lower, upper, claims, {v: (start.lo[v], start.hi[v]) for v in feeds})
    for j, value in enumerate(feeds):
        values = bound_values(chain, lower[None], upper[None], checked, stop=value)
        lo, hi = values.lo[value][0].copy(), values.hi[value][0].copy()
        for p, side, bound, tree in claims.trees[j]:
            proven = _tree_bound(chain, region, checked, j, value, p, side, bound, tree)
            lo[p], hi[p] = (max(lo[p], proven), hi[p]) if side > 0 else (lo[p], min(hi[p], -proven))
        for end, bad in (("lower", claims.lower[j] > lo), ("upper", claims.upper[j] < hi)):
            if bad.any():
                p = int(np.nonzero(bad)[0][0])
                claimed = claims.lower[j][p] if end == "lower" else claims.upper[j][p]
                proven = lo[p] if end == "lower" else hi[p]
                raise ClaimError(f"the claimed {end} bound {claimed!r} of ReLU layer {j}'s input {p} is tighter "
                                 f"than its proof gives ({proven!r})")
        checked[value] = (lo[None], hi[None])
    return checked


def _by_slopes(chain: Chain, lower: np.ndarray, upper: np.ndarray, claims: Claims, known: Known) -> Known:
    """``known`` tightened, layer by layer, by CROWN with the claims' proving slopes on their
    positions' rows ``+e_p`` and ``-e_p`` (intervals and forms from the bounds so far)."""
    feeds = relu_inputs(chain)
    for j, value in enumerate(feeds):
        rows = claims.rows[j]
        if not rows.size:
            continue
        values = bound_values(chain, lower[None], upper[None], known, refine=False, stop=value)
        lo, hi = values.lo[value][0].copy(), values.hi[value][0].copy()
        lam = np.zeros((1, 2 * rows.size, lo.size))
        lam[0, np.arange(rows.size), rows] = 1.0
        lam[0, rows.size + np.arange(rows.size), rows] = -1.0
        slopes = {feeds[k]: s.reshape(1, 2 * rows.size, -1) for k, s in claims.slopes[j].items()}
        found = backward(chain, values, value, lam, np.zeros((1, 2 * rows.size)), slopes).lower[0]
        lo[rows], hi[rows] = np.maximum(lo[rows], found[:rows.size]), np.minimum(hi[rows], -found[rows.size:])
        known[value] = (lo[None], hi[None])
    return known


def _tree_bound(chain: Chain, region: Region, checked: Known, j: int, value: int, p: int, side: int, bound: float,
                tree: Tree) -> float:
    """The lower bound of ``side * x_p`` (``x``: the ``j``-th ReLU layer's input, value
    ``value``) that a claim's tree proves: ``bound`` plus its margin, rounded down."""
    cut = Chain(chain.inputs, chain.layers[:value], value_sizes(chain)[value], chain.sha256)
    C = np.zeros((1, cut.outputs))
    C[0, p] = side
    row = dataclasses.replace(region, C=(C,), d=(np.array([bound]),), strict=(np.array([True]),))
    try:
        margin = check_region(cut, row, tree, checked)[1]
    except Invalid as exc:
        raise ClaimError(f"the tree of ReLU layer {j}'s input {p} (side {side}, bound {bound!r}): {exc}") from None
    return max(bound, float(np.nextafter(bound + margin, -np.inf)))  # side * x_p - bound >= margin
