"""The store of open ReLU-split domains (:mod:`verifier.bab.relu_split`): chunks appended as
they come, domains taken out by position, at a cost that does not grow with the store.

A search round adds the children of one batch and takes the batch to bound next (the lowest
bounds, or while draining the highest). Keeping the store as one batch of tensors made every
round copy all of it twice (the rest after taking, the whole after adding): on CIFAR CNNs with
20,000 stored domains of 100 kB that is seconds per round, and a round started just before the
deadline overran it. Here each added batch stays a chunk; taking a domain gathers its rows and
marks it dead; a chunk is compacted once half of it is dead (each domain is copied at most once
more in all) and dropped once all of it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.bab.relu_domains import _cat, _Domains


@dataclass
class _Chunk:
    """Domains added together and which of them are still in the store."""

    domains: _Domains
    alive: Tensor
    live: int


class DomainStore:
    """Open domains (see the module docstring)."""

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self.size = 0

    def add(self, domains: _Domains) -> None:
        """Adds the batch (kept as it is, not copied)."""
        if domains.size:
            alive = torch.ones(domains.size, dtype=torch.bool, device=domains.open.device)
            self._chunks.append(_Chunk(domains, alive, domains.size))
            self.size += domains.size

    @property
    def bytes_per_domain(self) -> int:
        """Bytes one stored domain takes, at least 1 (0 domains: 1)."""
        return self._chunks[0].domains.bytes_per_domain if self._chunks else 1

    def hardness(self) -> Tensor:
        """The stored domains' hardness ``(size,)``, in the store's order (the order :meth:`take`
        positions refer to)."""
        parts = [c.domains.hardness[c.alive] for c in self._chunks]
        return torch.cat(parts) if parts else torch.zeros(0)

    def objectives(self) -> Tensor:
        """The stored domains' objectives ``(size,)`` in the store's order; only for stores
        whose domains all carry one (:mod:`verifier.bab.row_search`)."""
        parts = []
        for chunk in self._chunks:
            if chunk.domains.objective is None:
                raise ValueError("objectives() of a store holding domains without objectives")
            parts.append(chunk.domains.objective[chunk.alive])
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def take(self, positions: Tensor) -> _Domains:
        """Removes and returns the domains at ``positions`` (indices into :meth:`hardness`,
        distinct), in that order."""
        owner, row = self._locate()
        owner, row = owner[positions], row[positions]
        parts, placed = [], []
        for index in torch.unique(owner).tolist():
            mine = torch.nonzero(owner == index).flatten()
            chunk = self._chunks[index]
            parts.append(chunk.domains.take(row[mine]))
            chunk.alive[row[mine]] = False
            chunk.live -= mine.numel()
            placed.append(mine)
        taken = _cat(parts)
        self.size -= taken.size
        self._compact()
        return taken.take(torch.argsort(torch.cat(placed)))

    def _locate(self) -> tuple[Tensor, Tensor]:
        """For each stored domain in the store's order: its chunk and its row in the chunk."""
        owners, rows = [torch.zeros(0, dtype=torch.long)], [torch.zeros(0, dtype=torch.long)]
        for index, chunk in enumerate(self._chunks):
            live = torch.nonzero(chunk.alive).flatten()
            owners.append(torch.full_like(live, index))
            rows.append(live)
        device = self._chunks[0].alive.device if self._chunks else None
        return torch.cat([o.to(device) for o in owners]), torch.cat([r.to(device) for r in rows])

    def _compact(self) -> None:
        """Drops dead chunks and copies the live part of those at least half dead."""
        kept = []
        for chunk in self._chunks:
            if chunk.live == 0:
                continue
            if 2 * chunk.live <= chunk.alive.numel():
                alive = torch.ones(chunk.live, dtype=torch.bool, device=chunk.alive.device)
                chunk = _Chunk(chunk.domains.take(chunk.alive), alive, chunk.live)
            kept.append(chunk)
        self._chunks = kept
