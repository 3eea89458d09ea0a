"""The checker on a tiny generated benchmark, with stand-in tools whose answers are known:
one claims unsat everywhere, one forges witnesses, one answers with the planted points."""

from __future__ import annotations

import csv
import shlex
import subprocess
import sys
from pathlib import Path

from verifier.bench.results import read_results
from verifier.soundness.check import planted_keys, tally_soundness
from verifier.soundness.cli import main as soundness_main

FAKE = Path(__file__).with_name("fake_tools.py")


def _tool(name: str, mode: str) -> str:
    return f"{name}={shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} {mode} {{onnx}} {{vnnlib}} {{result}}"


def _counts(tiny: Path) -> tuple[int, int]:
    with (tiny / "expected.csv").open() as handle:
        verdicts = [r["expected"] for r in csv.DictReader(handle)]
    return verdicts.count("sat"), verdicts.count("unsat")


def test_unsat_everywhere_is_caught_on_every_planted_instance(tiny: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    code = soundness_main(["check", str(tiny), "--tool", _tool("yes-man", "unsat"),
                           "--results", str(results), "--quiet"])
    assert code == 1
    table = tally_soundness(read_results(results), planted_keys(tiny))["yes-man"]
    planted, unsat = _counts(tiny)
    assert table.unsound_claims == planted and table.proven == unsat and table.failed


def test_forged_witnesses_are_caught(tiny: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    code = soundness_main(["check", str(tiny), "--tool", _tool("forger", "forged"),
                           "--results", str(results), "--quiet"])
    assert code == 1
    table = tally_soundness(read_results(results), planted_keys(tiny))["forger"]
    assert table.invalid_witnesses == sum(_counts(tiny)) and table.unsound_claims == 0


def test_planted_points_are_accepted_as_valid_counterexamples(tiny: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    code = soundness_main(["check", str(tiny), "--tool", _tool("oracle", "oracle"),
                           "--results", str(results), "--quiet"])
    assert code == 0
    table = tally_soundness(read_results(results), planted_keys(tiny))["oracle"]
    planted, unsat = _counts(tiny)
    assert table.valid_counterexamples == planted and table.unknown == unsat and not table.failed


def test_report_and_exit_code_from_the_command_line(tiny: Path, tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    argv = [sys.executable, "-m", "verifier.cli", "soundness", "check", str(tiny), "--tool", _tool("oracle", "oracle"),
            "--tool", _tool("yes-man", "unsat"), "--results", str(results), "--quiet"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1, run.stderr
    lines = {line.split("|")[1].strip(): line for line in run.stdout.splitlines() if line.startswith("| ")}
    assert "UNSOUND" in lines["yes-man"] and "no soundness bug found" in lines["oracle"]
    assert "unsat on an instance with a planted counterexample" in run.stdout


def test_missing_benchmark_is_bad_input(tmp_path: Path) -> None:
    assert soundness_main(["check", str(tmp_path)]) == 3
    assert soundness_main(["validate", str(tmp_path)]) == 3
    assert soundness_main(["frobnicate"]) == 2
