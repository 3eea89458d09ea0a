"""The synthetic bugs: each buggy build of our verifier is flagged by the checker on a few
bundled instances, and the bug-free build is not."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from verifier.bench.results import read_results
from verifier.soundness.check import planted_keys, tally_soundness
from verifier.soundness.cli import main as soundness_main
from verifier.soundness.faults import BUGS
from verifier.soundness.faults import main as faults_main

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "soundness"
# ReLU 12 and 30 inputs, Sigmoid 12 inputs: planted instances only. Each bug is caught on at
# least one of them (relu-intercept and drop-clause on m00 and m03, smooth-tight on m01,
# unknown-as-sat on m03, in 2026-12-03's run); m05 (Tanh) and m07 (Sigmoid, 64 inputs) caught
# nothing more, and their undecided runs took 7-10 s each.
SAMPLE = r"(m00_.*planted2|m03_.*planted0|m01_.*planted0)\."


def _buggy(bug: str) -> str:
    """The tool template of one buggy build. ``unknown-as-sat`` gets a 0.2 s limit of its own, so
    that its runs end undecided (and report the box centre) however fast the machine is (at 1 s a
    fast machine found the planted counterexamples)."""
    python = shlex.quote(sys.executable)
    timeout = "0.2" if bug == "unknown-as-sat" else "{timeout}"
    return (f"{bug}={python} -m verifier.soundness.faults --bug {bug} {{onnx}} {{vnnlib}} "
            f"--timeout {timeout} --out {{result}}")


def test_every_synthetic_bug_is_caught(tmp_path: Path) -> None:
    results = tmp_path / "bugs.csv"
    # 9 s per instance: a verifier process takes several seconds to start (torch), and the runner
    # counts a verdict given more than 2 s after the limit as a timeout
    argv = ["check", str(SUITE), "--filter", SAMPLE, "--timeout-scale", "0.15", "--jobs", "2", "--results",
            str(results), "--quiet"]
    for bug in BUGS:
        argv += ["--tool", _buggy(bug)]
    assert soundness_main(argv) == 1
    table = tally_soundness(read_results(results), planted_keys(SUITE))
    assert set(table) == set(BUGS)
    for bug in ("relu-intercept", "smooth-tight", "drop-clause"):
        assert table[bug].unsound_claims >= 1, (bug, table[bug])
    assert table["unknown-as-sat"].invalid_witnesses >= 1
    assert all(table[bug].failed for bug in BUGS)


def test_faults_entry_point_rejects_an_unknown_bug() -> None:
    assert faults_main(["--bug", "no-such-bug", "m.onnx", "s.vnnlib"]) == 2
    assert faults_main([]) == 2


def test_faults_leave_the_registry_alone() -> None:
    """A fault is an op-table override for one run: the registry's ops keep their rules."""
    from verifier.ops import REGISTRY
    from verifier.soundness.faults import FAULTS

    before = {name: REGISTRY[name].relaxation for name in ("Relu", "Sigmoid", "Tanh")}
    for fault in FAULTS.values():
        for op_type, op in fault.ops().items():
            assert op is not REGISTRY[op_type] and op.relaxation is not REGISTRY[op_type].relaxation
    assert {name: REGISTRY[name].relaxation for name in before} == before
