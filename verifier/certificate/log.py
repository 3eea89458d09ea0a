"""Recording one region's input-split tree as branch and bound builds it.

Nodes are numbered in the order they are added, so every parent comes before its children:
the root (the proof box), lower and upper halves of a parent's final box, and re-bound nodes
(the parent's final box bounded again: the full pass after strong branching's scoring pass,
or alpha-CROWN on a stalled box). A node's final box is its box clipped
(:mod:`verifier.bab.clip`) where the search clipped it. The recording is data only; it adds
nothing to what the search decides and costs a few tensor copies per round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import torch
from torch import Tensor


def _stacked(parts: list[tuple[np.ndarray, dict[int, np.ndarray]]]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Per-node records joined, each node once (its last record)."""
    if not parts:
        return np.zeros(0, dtype=np.int64), {}
    ids = np.concatenate([p[0] for p in parts])
    _, last = np.unique(ids[::-1], return_index=True)
    keep = np.sort(ids.size - 1 - last)
    return ids[keep], {j: np.concatenate([p[1][j] for p in parts])[keep] for j in parts[0][1]}


def _host(t: Tensor, dtype: type = np.float64) -> np.ndarray:
    """A tensor's values as a numpy array on the host (the log's one device crossing)."""
    return t.detach().cpu().numpy().astype(dtype, copy=False)


class NodeKind(IntEnum):
    """How a node's box comes from its parent's final box (the file's ``kind`` codes)."""

    ROOT = 0
    LOW = 1
    HIGH = 2
    REBOUND = 3
    INACTIVE = 4  # a ReLU split: the neuron's input <= 0
    ACTIVE = 5  # a ReLU split: the neuron's input >= 0


