"""Walking a region's tree: every node's bounds recomputed, every leaf refuted, the box covered.

Top down, a level of nodes at a time: a node's box is its parent's final box (a half of it, or
all of it); a ReLU split's two children keep the box and add the split (the neuron's input
``<= 0`` or ``>= 0``: their domain is the box's points where the splits on the path hold). Its
values are bounded by :func:`verify_check.bounds.bound_values` from its parent's ReLU-input
bounds (valid on a sub-domain; the root's from the region's proven claims; in a tree of ReLU
splits without CROWN passes, as the search), the split neurons clamped to their side; its rows'
bounds are the best of its parent's, CROWN's, the intervals' and, where the certificate gives
slopes, CROWN's with those (and with the node's split multipliers: ``-beta s x`` at each split
input ``x``, ``<= 0`` on the domain). A clause
is refuted on the node's box when one of its rows has a bound ``> 0``, or when no point of the
box is left where each of its rows' linear lower bounds ``a·x + b`` can be ``<= 0``: along
each input that set lies within ``x_j <= l_j + s/a_j`` (``a_j > 0``) or ``x_j >= u_j - s/|a_j|``
(``a_j < 0``), ``s`` minus the row's bound (ends rounded outward). A clipped node's final box
must hold that set for every clause still open. A node with a clause open must have children;
two halves cover its final box, the two sides of a split cover its domain, a re-bound node is
that box again. So when every check passes, each of the tree's clauses is refuted at every
point of the region's box, for the float32 model. (A half whose
only child re-bounds its box, unclipped, just hands intervals and forms on to that child,
which does the checks: as the search's cheap scoring pass before its full one.)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verify_check.bounds import Linear, Values, bound_values, interval_rows, relu_inputs, row_bounds
from verify_check.certificate import ACTIVE, HIGH, INACTIVE, LOW, REBOUND, ROOT, Tree
from verify_check.model import Chain
from verify_check.spec import Region, float32_box

CHUNK = 2048


class Invalid(Exception):
    """A check failed (the message names the region, the node and the clause)."""


@dataclass
class Level:
    """The state a level of nodes hands to its children (rows: nodes of this level)."""

    position: dict[int, int]
    lower: np.ndarray
    upper: np.ndarray
    prior: dict[int, tuple[np.ndarray, np.ndarray]]
    best: np.ndarray
    closed: np.ndarray
    signs: dict[int, np.ndarray]


@dataclass(frozen=True)
class Rows:
    """A region's spec rows stacked: ``C`` ``(R, out)``, ``d`` ``(R,)``, the clause indicator
    ``member`` ``(R, K)`` and the strict rows ``(R,)``."""

    C: np.ndarray
    d: np.ndarray
    member: np.ndarray
    strict: np.ndarray


def value_sizes(chain: Chain) -> list[int]:
    """The flat size of every value (0: the input)."""
    sizes = [chain.inputs]
    for layer in chain.layers:
        sizes.append(layer.weight.shape[0] if layer.weight is not None else
                     layer.index.shape[0] if layer.index is not None else sizes[-1])
    return sizes


def spec_rows(region: Region) -> Rows:
    """The region's rows stacked with their clause indicator."""
    counts = [c.shape[0] for c in region.C]
    member = np.zeros((sum(counts), len(counts)))
    member[np.arange(sum(counts)), np.repeat(np.arange(len(counts)), counts)] = 1.0
    return Rows(np.concatenate(region.C), np.concatenate(region.d), member, np.concatenate(region.strict))


