"""The store of ReLU-split domains (verifier/bab/domain_store.py) against a plain list: every
domain added is taken exactly once, whole (all its tensors' rows together), in the order asked,
through many rounds of adding batches and taking the lowest or highest ones (chunks compacted
and dropped on the way)."""

from __future__ import annotations

import pytest
import torch

from verifier.bab.domain_store import DomainStore
from verifier.bab.relu_domains import _Domains


def _batch(ids: torch.Tensor) -> _Domains:
    """Domains whose every tensor row carries the domain's id (hardness = id)."""
    m = ids.numel()
    value = ids.double().reshape(m, 1)
    return _Domains({"v": (value.expand(m, 3).clone(), value.expand(m, 3) + 1.0)},
                    {"n": ids.to(torch.int8).reshape(m, 1).expand(m, 3).clone()},
                    {"n": value.float().reshape(m, 1, 1).expand(m, 2, 3).clone()},
                    {"n": -value.float().reshape(m, 1, 1).expand(m, 2, 3).clone()},
                    torch.ones(m, 1, dtype=torch.bool), ids.double())


def _whole(domains: _Domains) -> list[int]:
    """The ids of a taken batch, checking every row of every tensor belongs to its domain."""
    ids = domains.hardness.long()
    lo, hi = domains.bounds["v"]
    assert torch.equal(lo, ids.double().reshape(-1, 1).expand(-1, 3))
    assert torch.equal(hi, lo + 1.0)
    assert torch.equal(domains.split["n"], ids.to(torch.int8).reshape(-1, 1).expand(-1, 3))
    assert torch.equal(domains.alpha["n"], ids.float().reshape(-1, 1, 1).expand(-1, 2, 3))
    assert torch.equal(domains.beta["n"], -domains.alpha["n"])
    return ids.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_store_takes_what_a_list_would(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    store, reference, next_id = DomainStore(), [], 0
    for _ in range(60):
        count = int(torch.randint(0, 40, (1,), generator=gen))
        ids = torch.arange(next_id, next_id + count)[torch.randperm(count, generator=gen)]
        next_id += count
        store.add(_batch(ids))
        reference += ids.tolist()
        assert store.size == len(reference)
        assert store.hardness().long().tolist() == reference  # the store's order
        if not reference:
            continue
        take = min(len(reference), int(torch.randint(1, 30, (1,), generator=gen)))
        descending = bool(torch.randint(0, 2, (1,), generator=gen))
        order = torch.argsort(store.hardness(), descending=descending)[:take]
        expected = [reference[i] for i in order.tolist()]
        assert _whole(store.take(order)) == expected
        reference = [r for r in reference if r not in set(expected)]
    assert store.size == len(reference)
