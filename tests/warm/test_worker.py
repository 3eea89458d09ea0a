"""The warm worker (``verify worker SOCKET`` and ``verify --worker SOCKET ...``): the forked runs
give the bundled examples' known verdicts (sat re-checked by onnxruntime), pass exit codes,
streams, working directory and errors through, end when their client is killed, and a driver
(``verify bench``) runs instances through one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, expected_verdicts
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, clause_holds

SPECS = ROOT / "specs"
CODES = {"unsat": 0, "sat": 10, "unknown": 20, "timeout": 30}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SLOW = (ROOT / "benchmarks" / "acasxu" / "onnx" / "ACASXU_run2a_3_3_batch_2000.onnx",
        ROOT / "benchmarks" / "acasxu" / "vnnlib" / "prop_2.vnnlib")


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("worker") / "w.sock"
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli", "worker", str(path)], stdout=subprocess.PIPE,
                            text=True, env=ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield path
    proc.terminate()
    assert proc.wait(20) == 0
    assert not path.exists()


SCRIPT = ROOT / "verifier" / "warm" / "client_script.py"
CLIENTS = ("module", "script")
"""``verify --worker SOCKET ...``, and the client script under ``python -S`` (as ``verify bench``
and ``run_instance.sh`` launch it)."""


def _launch(client: str, worker: Path) -> list[str]:
    if client == "script":
        return [sys.executable, "-S", str(SCRIPT), str(worker)]
    return [sys.executable, "-m", "verifier.cli", "--worker", str(worker)]


def _client(worker: Path, *argv: str, cwd: Path = ROOT, client: str = "module") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_launch(client, worker), *argv], cwd=cwd, capture_output=True, text=True, env=ENV,
                          timeout=120)


def _forked_workers(worker: Path) -> list[int]:
    """Processes running the worker's command line (the server, its sessions and runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(worker).encode() in command and b"worker" in command:
                pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("pair", "verdict"), sorted(expected_verdicts(SPECS).items()))
def test_forked_runs_give_the_known_verdicts(worker: Path, pair: tuple[str, str], verdict: str, client: str) -> None:
    run = _client(worker, str(SPECS / pair[0]), str(SPECS / pair[1]), "--json", "--timeout", "20", client=client)
    payload = json.loads(run.stdout.strip().splitlines()[-1])
    assert (payload["status"], run.returncode) == (verdict, CODES[verdict]), run.stderr
    if verdict == "sat":
        region = parse_vnnlib(SPECS / pair[1]).regions[0]
        y = OnnxOracle(SPECS / pair[0]).run(np.asarray(payload["counterexample"]["x"]))
        assert any(clause_holds(c, y) for c in region.clauses)


@pytest.mark.parametrize("client", CLIENTS)
def test_relative_paths_and_the_result_file_are_the_clients(worker: Path, tmp_path: Path, client: str) -> None:
    run = _client(worker, "onnx/affine.onnx", "vnnlib/affine_sat.vnnlib", "--out", str(tmp_path / "r.txt"),
                  cwd=SPECS, client=client)
    assert run.returncode == 10, run.stderr
    assert (tmp_path / "r.txt").read_text().startswith("sat")


@pytest.mark.parametrize("client", CLIENTS)
def test_bad_input_is_an_error_on_the_clients_stderr(worker: Path, tmp_path: Path, client: str) -> None:
    run = _client(worker, str(tmp_path / "missing.onnx"), str(SPECS / "vnnlib" / "affine_sat.vnnlib"), client=client)
    assert run.returncode == 3
    assert "missing.onnx" in run.stderr and "Traceback" not in run.stderr and run.stdout == ""