def _boxes(tree: Tree, ids: np.ndarray, level: Level | None, root: tuple[np.ndarray, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The boxes of nodes ``ids`` and their parents' positions in ``level``."""
    if level is None:
        return root[0][None].copy(), root[1][None].copy(), np.zeros(1, dtype=np.int64)
    pos = np.array([level.position[int(p)] for p in tree.parent[ids]])
    lo, hi = level.lower[pos].copy(), level.upper[pos].copy()
    rows, dims, points, kinds = np.arange(ids.size), tree.dim[ids], tree.point[ids], tree.kind[ids]
    halves = np.nonzero((kinds == LOW) | (kinds == HIGH))[0]
    bad = (points[halves] < lo[halves, dims[halves]]) | (points[halves] > hi[halves, dims[halves]])
    if bad.any():
        raise Invalid(f"node {int(ids[halves[bad][0]])}: split point outside its parent's box")
    low, high = rows[kinds == LOW], rows[kinds == HIGH]
    hi[low, dims[low]] = points[low]
    lo[high, dims[high]] = points[high]
    return lo, hi, pos


def _signs(chain: Chain, tree: Tree, ids: np.ndarray, level: Level | None, pos: np.ndarray
           ) -> dict[int, np.ndarray]:
    """The ReLU splits on the nodes' paths ``(B, n)`` by ReLU input value (+1: ``x >= 0``,
    -1: ``x <= 0``, 0: not split): the parent's, and the node's own split."""
    feeds, sizes = relu_inputs(chain), value_sizes(chain)
    signs = {} if level is None else {i: s[pos].copy() for i, s in level.signs.items()}
    for row in np.nonzero(tree.kind[ids] >= INACTIVE)[0]:
        node = int(ids[row])
        value = feeds[int(tree.dim[node])]
        if value not in signs:
            signs[value] = np.zeros((ids.size, sizes[value]))
        signs[value][row, tree.neuron[node]] = 1.0 if tree.kind[node] == ACTIVE else -1.0
    return signs


def _clamped(prior: dict[int, tuple[np.ndarray, np.ndarray]], signs: dict[int, np.ndarray]
             ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``prior`` with every split neuron's bounds clamped to its side."""
    out = dict(prior)
    for i, s in signs.items():
        lo, hi = prior.get(i, (np.full(s.shape, -np.inf), np.full(s.shape, np.inf)))
        out[i] = (np.where(s > 0, np.maximum(lo, 0.0), lo), np.where(s < 0, np.minimum(hi, 0.0), hi))
    return out


def _clause_boxes(lo: np.ndarray, hi: np.ndarray, lower: np.ndarray, coeff: np.ndarray, member: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per node and clause ``(B, K, n)``, a box holding every point where each of the clause's
    rows' linear lower bounds can be ``<= 0`` (ends rounded outward)."""
    slack = np.where(lower <= 0, -lower, np.nan)[:, :, None]  # (B, R, 1); rows > 0: empty below
    with np.errstate(divide="ignore", invalid="ignore"):
        span = np.nextafter(slack / np.abs(coeff), np.inf)
        row_hi = np.where(coeff > 0, np.nextafter(lo[:, None] + span, np.inf), hi[:, None])
        row_lo = np.where(coeff < 0, np.nextafter(hi[:, None] - span, -np.inf), lo[:, None])
    refuted = ~(lower <= 0)[:, :, None]
    row_hi = np.where(refuted, -np.inf, np.minimum(row_hi, hi[:, None]))
    row_lo = np.where(refuted, np.inf, np.maximum(row_lo, lo[:, None]))
    mask = member.T.astype(bool)  # (K, R)
    clause_lo = np.stack([row_lo[:, m].max(axis=1) if m.any() else lo for m in mask], axis=1)
    clause_hi = np.stack([row_hi[:, m].min(axis=1) if m.any() else hi for m in mask], axis=1)
    return clause_lo, clause_hi


def _check_clips(tree: Tree, ids: np.ndarray, lo: np.ndarray, hi: np.ndarray, clause_lo: np.ndarray,
                 clause_hi: np.ndarray, closed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nodes' final boxes; raises :class:`Invalid` where a clip leaves out a point that a
    clause still open may hold at."""
    final_lo, final_hi = lo.copy(), hi.copy()
    for row, node in enumerate(ids.tolist()):
        if node not in tree.clips:
            continue
        clo, chi = tree.clips[node]
        if np.any(clo < lo[row]) or np.any(chi > hi[row]) or np.any(clo > chi):
            raise Invalid(f"node {node}: its clipped box is not a sub-box of its box")
        for k in np.nonzero(~closed[row])[0]:
            out = np.maximum(clo - clause_lo[row, k], clause_hi[row, k] - chi)
            if np.any(out > 0):
                j = int(np.argmax(out))
                raise Invalid(f"node {node}: the clip leaves out points where clause {k} is not refuted (input "
                              f"{j}: [{clause_lo[row, k, j]!r}, {clause_hi[row, k, j]!r}] is not within "
                              f"[{clo[j]!r}, {chi[j]!r}])")
        final_lo[row], final_hi[row] = clo, chi
    return final_lo, final_hi


def _given_slopes(chain: Chain, tree: Tree, ids: np.ndarray) -> dict[int, np.ndarray] | None:
    """The certificate's lower slopes ``(B, n)`` of the nodes ``ids`` by ReLU layer index (1
    for nodes without), or None when no node has any."""
    where = [tree.lower_index.get(int(node), -1) for node in ids.tolist()]
    if not tree.lower or max(where) < 0:
        return None
    relus = relu_inputs(chain)
    pick = np.array(where)
    return {relus[j]: np.where((pick >= 0)[:, None], bits[np.maximum(pick, 0)], 1.0) for j, bits in tree.lower.items()}


def _given_rows(chain: Chain, ids: np.ndarray, values: Values, rows: Rows, index: dict[int, int],
                given: dict[int, np.ndarray], betas: tuple[dict[int, int], dict[int, np.ndarray],
                                                        dict[int, np.ndarray]] | None = None) -> Linear:
    """Row bounds ``(B, R)`` and coefficients with the certificate's lower slopes (``given``,
    by ReLU position: per row ``(A, R, n)`` or for all rows ``(A, n)``) at the nodes ``index``
    names, with ``betas`` (node -> row, multipliers by ReLU position, split signs by ReLU input
    value ``(B, n)``) where given; ``-inf`` (and zero coefficients) at the other nodes."""
    found = Linear(np.full((ids.size, rows.d.size), -np.inf), np.zeros((ids.size, rows.d.size, chain.inputs)))
    sel = np.array([i for i, node in enumerate(ids.tolist()) if node in index], dtype=np.int64)
    if sel.size == 0 or not given:
        return found
    which = np.array([index[int(ids[i])] for i in sel])
    relus = relu_inputs(chain)
    slopes = {relus[j]: s[which] if s.ndim == 3 else np.broadcast_to(s[which][:, None], (sel.size, rows.d.size,
                                                                                          s.shape[1]))
              for j, s in given.items()}
    part = Values([v[sel] for v in values.lo], [v[sel] for v in values.hi],
                  [None if e is None else e[sel] for e in values.err])
    bound = row_bounds(chain, part, rows.C, rows.d, slopes, _split_terms(chain, ids[sel], betas, sel))
    found.lower[sel], found.coeff[sel] = bound.lower, bound.coeff
    return found


def _split_terms(chain: Chain, ids: np.ndarray, betas: tuple[dict[int, int], dict[int, np.ndarray],
                                                              dict[int, np.ndarray]] | None, sel: np.ndarray
                 ) -> dict[int, np.ndarray] | None:
    """``beta s`` ``(A, R, n)`` by ReLU input value for the nodes ``ids`` (rows ``sel`` of the
    signs); zero for nodes without multipliers and neurons not split."""
    if betas is None or not betas[1]:
        return None
    index, beta, signs = betas
    where = np.array([index.get(int(node), -1) for node in ids.tolist()])
    relus = relu_inputs(chain)
    terms = {}
    for j, b in beta.items():
        value = relus[j]
        if value in signs:
            picked = np.where((where >= 0)[:, None, None], b[np.maximum(where, 0)], 0.0)
            terms[value] = picked * signs[value][sel][:, None, :]
    return terms


def _node_rows(chain: Chain, tree: Tree, ids: np.ndarray, values: Values, rows: Rows,
               signs: dict[int, np.ndarray]) -> tuple[np.ndarray, Linear, Linear]:
    """The best row bounds ``(B, R)`` of nodes ``ids`` on their values (CROWN with the default
    and the certificate's slopes, alpha slopes with the split multipliers, intervals), and the
    two CROWN bounds."""
    crown = row_bounds(chain, values, rows.C, rows.d)
    given = _given_rows(chain, ids, values, rows, tree.lower_index, tree.lower)
    best = np.maximum(np.maximum(crown.lower, given.lower), interval_rows(values, rows.C, rows.d))
    best = np.maximum(best, _single_rows(values, rows))
    alpha = _given_rows(chain, ids, values, rows, tree.alpha_index, tree.alpha, (tree.beta_index, tree.beta, signs))
    return np.maximum(best, alpha.lower), crown, given


def _refuted(best: np.ndarray, rows: Rows, values: Values) -> np.ndarray:
    """Clauses ``(B, K)`` with a row bound ``> 0`` (``>= 0`` for a strict row ``c·y < d``), all
    of them on a node whose domain is empty (some value's lower bound above its upper bound: its
    splits contradict each other or the box)."""
    empty = np.any([(lo > hi).any(axis=1) for lo, hi in zip(values.lo, values.hi, strict=True)], axis=0)
    return ((((best > 0) | (rows.strict & (best >= 0))).astype(np.float64) @ rows.member) > 0) | empty[:, None]


def _single_rows(values: Values, rows: Rows) -> np.ndarray:
    """For rows ``c y_j - d`` with one coefficient, a power of two (``y_j <= d``, ``-y_j <= d``),
    a lower bound ``(B, R)`` from ``y_j``'s bounds that is 0 exactly when the exact one is
    (``-inf`` where it is negative and for other rows): ``d / c`` is then exact, and a difference
    of two floats is rounded to 0 only when it is 0, so a strict row is refuted exactly at its
    threshold."""
    found = np.full((values.lo[-1].shape[0], rows.d.size), -np.inf)
    for r in range(rows.d.size):
        nonzero = np.nonzero(rows.C[r])[0]
        if nonzero.size != 1:
            continue
        j, c = int(nonzero[0]), float(rows.C[r, nonzero[0]])
        t = rows.d[r] / c
        if abs(np.frexp(c)[0]) != 0.5 or Fraction(t) * Fraction(c) != Fraction(rows.d[r]):
            continue
        gap = values.lo[-1][:, j] - t if c > 0 else t - values.hi[-1][:, j]
        # exact where 0; where > 0, below both gap and |c| gap (|c| gap may underflow to 0: never above)
        found[:, r] = np.where(gap > 0, np.minimum(gap, abs(c) * gap), np.where(gap == 0, 0.0, -np.inf))
    return found


def _passes_on(tree: Tree, node: int) -> bool:
    """Whether a node only hands bounds on: a half, not clipped, whose one child (a re-bound
    node) bounds the same box again and is checked there (as the search's scoring pass)."""
    kids = tree.children[node]
    half = tree.kind[node] in (LOW, HIGH) and node not in tree.clips
    return half and len(kids) == 1 and tree.kind[kids[0]] == REBOUND


def _handed_on(chain: Chain, tree: Tree, ids: np.ndarray, level: Level, root: tuple[np.ndarray, np.ndarray]
               ) -> Level:
    """Nodes that only hand bounds on (:func:`_passes_on`): intervals and forms from their
    parent's bounds, no refutation claimed."""
    lo, hi, pos = _boxes(tree, ids, level, root)
    prior = {i: (b[0][pos], b[1][pos]) for i, b in level.prior.items()}
    values = bound_values(chain, lo, hi, prior, _given_slopes(chain, tree, ids), refine=False)
    keep = {i: (values.lo[i], values.hi[i]) for i in relu_inputs(chain)}
    return Level({int(n): r for r, n in enumerate(ids.tolist())}, lo, hi, keep, level.best[pos].copy(),
                 level.closed[pos].copy(), {i: s[pos] for i, s in level.signs.items()})


def _chunk(chain: Chain, tree: Tree, ids: np.ndarray, level: Level | None, rows: Rows,
           root: tuple[np.ndarray, np.ndarray], claims: dict[int, tuple[np.ndarray, np.ndarray]]) -> Level:
    """Bounds one chunk of a level's nodes and checks them (see the module docstring). In a
    tree of ReLU splits a node's intermediate bounds come from its parent's by intervals and
    forms (no CROWN pass: as the search bounds its domains; CROWN's bounds are not monotone in
    the intermediate bounds, and tighter ones can give the certificate's slopes a looser row
    bound). A leaf left with a clause open is bounded once more with CROWN passes, from its
    parent's bounds and from the checked ``claims`` alone."""
    lo, hi, pos = _boxes(tree, ids, level, root)
    signs = _signs(chain, tree, ids, level, pos)
    prior = _clamped({i: (b[0][pos], b[1][pos]) for i, b in (claims if level is None else level.prior).items()}, signs)
    slopes = _given_slopes(chain, tree, ids)
    splits = bool((tree.kind >= INACTIVE).any())  # ReLU-split nodes: as the search, intervals from the parent's
    values = bound_values(chain, lo, hi, prior, slopes, refine=not splits)
    best, crown, given = _node_rows(chain, tree, ids, values, rows, signs)
    others = ~np.isin(np.arange(rows.member.shape[1]), tree.clauses)  # clauses other trees refute
    closed = np.broadcast_to(others, (ids.size, others.size)).copy()
    if level is not None:
        best, closed = np.maximum(best, level.best[pos]), level.closed[pos].copy()
    closed |= _refuted(best, rows, values)
    clause_lo, clause_hi = _clause_boxes(lo, hi, crown.lower, crown.coeff, rows.member)
    other_lo, other_hi = _clause_boxes(lo, hi, given.lower, given.coeff, rows.member)
    clause_lo, clause_hi = np.maximum(clause_lo, other_lo), np.minimum(clause_hi, other_hi)
    closed |= (clause_lo > clause_hi).any(axis=2)
    final_lo, final_hi = _check_clips(tree, ids, lo, hi, clause_lo, clause_hi, closed)
    leaves = np.array([not tree.children[node] for node in ids.tolist()])
    retry = np.nonzero(leaves & ~closed.all(axis=1))[0]
    if retry.size:
        part = None if slopes is None else {j: s[retry] for j, s in slopes.items()}
        mine = {i: s[retry] for i, s in signs.items()}
        floor = _clamped({i: (np.repeat(b[0], retry.size, 0), np.repeat(b[1], retry.size, 0))
                          for i, b in claims.items()}, mine)
        for start in (floor, {i: (b[0][retry], b[1][retry]) for i, b in prior.items()})[:1 + splits]:
            fresh = bound_values(chain, lo[retry], hi[retry], start, part)
            best[retry] = np.maximum(best[retry], _node_rows(chain, tree, ids[retry], fresh, rows, mine)[0])
            closed[retry] |= _refuted(best[retry], rows, fresh)
    for row in np.nonzero(leaves & ~closed.all(axis=1))[0]:
        k = int(np.nonzero(~closed[row])[0][0])
        bound = float(np.max(np.where(rows.member[:, k] > 0, best[row], -np.inf)))
        raise Invalid(f"leaf {int(ids[row])}: clause {k} is not refuted (its best row bound is {bound:.6g})")
    keep = {i: (values.lo[i], values.hi[i]) for i in relu_inputs(chain)}
    return Level({int(n): r for r, n in enumerate(ids.tolist())}, final_lo, final_hi, keep, best, closed, signs)


def _joined(parts: list[Level]) -> Level:
    if len(parts) == 1:
        return parts[0]
    position, offset = {}, 0
    for part in parts:
        position.update({n: r + offset for n, r in part.position.items()})
        offset += part.lower.shape[0]
    return Level(position, np.concatenate([p.lower for p in parts]), np.concatenate([p.upper for p in parts]),
                 {i: (np.concatenate([p.prior[i][0] for p in parts]), np.concatenate([p.prior[i][1] for p in parts]))
                  for i in parts[0].prior}, np.concatenate([p.best for p in parts]),
                 np.concatenate([p.closed for p in parts]), _joined_signs(parts))


def _joined_signs(parts: list[Level]) -> dict[int, np.ndarray]:
    """The parts' split signs stacked (zeros where a part has none on a value)."""
    widths = {i: s.shape[1] for part in parts for i, s in part.signs.items()}
    return {i: np.concatenate([p.signs.get(i, np.zeros((p.lower.shape[0], n))) for p in parts])
            for i, n in widths.items()}


def check_region(chain: Chain, region: Region, tree: Tree, claims: dict[int, tuple[np.ndarray, np.ndarray]]
                 ) -> tuple[int, float]:
    """Checks one tree of a region, from the region's checked ``claims`` (ReLU input value ->
    bounds ``(1, n)``); returns the number of leaves and the margin of the first row: the
    least, over leaves, of its bound (0 where that is below 0: a leaf refuted otherwise), so
    that ``c y - d >= margin`` on the box where that row is the tree's only one. Raises
    :class:`Invalid`."""
    depth = np.zeros(tree.parent.size, dtype=np.int64)
    for node in range(1, tree.parent.size):
        depth[node] = depth[tree.parent[node]] + 1
    rows = spec_rows(region)
    root = float32_box(region)
    if root[0].size != chain.inputs:
        raise Invalid(f"the property bounds {root[0].size} inputs, the model has {chain.inputs}")
    level: Level | None = None
    margin = np.inf
    for d in range(int(depth.max()) + 1):
        ids = np.nonzero(depth == d)[0]
        if d == 0 and (ids.size != 1 or tree.kind[ids[0]] != ROOT):
            raise Invalid("the tree must have one root")
        light = np.array([_passes_on(tree, int(node)) for node in ids], dtype=bool)
        parts = [_chunk(chain, tree, ids[~light][s:s + CHUNK], level, rows, root, claims)
                 for s in range(0, int((~light).sum()), CHUNK)]
        if level is not None:
            parts += [_handed_on(chain, tree, ids[light][s:s + CHUNK], level, root)
                      for s in range(0, int(light.sum()), CHUNK)]
        level = _joined(parts)
        leaves = [level.position[int(node)] for node in ids if not tree.children[node]]
        margin = min(margin, float(np.maximum(level.best[leaves, 0], 0.0).min(initial=np.inf)))
    return sum(1 for kids in tree.children if not kids), margin
