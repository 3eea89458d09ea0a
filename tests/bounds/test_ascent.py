"""Our Adam (:mod:`verifier.bounds.ascent`) against torch's own ``torch.optim.Adam``, the oracle:
the same iterates on a non-convex objective, with groups of different step sizes and tensors
that have no gradient in some steps."""

from __future__ import annotations

import pytest
import torch

from verifier.bounds.ascent import Adam


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iterates_match_torch_adam(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    ours = [torch.randn(4, 3, generator=gen, dtype=dtype).requires_grad_(True),
            torch.randn(7, generator=gen, dtype=dtype).requires_grad_(True)]
    theirs = [p.detach().clone().requires_grad_(True) for p in ours]
    mine = Adam([([ours[0]], 0.1), ([ours[1]], 0.02)])
    reference = torch.optim.Adam([{"params": [theirs[0]], "lr": 0.1}, {"params": [theirs[1]], "lr": 0.02}],
                                 foreach=False)
    for step in range(60):
        for params, optimiser in ((ours, mine), (theirs, reference)):
            optimiser.zero_grad()
            use_second = step % 3 != 0  # the second tensor gets no gradient every third step
            loss = (params[0] ** 3).sin().sum() + (params[1].cos().sum() if use_second else 0.0)
            loss.backward()
            optimiser.step()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=tolerance, rtol=0)
