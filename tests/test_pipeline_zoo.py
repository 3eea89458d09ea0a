"""End to end on every bundled instance: every sat re-checks, and every instance that the pipeline
decides today gets exactly its expected verdict (a verifier that always says unknown fails).
Every unsat writes a proof certificate, which ``verify-check`` must never find invalid: it is
valid, incomplete (a region proven by a step that writes no proof) or outside the checker's
op set (and then, where an op is the reason, the certificate marks no region certified)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, expected_verdicts
from verifier.api import verify_problem
from verifier.config import AttackConfig, VerifierConfig
from verifier.problem import load_problem
from verifier.result import Status
from verifier.witness import OnnxOracle, clause_holds, grid_box
from verify_check.certificate import read_certificate
from verify_check.cli import INCOMPLETE, UNREADABLE, VALID, check

ZOO = ROOT / "benchmarks" / "zoo"
CASES = sorted(expected_verdicts(ZOO).items())
QUICK = VerifierConfig(attack=AttackConfig(rounds=2, time_limit=2.0))
OPEN_TODAY = frozenset({
    "eran__mnist_spec_idx_4424_eps_0.01500",
    "marabou-cifar10__networkcifar10_small_index1783_eps0.012_target9_orig8",
    "marabou-cifar10__networkcifar10_small_index9409_eps0.012_target0_orig9",
    "oval21__cifar_deep_kw-img4405-eps0.036732026143790855",
    "oval21__cifar_deep_kw-img7878-eps0.009934640522875817",
    "reach_prob_density__robot_0",
})
"""Instances the pipeline does not decide within 20 s (measured 2026-12-02 on the 2-core CI
machine: each times out): they may end unknown/timeout and run only with ``pytest -m slow``.
Every other instance must be decided."""


def _case(pair: tuple[str, str], expected: str) -> object:
    stem = Path(pair[1]).stem
    marks = [pytest.mark.slow] if stem in OPEN_TODAY else []
    return pytest.param(pair, expected, id=stem, marks=marks)


@pytest.mark.parametrize(("pair", "expected"), [_case(pair, expected) for pair, expected in CASES])
def test_zoo_instance(pair: tuple[str, str], expected: str, tmp_path: Path) -> None:
    problem = load_problem(ZOO / pair[0], ZOO / pair[1])
    proof = tmp_path / "proof.npz"
    result = verify_problem(problem, timeout=20, config=QUICK, certificate=(proof, ZOO / pair[1]))
    decided = ("sat", "unsat") if expected not in ("sat", "unsat") else (expected,)
    undecided_ok = ("unknown", "timeout") if Path(pair[1]).stem in OPEN_TODAY else ()
    assert result.status.value in decided + undecided_ok, (expected, result.status.value)
    if result.status is Status.UNSAT:
        code, message = check(str(ZOO / pair[0]), str(ZOO / pair[1]), str(proof))
        outside = code == UNREADABLE and message.startswith(("unreadable model", "unreadable property"))
        assert code in (VALID, INCOMPLETE) or outside, message
        if problem.unchecked_op() is not None:  # the writer knew: no region claims to be certified
            assert not any(mark["certified"] for mark in read_certificate(str(proof))[0]["regions"])
    if result.status is Status.SAT:
        cex = result.counterexample
        assert cex is not None
        region = problem.spec.regions[cex.region]
        # inside the box, up to the float32 rounding of bounds that float32 cannot represent
        lower, upper = grid_box(region.lower, region.upper, problem.graph.inputs[0].dtype)
        assert np.all(lower <= cex.x) and np.all(cex.x <= upper)
        assert np.all(np.abs(cex.x - np.clip(cex.x, region.lower, region.upper)) <= 1e-7 * (1 + np.abs(cex.x)))
        y = OnnxOracle(ZOO / pair[0]).run(cex.x)
        np.testing.assert_array_equal(y, cex.y)
        assert clause_holds(region.clauses[cex.clause], y)