@dataclass
class ProofLog:
    """One region's tree (see the module docstring) over ``inputs`` input dimensions;
    ``clauses`` are the clause indices (in the region) of the rows the search bounds, ``rows``
    their row counts."""

    inputs: int
    clauses: tuple[int, ...]
    rows: tuple[int, ...]
    parent: list[np.ndarray] = field(default_factory=list)
    kind: list[np.ndarray] = field(default_factory=list)
    dim: list[np.ndarray] = field(default_factory=list)
    point: list[np.ndarray] = field(default_factory=list)
    clips: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    alphas: list[tuple[np.ndarray, dict[int, np.ndarray]]] = field(default_factory=list)
    lowers: list[tuple[np.ndarray, dict[int, np.ndarray]]] = field(default_factory=list)
    betas: list[tuple[np.ndarray, dict[int, np.ndarray]]] = field(default_factory=list)
    neuron: list[np.ndarray] = field(default_factory=list)
    count: int = 0
    incomplete: str | None = None  # why the tree does not prove its clauses alone (None: it does)

    def _add(self, parent: np.ndarray, kind: np.ndarray, dim: np.ndarray, point: np.ndarray,
             neuron: np.ndarray | None = None) -> Tensor:
        ids = np.arange(self.count, self.count + parent.size, dtype=np.int64)
        self.neuron.append(np.full(parent.size, -1, dtype=np.int64) if neuron is None else neuron.astype(np.int64))
        self.parent.append(parent.astype(np.int64))
        self.kind.append(kind.astype(np.int8))
        self.dim.append(dim.astype(np.int64))
        self.point.append(point.astype(np.float64))
        self.count += parent.size
        return torch.from_numpy(ids)

    def root(self) -> Tensor:
        """Adds the root node; returns its id ``(1,)``."""
        return self._add(np.array([-1]), np.array([NodeKind.ROOT]), np.array([-1]), np.array([np.nan]))

    def roots(self, count: int) -> Tensor:
        """Adds ``count`` roots (a forest: one tree per row of a row search, split into trees
        by :meth:`subtrees` before it is written); returns their ids ``(count,)``."""
        return self._add(np.full(count, -1), np.full(count, NodeKind.ROOT), np.full(count, -1),
                         np.full(count, np.nan))

    def halves(self, parent: Tensor, low: tuple[Tensor, Tensor], high: tuple[Tensor, Tensor]) -> Tensor:
        """Adds sibling pairs: ``parent`` ``(M,)`` ids, the lower halves' boxes ``(M, n)`` and
        the upper halves'; returns the ids ``(2M,)``: the lower halves, then the upper ones.
        The cut is where the lower half's upper end lies below the upper half's."""
        lo_hi, hi_hi = _host(low[1]), _host(high[1])
        dim = np.argmax(lo_hi < hi_hi, axis=1)
        point = lo_hi[np.arange(dim.size), dim]
        parents = _host(parent, np.int64)
        both = np.concatenate([parents, parents])
        kinds = np.concatenate([np.full(dim.size, NodeKind.LOW), np.full(dim.size, NodeKind.HIGH)])
        return self._add(both, kinds, np.concatenate([dim, dim]), np.concatenate([point, point]))

    def rebound(self, parent: Tensor) -> Tensor:
        """Adds re-bound nodes of the ``parent`` ``(M,)`` ids; returns their ids."""
        parents = _host(parent, np.int64)
        return self._add(parents, np.full(parents.size, NodeKind.REBOUND), np.full(parents.size, -1),
                         np.full(parents.size, np.nan))

    def relu_halves(self, parent: Tensor, layer: Tensor, neuron: Tensor) -> Tensor:
        """Adds the children of ReLU splits: ``parent`` ``(M,)`` ids, the split neuron's ReLU
        layer position and index in it; returns the ids ``(2M,)``: the active children
        (input ``>= 0``), then the inactive ones."""
        parents, layers, neurons = (_host(t, np.int64) for t in (parent, layer, neuron))
        kinds = np.concatenate([np.full(parents.size, NodeKind.ACTIVE), np.full(parents.size, NodeKind.INACTIVE)])
        twice = (np.concatenate([a, a]) for a in (parents, layers, neurons))
        both, dims, index = twice
        return self._add(both, kinds, dims, np.full(both.size, np.nan), index)

    def beta(self, ids: Tensor, multipliers: dict[int, Tensor]) -> None:
        """Records split multipliers ``beta >= 0`` ``(M, K*R, size)`` of nodes ``ids``, keyed
        like :meth:`alpha` (a checker multiplies them by the signs of the splits on the path)."""
        self.betas.append((_host(ids, np.int64), {j: _host(b, np.float32) for j, b in multipliers.items()}))

    def clip(self, ids: Tensor, box: tuple[Tensor, Tensor], final: tuple[Tensor, Tensor]) -> None:
        """Records the final boxes of nodes ``ids`` where they differ from their boxes."""
        lo, hi, f_lo, f_hi = (_host(t) for t in (*box, *final))
        changed = np.any((lo != f_lo) | (hi != f_hi), axis=1)
        if changed.any():
            self.clips.append((_host(ids, np.int64)[changed], f_lo[changed], f_hi[changed]))

    def lower(self, ids: Tensor, slopes: dict[int, Tensor]) -> None:
        """Records the lower slopes ``(M, size)`` (each 0 or 1: CROWN's choice for ReLU) that
        nodes ``ids`` bounded their rows with, by ReLU layer position, one bit per neuron."""
        if ids.numel() and (not self.lowers or set(self.lowers[0][1]) == set(slopes)):
            self.lowers.append((_host(ids, np.int64), {j: np.packbits(_host(s) > 0.5, axis=1)
                                                    for j, s in slopes.items()}))

    def alpha(self, ids: Tensor, slopes: dict[int, Tensor]) -> None:
        """Records lower slopes ``(M, K*R, size)`` of nodes ``ids`` (padded rows of the
        search's stacked clauses), keyed by the ReLU layer's position among the ReLU layers."""
        self.alphas.append((_host(ids, np.int64), {j: _host(s, np.float32) for j, s in slopes.items()}))

    def subtrees(self, roots: Sequence[int]) -> list[ProofLog]:
        """The trees of a forest's ``roots`` (:meth:`roots`), each a log of its own of one
        clause of one row, nodes renumbered in order; slopes and multipliers are kept where a
        checker uses them: at leaves and at their parents (a child not bounded yet inherits its
        parent's bound). Row searches record no clips or lower bits; a forest with them is
        refused."""
        if not len(roots):
            return []
        if self.clips or self.lowers:
            raise ValueError("a forest with clips or lower slope bits cannot be split into trees")
        parent, kind, dim, point, neuron = (np.concatenate(a) for a in
                                            (self.parent, self.kind, self.dim, self.point, self.neuron))
        owner = np.where(parent < 0, np.arange(parent.size), parent)
        while not np.array_equal(owner, owner[owner]):  # pointer jumping to each node's root
            owner = owner[owner]
        used = np.zeros(parent.size, dtype=bool)
        used[parent[parent >= 0]] = True
        leaf = ~used
        wanted = leaf.copy()
        wanted[parent[(parent >= 0) & leaf]] = True
        alphas, betas = _stacked(self.alphas), _stacked(self.betas)
        found = []
        for root in roots:
            nodes = np.nonzero(owner == root)[0]
            renumber = np.full(parent.size + 1, -1, dtype=np.int64)
            renumber[nodes] = np.arange(nodes.size)
            tree = ProofLog(self.inputs, (0,), (1,))
            tree._add(renumber[parent[nodes]], kind[nodes], dim[nodes], point[nodes], neuron[nodes])
            for source, target in ((alphas, tree.alphas), (betas, tree.betas)):
                ids, values = source
                pick = np.nonzero(wanted[ids] & (owner[ids] == root))[0]
                if pick.size:
                    target.append((renumber[ids[pick]], {j: v[pick] for j, v in values.items()}))
            found.append(tree)
        return found

    def arrays(self, prefix: str, total_rows: int, row_offsets: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The tree as the file's arrays (names prefixed), the slopes spread to the region's
        ``total_rows`` rows (clause ``clauses[i]``'s rows start at ``row_offsets[i]``; rows of
        clauses the search did not bound get slope 0)."""
        out = {f"{prefix}parent": np.concatenate(self.parent), f"{prefix}kind": np.concatenate(self.kind),
               f"{prefix}dim": np.concatenate(self.dim), f"{prefix}point": np.concatenate(self.point)}
        n = self.inputs
        parts = self.clips or [(np.zeros(0, np.int64), np.zeros((0, n)), np.zeros((0, n)))]
        out[f"{prefix}clip_node"] = np.concatenate([p[0] for p in parts]).astype(np.int64)
        out[f"{prefix}clip_lower"] = np.concatenate([p[1] for p in parts])
        out[f"{prefix}clip_upper"] = np.concatenate([p[2] for p in parts])
        out[f"{prefix}lower_node"] = np.concatenate([a[0] for a in self.lowers] or [np.zeros(0)]).astype(np.int64)
        for j in (self.lowers[0][1] if self.lowers else {}):
            out[f"{prefix}lower_{j}"] = np.concatenate([a[1][j] for a in self.lowers])
        out.update(self._per_row(f"{prefix}alpha", self.alphas, total_rows, row_offsets))
        if any(kind.size and kind.max() >= NodeKind.INACTIVE for kind in self.kind):
            out[f"{prefix}neuron"] = np.concatenate(self.neuron)
            out.update(self._per_row(f"{prefix}beta", self.betas, total_rows, row_offsets))
        return out

    def _per_row(self, name: str, parts: list[tuple[np.ndarray, dict[int, np.ndarray]]], total_rows: int,
                 row_offsets: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Per-row values of some nodes (``{name}_node`` and ``{name}_{j}``), spread from the
        search's padded rows to the region's ``total_rows`` (see :meth:`arrays`)."""
        nodes = np.concatenate([a[0] for a in parts] or [np.zeros(0)]).astype(np.int64)
        out: dict[str, np.ndarray] = {f"{name}_node": nodes}
        for j in (parts[0][1] if parts else {}):
            padded = np.concatenate([a[1][j] for a in parts])
            width = max(self.rows)
            spread = np.zeros((padded.shape[0], total_rows, padded.shape[2]), dtype=np.float32)
            for i, (offset, count) in enumerate(zip(row_offsets, self.rows, strict=True)):
                spread[:, offset:offset + count] = padded[:, i * width:i * width + count]
            out[f"{name}_{j}"] = spread
        return out
