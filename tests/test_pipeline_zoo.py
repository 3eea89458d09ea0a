"""End to end on every bundled instance: no verdict contradicts expected.csv, every sat re-checks."""

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

ZOO = ROOT / "benchmarks" / "zoo"
CASES = sorted(expected_verdicts(ZOO).items())
QUICK = VerifierConfig(attack=AttackConfig(rounds=2, time_limit=2.0))


@pytest.mark.parametrize(("pair", "expected"), CASES, ids=[Path(p[1]).stem for p, _ in CASES])
def test_zoo_instance(pair: tuple[str, str], expected: str) -> None:
    problem = load_problem(ZOO / pair[0], ZOO / pair[1])
    result = verify_problem(problem, timeout=20, config=QUICK)
    if expected in ("sat", "unsat"):
        assert result.status.value in (expected, "unknown", "timeout")
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
