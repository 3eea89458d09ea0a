"""Deadlines are kept inside every stage: the largest network of each shared benchmark (and the
5-input generator network), run as the ``verify`` console script with ``--timeout 10``, answers
by itself within one second of the limit, with statistics; never through the watchdog.

The instances are the bundle ``benchmarks/deadline`` (written by ``python
benchmarks/deadline_probe.py --bundle benchmarks/deadline``). The ones that run into the limit on
this project's machine (large CNNs, the generator, a reachability network) run by default; the
rest, which answer well before it, with ``pytest -m slow tests/test_deadlines.py``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "benchmarks" / "deadline"
TIMEOUT = 10.0
SLACK = 1.0
RUN_INTO_THE_LIMIT = {"cifar10_large", "cifar_wide_kw", "reach_prob_density__robot", "generator"}
EXIT_OF = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}


def _cases() -> list[object]:
    expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader((BUNDLE / "expected.csv").open())}
    cases = []
    for onnx, vnnlib, _ in csv.reader((BUNDLE / "instances.csv").open()):
        name = Path(onnx).stem
        marks = [] if name in RUN_INTO_THE_LIMIT else [pytest.mark.slow]
        cases.append(pytest.param(BUNDLE / onnx, BUNDLE / vnnlib, expected[(onnx, vnnlib)], id=name, marks=marks))
    return cases


@pytest.mark.parametrize(("model", "spec", "expected"), _cases())
def test_answer_within_a_second_of_the_timeout(model: Path, spec: Path, expected: str) -> None:
    """Whole-process wall time from launch to exit at most ``TIMEOUT + SLACK``; one JSON answer
    with per-stage seconds and no watchdog flag; a verdict never contradicts the benchmark's
    expected one; the exit code is the verdict's."""
    command = [sys.executable, "-c", "import sys; from verifier.entry import verify; sys.exit(verify())",
               "--json", "--timeout", repr(TIMEOUT), str(model), str(spec)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=TIMEOUT + 60)
    wall = time.monotonic() - start
    answer = json.loads(done.stdout)
    stats = answer["stats"]
    assert wall <= TIMEOUT + SLACK, (wall, answer)
    assert not stats.get("watchdog"), answer
    assert stats["seconds"] and all(value >= 0 for value in stats["seconds"].values()), answer
    assert answer["status"] in (expected, "timeout", "unknown"), (expected, answer)
    assert done.returncode == EXIT_OF[answer["status"]], (done.returncode, done.stderr)
    if answer["status"] == "timeout":
        assert stats.get("stopped_in"), answer  # the stage that met the deadline says so
