"""What a certificate says about each region: certified where interval/CROWN bounds or input
splitting proved it (and then ``verify-check`` re-derives it: ``valid``), uncertified with the
reason elsewhere (``incomplete``), never silently missing. Checked on the cross-check's random
networks, whose proofs take each of these ways."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bab.test_cross_check import _network
from tests.verify_check.test_checker_cross_check import write_property
from verifier.api import verify
from verifier.certificate.log import NodeKind, ProofLog
from verifier.config import VerifierConfig
from verify_check.cli import INCOMPLETE, VALID, check


def _run(tmp_path: Path, seed: int, config: VerifierConfig) -> tuple[dict, tuple[int, str]]:
    model, spec, proof = tmp_path / "n.onnx", tmp_path / "p.vnnlib", tmp_path / "c.npz"
    region, _ = _network(seed, model)
    write_property(spec, region)
    result = verify(model, spec, timeout=20, config=config, certificate=proof)
    assert result.status.value == "unsat"
    return result.stats["certificate"], check(str(model), str(spec), str(proof))


@pytest.mark.parametrize("seed, bab, code, reason", [
    (3, "auto", VALID, "valid (1 regions, 1 leaves)"),  # CROWN on the whole box
    (0, "auto", VALID, "valid"),  # input splitting
    (0, "relu", INCOMPLETE, "ReLU-split branch and bound"),
    (6, "relu", INCOMPLETE, "alpha-CROWN or SDP bounds on the whole box"),
])
def test_regions_are_certified_or_marked(tmp_path: Path, seed: int, bab: str, code: int, reason: str) -> None:
    stats, (found, message) = _run(tmp_path, seed, replace(VerifierConfig(), bab=bab))
    assert found == code and reason in message, message
    assert stats["regions_certified"] == (1 if code == VALID else 0)


def test_halves_record_their_cut() -> None:
    """The cut of a pair of halves is where the lower half's upper end is below the upper's."""
    log = ProofLog(3, (0,), (1,))
    root = log.root()
    lower = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    low_hi, high_lo = upper.clone(), lower.clone()
    low_hi[0, 1] = high_lo[0, 1] = 0.25
    ids = log.halves(root, (lower, low_hi), (high_lo, upper))
    arrays = log.arrays("r0_", 1, (0,))
    assert ids.tolist() == [1, 2]
    assert arrays["r0_kind"].tolist() == [NodeKind.ROOT, NodeKind.LOW, NodeKind.HIGH]
    assert arrays["r0_dim"].tolist() == [-1, 1, 1] and arrays["r0_point"][1:].tolist() == [0.25, 0.25]
    assert arrays["r0_parent"].tolist() == [-1, 0, 0] and arrays["r0_clip_lower"].shape == (0, 3)
    assert np.isnan(arrays["r0_point"][0])
