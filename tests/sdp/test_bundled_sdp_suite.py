"""The bundled SDP suite (benchmarks/sdp: adversarially trained digit MLPs near their critical
radius) through the command line: ``verify --method sdp`` proves instances that bounds,
attacks and alpha-CROWN alone (``--bab none``) leave open, agreeing with the exact MILP
engine's verdicts in expected.csv; on a violated property it never claims ``unsat`` and its
counterexample satisfies the property on onnxruntime."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, expected_verdicts
from verifier.cli import main
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, clause_holds

SUITE = ROOT / "benchmarks" / "sdp"
NET = "onnx/digits_mlp_32x32.onnx"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_suite_is_complete_and_every_instance_has_an_exact_verdict() -> None:
    with (SUITE / "instances.csv").open() as handle:
        pairs = [(row[0], row[1]) for row in csv.reader(handle) if row]
    expected = expected_verdicts(SUITE)
    assert sorted(pairs) == sorted(expected)
    assert all((SUITE / onnx).is_file() and (SUITE / spec).is_file() for onnx, spec in pairs)
    assert {"sat", "unsat"} == set(expected.values())


@pytest.mark.parametrize("spec", [
    pytest.param("vnnlib/digits_mlp_32x32_img44_eps0.1545.vnnlib", marks=pytest.mark.slow),
    "vnnlib/digits_mlp_32x32_img247_eps0.162.vnnlib"])
def test_sdp_proves_what_alpha_crown_leaves_open(capsys: pytest.CaptureFixture[str], spec: str) -> None:
    assert expected_verdicts(SUITE)[(NET, spec)] == "unsat"  # the MILP engine's verdict
    model, prop = str(SUITE / NET), str(SUITE / spec)
    _, alpha = run(capsys, model, prop, "--bab", "none", "--timeout", "60")
    assert alpha["status"] == "unknown"
    code, sdp = run(capsys, model, prop, "--method", "sdp", "--timeout", "120")
    assert sdp["status"] == "unsat" and code == 0
    assert sdp["stats"]["sdp"]["refuted"] >= 1


def test_a_violated_instance_is_never_proven(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "vnnlib/digits_mlp_32x32_img44_eps0.1737.vnnlib"
    assert expected_verdicts(SUITE)[(NET, spec)] == "sat"
    _, payload = run(capsys, str(SUITE / NET), str(SUITE / spec), "--method", "sdp", "--timeout", "60")
    assert payload["status"] in ("sat", "unknown")
    if payload["status"] == "sat":
        x = np.asarray(payload["counterexample"]["x"])
        region = parse_vnnlib(SUITE / spec).regions[0]
        assert np.all(region.lower <= x) and np.all(x <= region.upper)
        y = OnnxOracle(Path(SUITE / NET)).run(x)
        assert any(clause_holds(c, y) for c in region.clauses)
