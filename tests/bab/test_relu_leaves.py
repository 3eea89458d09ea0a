"""ReLU-split leaves with every neuron decided, refuted by the multipliers of their linear program
(:meth:`verifier.bab.relu_bounding._BetaBounder.leaf_multipliers`) instead of the MILP engine.

Oracles: brute force over the multipliers for the dual program itself; the MILP engine (an
independent exact method) and ``verify-check`` (which recomputes every leaf's bound with its
own code) for the searches; a planted bug (a leaf bound overstated, with no multipliers) must be
caught by the checker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from tests.bab.test_cross_check import _network
from tests.verify_check.test_checker_cross_check import _milp, write_property
from verifier.api import verify
from verifier.bab.relu_bounding import _BetaBounder
from verifier.bab.relu_domains import _Domains
from verifier.config import BabMode, VerifierConfig
from verifier.exact.small_lp import best_multipliers
from verify_check.cli import INVALID, VALID, check

LEAF_SEEDS = (22, 79, 96)
"""Networks of the 300-network cross-check whose ReLU-split search reaches decided leaves (seed
22: 16 leaves, 79: 1, 96: 53), all of which the MILP engine decided before."""


@pytest.mark.parametrize("seed", range(20))
def test_multipliers_maximise_the_dual(seed: int) -> None:
    """Random small dual programs: the multipliers found are at least as good as every point of
    a grid over ``[0, cap]^2`` (up to the LP's tolerance), and within the cap."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    base, per = rng.normal(size=n), rng.normal(size=(2, n))
    base_const, per_const = float(rng.normal()), rng.normal(size=2)
    low = rng.normal(size=n) - 1.0
    high = low + rng.uniform(0.1, 2.0, size=n)

    def value(beta: np.ndarray) -> float:
        a = base + per.T @ beta
        return float(np.minimum(a * low, a * high).sum() + base_const + per_const @ beta)

    found = best_multipliers(base, base_const, per, per_const, low, high, cap=5.0)
    assert found is not None and np.all((found >= 0) & (found <= 5.0))
    grid = np.linspace(0.0, 5.0, 41)
    best = max(value(np.array([x, y])) for x in grid for y in grid)
    assert value(found) >= best - 1e-7 * (1 + abs(best))


def _search(seed: int, folder: Path) -> tuple[str, dict[str, int], tuple[int, str], Path, object]:
    model, spec, proof = folder / "net.onnx", folder / "p.vnnlib", folder / "c.npz"
    region, _ = _network(seed, model)
    write_property(spec, region)
    result = verify(model, spec, timeout=60, config=VerifierConfig(bab=BabMode.RELU), certificate=proof)
    counts = {key: int(value) for key, value in result.stats.get("bab", {}).items() if key.startswith("leaves_")}
    found = check(str(model), str(spec), str(proof)) if result.status.value == "unsat" else (-1, "")
    return result.status.value, counts, found, model, region


@pytest.mark.parametrize("seed", LEAF_SEEDS)
def test_decided_leaves_are_refuted_by_their_multipliers(tmp_path: Path, seed: int) -> None:
    """The search refutes its decided leaves without the MILP engine, the certificate (which
    records the multipliers) checks valid, and MILP agrees that the property holds."""
    status, counts, (code, message), model, region = _search(seed, tmp_path)
    assert status == "unsat"
    assert counts.get("leaves_by_multipliers", 0) >= 1 and counts.get("leaves_exact", 0) == 0, counts
    assert code == VALID, message
    assert _milp(model, region) == "unsat"


def test_a_leaf_taken_as_refuted_without_its_proof_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: every decided leaf taken as refuted, with zero multipliers (whatever its
    bound). The search says unsat (the property holds, but nothing proves these leaves) and
    ``verify-check``, recomputing each leaf, rejects the certificate, naming the leaf."""

    def zeros(self: _BetaBounder, leaf: _Domains, cap: float = 1e4) -> dict[str, Tensor]:
        return {layer.node: torch.zeros_like(leaf.beta[layer.node]) for layer in self.layers}

    def all_refuted(rows: Tensor, open_: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return torch.zeros_like(open_), rows.amax(dim=(1, 2)), torch.zeros(rows.shape[0], dtype=torch.long)

    monkeypatch.setattr(_BetaBounder, "leaf_multipliers", zeros)
    monkeypatch.setattr("verifier.bab.relu_split.hardest_rows", all_refuted)
    status, counts, (code, message), _, _ = _search(LEAF_SEEDS[0], tmp_path)
    assert status == "unsat" and counts.get("leaves_by_multipliers", 0) >= 1
    assert code == INVALID and "leaf" in message, message