def test_killing_the_client_ends_its_run(worker: Path) -> None:
    before = set(_forked_workers(worker))
    client = subprocess.Popen([sys.executable, "-m", "verifier.cli", "--worker", str(worker), str(SLOW[0]),
                               str(SLOW[1]), "--timeout", "100"], env=ENV, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(set(_forked_workers(worker)) - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(set(_forked_workers(worker)) - before) == 2  # the session and the run
    client.kill()
    client.wait()
    deadline = time.monotonic() + 10
    while set(_forked_workers(worker)) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(_forked_workers(worker)) - before


def test_a_signal_to_the_client_reaches_its_run(worker: Path) -> None:
    client = subprocess.Popen([sys.executable, "-m", "verifier.cli", "--worker", str(worker), str(SLOW[0]),
                               str(SLOW[1]), "--timeout", "100"], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=30)
    assert client.returncode == 130 and "interrupted" in err


@pytest.mark.parametrize("client", CLIENTS)
def test_the_timeout_counts_from_the_clients_start(worker: Path, client: str) -> None:
    run = _client(worker, str(SLOW[0]), str(SLOW[1]), "--timeout", "2", "--json", client=client)
    payload = json.loads(run.stdout.strip().splitlines()[-1])
    assert payload["status"] == "timeout" and 2.0 <= payload["time"] < 4.0


@pytest.mark.parametrize("client", CLIENTS)
def test_without_a_worker_the_client_runs_the_command_itself(tmp_path: Path, client: str) -> None:
    run = subprocess.run([*_launch(client, tmp_path / "none.sock"), str(SPECS / "onnx" / "affine.onnx"),
                          str(SPECS / "vnnlib" / "affine_unsat.vnnlib")],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode == 0 and "no warm worker answers" in run.stderr
    assert "property holds" in run.stdout


def test_the_client_script_imports_nothing_outside_the_standard_library_and_its_own_modules() -> None:
    probe = ("import verifier.warm.client; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'onnx', 'typing')))")
    run = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {probe}"],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_second_worker_on_a_live_socket_is_refused(worker: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "verifier.cli", "worker", str(worker)], capture_output=True,
                         text=True, env=ENV, timeout=120)
    assert run.returncode == 3 and "already serves" in run.stderr


@pytest.mark.slow  # 24 s: the cold half starts an interpreter per instance
def test_bench_runs_our_verifier_through_a_worker_with_the_same_answers(tmp_path: Path) -> None:
    rows = {}
    for mode in ("warm", "cold"):
        results = tmp_path / f"{mode}.csv"
        argv = [sys.executable, "-m", "verifier.cli", "bench", str(SPECS), "--results", str(results), "--quiet",
                "--jobs", "2", *(["--cold"] if mode == "cold" else [])]
        assert subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=600).returncode == 0
        rows[mode] = {(r["onnx"], r["vnnlib"]): (r["status"], r["correct"]) for r in csv.DictReader(results.open())}
        details = [json.loads(line) for line in results.with_suffix(".jsonl").read_text().splitlines()]
        assert all("seconds" in d["stats"] for d in details)
    assert rows["warm"] == rows["cold"]
    assert all(correct == "yes" for _, correct in rows["warm"].values())


def _decoy(folder: Path) -> Path:
    """A folder holding a ``verifier`` package that exits 99 on import (an older checkout, say)."""
    package = folder / "verifier"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise SystemExit(99)\n")
    return folder


def test_runs_started_in_a_folder_holding_another_verifier_package_use_the_drivers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m`` puts the current directory first on ``sys.path``: without ``-P`` the bench
    runs and the warm worker would import the decoy (exit 99) instead of the package running."""
    from verifier.bench.tools import default_tool
    from verifier.warm.launch import running_worker

    decoy = _decoy(tmp_path / "checkout")
    assert subprocess.run([sys.executable, "-m", "verifier.cli"], cwd=decoy, env=ENV).returncode == 99  # the trap
    model, spec = SPECS / "onnx" / "affine.onnx", SPECS / "vnnlib" / "affine_sat.vnnlib"
    result = tmp_path / "result.txt"
    words = default_tool().command(model, spec, 20.0, result)
    assert subprocess.run(words, cwd=decoy, env=ENV, capture_output=True, timeout=120).returncode == CODES["sat"]
    assert result.read_text().split()[0] == "sat"
    monkeypatch.chdir(decoy)
    with running_worker(ENV) as socket:
        done = _client(socket, str(model), str(spec), "--timeout", "20", cwd=decoy, client="script")
    assert done.returncode == CODES["sat"], done.stderr
