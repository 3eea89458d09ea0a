"""``verify --progress``: the pipeline reports each step it enters in order, and both searches
report the domains left and the lowest open bound between rounds; the command writes the line
on standard error only, never on standard output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from verifier.api import Step, verify_problem
from verifier.config import VerifierConfig
from verifier.problem import load_problem
from verifier.progress import ProgressEvent
from verifier.progress_line import format_event

ACAS = ROOT / "benchmarks" / "acasxu"
MNIST = ROOT / "benchmarks" / "mnist_fc"


class Recorder:
    """Takes every report (always due)."""

    def __init__(self) -> None:
        self.events: list[ProgressEvent] = []

    def due(self) -> bool:
        return True

    def show(self, event: ProgressEvent) -> None:
        self.events.append(event)


@pytest.mark.parametrize(("model", "spec", "bab"), [
    (ACAS / "onnx" / "ACASXU_run2a_1_7_batch_2000.onnx", ACAS / "vnnlib" / "prop_1.vnnlib", "input"),
    pytest.param(MNIST / "onnx" / "mnist-net_256x2.onnx", MNIST / "vnnlib" / "prop_8_0.03.vnnlib", "relu",
                 marks=pytest.mark.slow),  # about 20 s
])
def test_steps_in_order_and_search_rounds_are_reported(model, spec, bab) -> None:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    result = verify_problem(load_problem(model, spec), 60.0, VerifierConfig(bab=bab), progress=recorder)
    assert result.status.value == "unsat", result
    order = [step.value for step in Step]
    stages = [e.stage for e in recorder.events if e.stage != "branch and bound"]
    assert stages[0] == "bounds" and [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    rounds = [e for e in recorder.events if e.stage == "branch and bound"]
    assert rounds, stages
    assert all(e.domains_left is not None and e.domains_left >= 0 for e in rounds)
    # an open domain's bound is below 0 (else it would be refuted) while domains are left
    assert all(e.best_bound is None or e.best_bound <= 0 for e in rounds if e.domains_left)


def test_line_format() -> None:
    assert format_event(ProgressEvent("search", 1204, -0.03125), 41.2) == \
        "verify: search | 1,204 domains left | best bound -0.03125 | 41 s left"
    assert format_event(ProgressEvent("bounds"), None) == "verify: bounds"


@pytest.mark.parametrize("flag", ["--progress", "--no-progress"])
def test_the_line_goes_to_stderr_only(flag: str) -> None:
    command = [sys.executable, "-m", "verifier.cli", flag, "--json", "--timeout", "30",
               str(ACAS / "onnx" / "ACASXU_run2a_3_9_batch_2000.onnx"), str(ACAS / "vnnlib" / "prop_3.vnnlib")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=90)
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("{"), done.stdout
    lines = [line for line in done.stderr.splitlines() if line.startswith("verify: ")]
    assert bool(lines) == (flag == "--progress"), done.stderr
    if lines:
        assert lines[0].startswith("verify: bounds") and all(line.endswith(" s left") for line in lines)
