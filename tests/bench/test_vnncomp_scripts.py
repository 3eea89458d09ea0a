"""The VNN-COMP scripts of benchmarks/vnncomp: prepare_instance.sh and run_instance.sh on real
ACAS Xu instances (the verdicts of expected.csv; the sat witness re-checked by onnxruntime),
also as a tool of the benchmark runner; install_tool.sh into a fresh environment (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from verifier.bench.cli import main as bench_main
from verifier.bench.outcome import check_answer_witness, read_result_file
from verifier.bench.results import read_results
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle

SCRIPTS = ROOT / "benchmarks" / "vnncomp"
ACAS = ROOT / "benchmarks" / "acasxu"
ENV = {**os.environ, "VERIFIER_PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def private_worker_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """prepare_instance.sh's warm worker lives under TMPDIR: a folder of this test's own (short,
    for the socket path), and the worker is stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="vw", dir="/tmp"))
    monkeypatch.setitem(ENV, "TMPDIR", str(folder))
    yield folder
    subprocess.run(["pkill", "-f", f"verifier.cli worker {folder}"], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True, env=ENV, timeout=300)


@pytest.mark.parametrize("worker", ["on", "off"])
@pytest.mark.parametrize("net, prop, expected", [("1_1", "prop_1", "unsat"), ("2_9", "prop_8", "sat")])
def test_prepare_and_run_instance_write_the_verdict(tmp_path: Path, private_worker_folder: Path, net: str,
                                                    prop: str, expected: str, worker: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With the warm worker (prepare_instance.sh starts it; run_instance.sh's run is forked
    from it) and without (VERIFIER_WORKER=off: a fresh interpreter per instance)."""
    monkeypatch.setitem(ENV, "VERIFIER_WORKER", worker)
    onnx = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    vnnlib = ACAS / "vnnlib" / f"{prop}.vnnlib"
    assert _script("prepare_instance.sh", "v1", "acasxu", str(onnx), str(vnnlib)).returncode == 0
    sockets = list(private_worker_folder.glob("verifier-worker-*/worker.sock"))
    assert len(sockets) == (1 if worker == "on" else 0)
    result = tmp_path / "out.txt"
    run = _script("run_instance.sh", "v1", "acasxu", str(onnx), str(vnnlib), str(result), "60")
    assert run.returncode == 0, run.stderr
    answer = read_result_file(result)
    assert answer.status == expected
    if expected == "sat":
        assert check_answer_witness(OnnxOracle(onnx), parse_vnnlib(vnnlib), answer) == (True, "ok")


def test_scripts_reject_bad_arguments(tmp_path: Path) -> None:
    assert _script("prepare_instance.sh", "v2", "x", "a", "b").returncode == 1
    assert _script("prepare_instance.sh", "v1", "acasxu", str(tmp_path / "no.onnx"),
                   str(tmp_path / "no.vnnlib")).returncode == 1
    assert _script("run_instance.sh", "v1", "acasxu").returncode == 1
    no_python = subprocess.run(["bash", str(SCRIPTS / "run_instance.sh"), "v1", "acasxu", "a.onnx", "b.vnnlib",
                                str(tmp_path / "r.txt"), "10"], capture_output=True, text=True, timeout=60,
                               env={**ENV, "VERIFIER_PYTHON": str(tmp_path / "none")})
    assert no_python.returncode == 1 and "install_tool.sh" in no_python.stderr
    assert read_result_file(tmp_path / "r.txt").status == "error"
    assert _script("install_tool.sh", "v0").returncode == 1


@pytest.mark.slow
def test_run_instance_is_a_tool_of_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template form of another verifier: our own scripts, scored like any tool."""
    monkeypatch.setenv("VERIFIER_PYTHON", sys.executable)
    template = f"vnncomp=bash {SCRIPTS / 'run_instance.sh'} v1 acasxu {{onnx}} {{vnnlib}} {{result}} {{timeout}}"
    results = tmp_path / "r.csv"
    code = bench_main([str(ACAS), "--tool", template, "--filter", r"_2_9_.*prop_8\.|_1_1_.*prop_1\.",
                       "--results", str(results), "--timeout-scale", "0.5", "--quiet"])
    rows = read_results(results)
    assert code == 0
    assert sorted((Path(r.vnnlib).name, r.status, r.correct) for r in rows) == [
        ("prop_1.vnnlib", "unsat", "yes"), ("prop_8.vnnlib", "sat", "yes")]


@pytest.mark.slow
def test_install_tool_into_a_fresh_environment(tmp_path: Path) -> None:
    """Installs into a new virtual environment (torch from pip: minutes) and runs an instance
    with that environment's Python."""
    venv = tmp_path / "venv"
    env = {**ENV, "VERIFIER_VENV": str(venv)}
    env.pop("VERIFIER_PYTHON")
    done = subprocess.run(["bash", str(SCRIPTS / "install_tool.sh"), "v1"], capture_output=True, text=True, env=env,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    result = tmp_path / "out.txt"
    run = subprocess.run(["bash", str(SCRIPTS / "run_instance.sh"), "v1", "acasxu",
                          str(ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"),
                          str(ACAS / "vnnlib" / "prop_1.vnnlib"),
                          str(result), "60"], capture_output=True, text=True,
                         env={**env, "VERIFIER_PYTHON": str(venv / "bin" / "python")}, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert read_result_file(result).status == "unsat"
