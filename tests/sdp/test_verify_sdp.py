"""``verify --method sdp`` and ``--sdp-before-bab`` on tiny ReLU networks, checked against the
independent MILP of :mod:`tests.sdp.nets` (a proof needs a positive true minimum) and
onnxruntime (a counterexample must violate the property on the ONNX file)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from torch import nn

from tests.sdp.nets import Tiny, milp_minimum, tiny_net
from verifier.api import verify
from verifier.config import SdpConfig, VerifierConfig
from verifier.problem import load_problem
from verifier.result import Status
from verifier.soundness.onnx_export import network_to_onnx
from verifier.spec.types import Clause

SDP = VerifierConfig(method="sdp", sdp=SdpConfig(time_limit=600.0))  # iteration budgets decide, not load


def clauses(tiny: Tiny) -> list[Clause]:
    """Every clause of the tiny net's property (one region)."""
    return list(load_problem(tiny.onnx, tiny.vnnlib).spec.regions[0].clauses)


def property_holds(tiny: Tiny) -> bool:
    """The oracle: every clause has a row whose true minimum over the box is positive."""
    return all(any(milp_minimum(tiny.network, tiny.lower, tiny.upper, c.C[r], float(c.d[r])) > 0
                   for r in range(c.num_rows)) for c in clauses(tiny))


def test_sdp_proves_what_alpha_crown_cannot(tmp_path: Path) -> None:
    tiny = tiny_net(tmp_path, 2)
    assert property_holds(tiny)
    alpha_only = verify(tiny.onnx, tiny.vnnlib, 60, replace(VerifierConfig(), bab="none"))
    assert alpha_only.status is Status.UNKNOWN  # bounds, alpha-CROWN and attacks leave it open
    result = verify(tiny.onnx, tiny.vnnlib, 600, SDP)
    assert result.status is Status.UNSAT
    assert result.stats["sdp"]["refuted"] == 1
    assert max(b for b in result.stats["sdp"]["best_rows"] if b is not None) > 0


def test_sdp_before_branch_and_bound_proves_the_root(tmp_path: Path) -> None:
    tiny = tiny_net(tmp_path, 2)
    result = verify(tiny.onnx, tiny.vnnlib, 600, replace(SDP, method="auto", sdp_before_bab=True))
    assert result.status is Status.UNSAT
    assert result.stats["sdp"]["refuted"] == 1
    assert "bab" not in result.stats  # proven before any split


def test_a_violated_property_gives_a_counterexample_onnxruntime_confirms(tmp_path: Path) -> None:
    tiny = tiny_net(tmp_path, 5)
    assert not property_holds(tiny)
    result = verify(tiny.onnx, tiny.vnnlib, 60, SDP)
    assert result.status is Status.SAT and result.counterexample is not None
    x = np.asarray(result.counterexample.x, dtype=np.float32).reshape(1, -1)
    assert np.all(x >= tiny.lower) and np.all(x <= tiny.upper)
    y = onnxruntime.InferenceSession(str(tiny.onnx)).run(None, {"X": x})[0][0]
    assert any(bool(np.all(c.C @ y <= c.d)) for c in clauses(tiny))


def test_an_unsupported_network_is_unknown_with_the_reason(tmp_path: Path) -> None:
    tiny = tiny_net(tmp_path, 2)  # a Sigmoid on the logits keeps their order: the property holds
    network = nn.Sequential(*tiny.network, nn.Sigmoid())
    onnx.save(network_to_onnx(network, (4,), "sig"), tmp_path / "sig.onnx")
    result = verify(tmp_path / "sig.onnx", tiny.vnnlib, 60, SDP)
    assert result.status is Status.UNKNOWN
    assert "Sigmoid" in result.stats["sdp_error"]
