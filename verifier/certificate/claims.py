"""What a region's root bounds rest on, for a certificate: the intermediate bounds of the ReLU
inputs as *claims*, with the lower slopes that prove the ones alpha-CROWN found value by value,
and the slopes behind the final rows alpha-CROWN refuted clauses with.

A checker verifies the claims value by value (each from the earlier ones: its own interval and
CROWN bounds, and CROWN with the given slopes on the rows ``+e_p`` and ``-e_p`` of the claimed
positions), then bounds the final rows from them. The record is data only: it changes nothing
the verifier decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.certificate.log import ProofLog

LOOSENING = 1e-6
"""Claims are written this much (relative, plus the same absolute) looser than found: a checker
recomputes them its own way (its rounding allowances, its default slopes where bounds tie, the
earlier values' bounds as it proves them), which may come out a little lower (by 1.3e-7
relative on one MNIST 256x6 bound). A checker continues from the bounds it proves, not from the
claims, so a looser claim weakens no later bound."""


@dataclass
class ValueProof:
    """The best bounds found so far by recorded slopes for positions ``positions`` ``(P,)`` of
    one value: ``found`` ``(2, P)`` (lower bounds of ``+x_p`` and of ``-x_p``) and, per
    ReLU-like node name, the lower slopes ``(2, P, size)`` that gave them."""

    positions: Tensor
    found: Tensor
    slopes: dict[str, Tensor]


@dataclass
class RootRecord:
    """One region's root proof data (see the module docstring): ``values``, value name ->
    :class:`ValueProof`; ``rows``, clause index in the region -> node name -> the lower slopes
    ``(R_c, size)`` of its rows' alpha-CROWN bounds."""

    values: dict[str, ValueProof] = field(default_factory=dict)
    rows: dict[int, dict[str, Tensor]] = field(default_factory=dict)

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
        names |= {name for proof in self.values.values() for name in proof.slopes}
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
    """The file's claim arrays (names prefixed): for each ReLU-like node ``j`` of ``relus``
    (node name, input value, in order) the claimed bounds ``claim_lower_j``/``claim_upper_j``
    (its input's flat ``bounds``, loosened), the positions with slopes ``claim_rows_j`` and
    their slopes ``claim_slopes_j_k`` ``(2, P, n_k)`` for each earlier node ``k``."""
    out: dict[str, np.ndarray] = {}
    for j, (_, value) in enumerate(relus):
        lower, upper = loosened(*bounds[value])
        out[f"{prefix}claim_lower_{j}"], out[f"{prefix}claim_upper_{j}"] = lower, upper
        proof = record.values.get(value)
        positions = np.zeros(0, np.int64) if proof is None else proof.positions.numpy().astype(np.int64)
        out[f"{prefix}claim_rows_{j}"] = positions
        for k, (node, _) in enumerate(relus[:j]):
            slopes = None if proof is None else proof.slopes.get(node)
            if slopes is not None:
                out[f"{prefix}claim_slopes_{j}_{k}"] = slopes.numpy().astype(np.float32)
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
