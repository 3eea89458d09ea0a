"""What a region's root bounds rest on, for a certificate: the intermediate bounds of the ReLU
inputs as *claims*, with the lower slopes that prove the ones alpha-CROWN found value by value,
the trees of the searches that tightened them on deep networks (:mod:`verifier.bab.tighten`),
and the slopes behind the final rows alpha-CROWN refuted clauses with.

Claims come in stages (:meth:`RootRecord.close_stage`): each round of value-by-value
alpha-CROWN, then the tightening. A checker verifies a stage's claims value by value from the
earlier stages' bounds (its own interval and CROWN bounds; CROWN with the given slopes on the
rows ``+e_p`` and ``-e_p`` of the claimed positions; each tree on the network cut at the value,
with the rows ``+-e_p``), then bounds the final rows from the last stage. The record is data
only: it changes nothing the verifier decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.certificate.log import ProofLog

LOOSENING = 1e-4
"""Claims are written this much (relative, plus the same absolute) looser than found: a checker
recomputes them its own way (its rounding allowances, which on a deep layer's input exceed the
verifier's, its default slopes where bounds tie, the earlier values' bounds as it proves them),
which may come out a little lower (by 1.3e-7 relative on one MNIST 256x6 bound; by 1.1e-5 on a
third layer's input of 256x6 with 1e-6 allowed, the first value at this value). A checker
continues from the bounds it proves, not from the claims, so a looser claim weakens no later
bound (a stable neuron's claim is its sign only, see :func:`loosened`)."""


@dataclass
class ValueProof:
    """The best bounds found so far by recorded slopes for positions ``positions`` ``(P,)`` of
    one value: ``found`` ``(2, P)`` (lower bounds of ``+x_p`` and of ``-x_p``) and, per
    ReLU-like node name, the lower slopes ``(2, P, size)`` that gave them."""

    positions: Tensor
    found: Tensor
    slopes: dict[str, Tensor]


@dataclass
class RowTrees:
    """The search that tightened bounds of one value (:mod:`verifier.bab.tighten`): its
    ``forest`` (root ``i`` for row ``i``), per row the flat position, the side (+1: a lower
    bound of ``x_p``, -1: an upper bound, i.e. a lower bound of ``-x_p``) and the lower bound
    of ``side * x_p`` found (``+inf``: ``side * x_p > 0`` on the whole box)."""

    forest: ProofLog
    positions: np.ndarray
    sides: np.ndarray
    found: np.ndarray


@dataclass(frozen=True)
class Stage:
    """Bounds of the ReLU inputs found by one stage of a root proof (value -> flat lower,
    upper), the value proofs and the tightening searches recorded in it."""

    bounds: dict[str, tuple[np.ndarray, np.ndarray]]
    values: dict[str, ValueProof]
    trees: dict[str, list[RowTrees]]


@dataclass
class RootRecord:
    """One region's root proof data (see the module docstring): ``values``, value name ->
    :class:`ValueProof`; ``rows``, clause index in the region -> node name -> the lower slopes
    ``(R_c, size)`` of its rows' alpha-CROWN bounds; ``trees``, value name -> the searches that
    tightened its bounds (:class:`RowTrees`); ``stages``: the earlier stages' bounds, value
    proofs and searches (:meth:`close_stage`)."""

    values: dict[str, ValueProof] = field(default_factory=dict)
    rows: dict[int, dict[str, Tensor]] = field(default_factory=dict)
    trees: dict[str, list[RowTrees]] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    def close_stage(self, bounds: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Ends a stage before the intermediate bounds are tightened again (a round of
        value-by-value alpha-CROWN, a search), if it recorded anything: its ``bounds`` and the
        value proofs and searches so far are kept apart. A proof gives its bound with the
        intermediate bounds it was found with; a checker proves each stage's claims from the
        earlier stages' bounds (CROWN with fixed slopes is not monotone in the intermediate
        bounds: the tighter bounds of a later stage may not reproduce it)."""
        if self.values or self.trees:
            self.stages.append(Stage(bounds, self.values, self.trees))
            self.values, self.trees = {}, {}

    def add_value(self, value: str, positions: Tensor, found: Tensor, slopes: dict[str, Tensor]) -> None:
        """Merges bounds ``found`` ``(2, k)`` of ``value``'s positions ``positions`` ``(k,)``
        proven by ``slopes`` (node -> ``(2, k, size)``): a position keeps the slopes of its best
        bound in each direction."""
        positions, found = positions.detach().cpu(), found.detach().cpu().double()
        slopes = {name: s.detach().cpu().float().reshape(2, positions.numel(), -1) for name, s in slopes.items()}
        old = self.values.get(value)
        if old is None:
            self.values[value] = ValueProof(positions, found, slopes)
            return
        index = {int(p): i for i, p in enumerate(old.positions.tolist())}
        fresh = [p for p in positions.tolist() if p not in index]
        if fresh:  # new positions: grow the record with -inf bounds and zero slopes
            grow = len(fresh)
            old.positions = torch.cat([old.positions, torch.tensor(fresh, dtype=old.positions.dtype)])
            old.found = torch.cat([old.found, torch.full((2, grow), -torch.inf, dtype=old.found.dtype)], dim=1)
            old.slopes = {k: torch.cat([s, s.new_zeros(2, grow, s.shape[2])], dim=1) for k, s in old.slopes.items()}
            index.update({p: len(index) + i for i, p in enumerate(fresh)})
        at = torch.tensor([index[int(p)] for p in positions.tolist()], dtype=torch.long)
        better = found > old.found[:, at]  # (2, k)
        old.found[:, at] = torch.where(better, found, old.found[:, at])
        for name, s in slopes.items():
            mine = old.slopes.setdefault(name, s.new_zeros(2, old.positions.numel(), s.shape[2]))
            mine[:, at] = torch.where(better.unsqueeze(2), s, mine[:, at])

    def foreign(self, nodes: set[str]) -> list[str]:
        """The recorded nodes outside ``nodes`` (e.g. a MaxPool's alpha plane weights, which
        the format does not hold: a proof that used them is not certified)."""
        names = {name for rows in self.rows.values() for name in rows}
        for values in [self.values, *(stage.values for stage in self.stages)]:
            names |= {name for proof in values.values() for name in proof.slopes}
        return sorted(names - nodes)

    def add_rows(self, clause: int, slopes: dict[str, Tensor]) -> None:
        """The slopes ``(1, R_c, *shape)`` (node -> slopes) behind clause ``clause``'s row bounds."""
        self.rows[clause] = {name: s.detach().cpu().float().reshape(s.shape[1], -1) for name, s in slopes.items()}


def loosened(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Claims a little looser than the bounds found (see :data:`LOOSENING`), and of a stable
    neuron only its sign (no relaxation depends on more: ``(-inf, 0]`` for an inactive one,
    ``[0, inf)`` for an active one; a checker's own bounds may not reach the rest)."""
    low, high = lower - LOOSENING * (1 + np.abs(lower)), upper + LOOSENING * (1 + np.abs(upper))
    inactive, active = upper <= 0, lower >= 0
    return (np.where(inactive, -np.inf, np.where(active, np.minimum(low, 0.0), low)),
            np.where(active, np.inf, np.where(inactive, np.maximum(high, 0.0), high)))


def claim_arrays(prefix: str, record: RootRecord, bounds: dict[str, tuple[np.ndarray, np.ndarray]],
                 relus: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The file's claim arrays (names prefixed), a stage at a time (:meth:`RootRecord.close_stage`;
    stage ``s >= 1`` prefixed ``s{s}_`` too, the last one with the final ``bounds``): for each
    ReLU-like node ``j`` of ``relus`` (node name, input value, in order) the claimed bounds
    ``claim_lower_j``/``claim_upper_j`` (its input's flat bounds, loosened), the positions with
    slopes ``claim_rows_j`` and their slopes ``claim_slopes_j_k`` ``(2, P, n_k)`` for each
    earlier node ``k``, and the trees of the searches that tightened them (:func:`tree_arrays`)."""
    stages = [*record.stages, Stage(bounds, record.values, record.trees)]
    out: dict[str, np.ndarray] = {}
    for s, stage in enumerate(stages):
        out.update(_stage_arrays(prefix if s == 0 else f"{prefix}s{s}_", stage, relus))
    return out


def _stage_arrays(prefix: str, stage: Stage, relus: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """One stage's claim arrays (see :func:`claim_arrays`)."""
    out: dict[str, np.ndarray] = {}
    for j, (_, value) in enumerate(relus):
        lower, upper = loosened(*stage.bounds[value])
        out[f"{prefix}claim_lower_{j}"], out[f"{prefix}claim_upper_{j}"] = lower, upper
        out.update(tree_arrays(f"{prefix}claim_{j}_", stage.trees.get(value, []), lower, upper))
        proof = stage.values.get(value)
        positions = np.zeros(0, np.int64) if proof is None else proof.positions.numpy().astype(np.int64)
        out[f"{prefix}claim_rows_{j}"] = positions
        for k, (node, _) in enumerate(relus[:j]):
            slopes = None if proof is None else proof.slopes.get(node)
            if slopes is not None:
                out[f"{prefix}claim_slopes_{j}_{k}"] = slopes.numpy().astype(np.float32)
    return out


def tree_arrays(prefix: str, searches: list[RowTrees], lower: np.ndarray, upper: np.ndarray
                ) -> dict[str, np.ndarray]:
    """The trees behind claims ``lower``/``upper`` of one value: ``{prefix}trees`` ``(T, 2)``
    (position, side), ``{prefix}tree_bounds`` ``(T,)``, the lower bound of ``side * x_p`` each
    proves (0 where the search proved the sign: the neuron is stable; else the bound found,
    loosened by half of :data:`LOOSENING`), and tree ``t``'s arrays ``{prefix}{t}_...``. Only
    trees that reach the claim are written (elsewhere other proofs give it)."""
    out: dict[str, np.ndarray] = {}
    chosen: list[tuple[int, int]] = []
    proves: list[float] = []
    for search in searches:
        with np.errstate(invalid="ignore"):  # +inf - inf: replaced by 0 (the sign) below
            loose = search.found - 0.5 * LOOSENING * (1 + np.abs(search.found))
        bound = np.where(np.isposinf(search.found), 0.0, loose)
        claim = np.where(search.sides > 0, lower[search.positions], -upper[search.positions])
        rows = np.nonzero(np.isfinite(bound) & (claim <= bound))[0]
        for row, tree in zip(rows.tolist(), search.forest.subtrees(rows.tolist()), strict=True):
            out.update(tree.arrays(f"{prefix}{len(chosen)}_", 1, (0,)))
            chosen.append((int(search.positions[row]), int(search.sides[row])))
            proves.append(float(bound[row]))
    if chosen:
        out[f"{prefix}trees"] = np.array(chosen, dtype=np.int64).reshape(-1, 2)
        out[f"{prefix}tree_bounds"] = np.array(proves, dtype=np.float64)
    return out


@dataclass(frozen=True)
class RootProof:
    """What a certificate needs of a region proven at its root by alpha-CROWN: the ``record``,
    the final flat bounds of the values (name -> lower, upper) and the ReLU-like nodes in graph
    order (node name, input value name)."""

    record: RootRecord
    bounds: dict[str, tuple[np.ndarray, np.ndarray]]
    relus: list[tuple[str, str]]


def root_log(proof: RootProof, clauses: list[int], counts: list[int], inputs: int) -> ProofLog | None:
    """A one-node tree whose root carries the alpha-CROWN slopes of ``clauses`` (their indices
    in the region, whose row counts are ``counts``), padded to the longest clause; None when
    one of them has no recorded slopes. A node without recorded slopes for some clause gets
    CROWN's default lower slope (1 where ``u >= -l``: it had no unstable neuron there)."""
    if any(k not in proof.record.rows for k in clauses):
        return None
    log = ProofLog(inputs, tuple(clauses), tuple(counts[k] for k in clauses))
    root = log.root()
    if not clauses:
        return log
    width = max(counts[k] for k in clauses)
    slopes: dict[int, Tensor] = {}
    for j, (node, value) in enumerate(proof.relus):
        lower, upper = proof.bounds[value]
        default = torch.from_numpy((upper >= -lower).astype(np.float32))
        rows = []
        for k in clauses:
            mine = proof.record.rows[k].get(node, default.expand(counts[k], -1))
            rows.append(torch.cat([mine, default.expand(width - counts[k], -1)]))
        slopes[j] = torch.cat(rows).unsqueeze(0)
    log.alpha(root, slopes)
    return log
