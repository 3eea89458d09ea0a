"""The runner against a fake verifier that answers, hangs, crashes, prints garbage, forges a
witness and runs out of memory: each is recorded as it should be and the run goes on; a run
killed midway resumes without losing or repeating a finished instance."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.helpers import fake_template, make_benchmark
from verifier.bench.cli import main as bench_main
from verifier.bench.results import read_results

BEHAVIOURS = ["sat_valid", "sat_forged", "unsat", "unknown", "hang", "crash", "garbage", "memory"]


def test_every_behaviour_is_recorded_and_the_run_goes_on(tmp_path: Path, fake_log: Path) -> None:
    bench = make_benchmark(tmp_path / "fakebench", BEHAVIOURS, timeout=2.0)
    results = tmp_path / "out" / "results.csv"
    code = bench_main([str(bench), "--tool", fake_template(), "--results", str(results), "--jobs", "2",
                       "--grace", "1", "--memory-mb", "1024", "--quiet"])
    rows = {Path(r.vnnlib).stem: r for r in read_results(results)}
    assert set(rows) == set(BEHAVIOURS)
    assert (rows["sat_valid"].status, rows["sat_valid"].witness, rows["sat_valid"].correct) == ("sat", "valid", "yes")
    assert (rows["sat_forged"].status, rows["sat_forged"].witness,
            rows["sat_forged"].correct) == ("sat", "invalid", "no")
    assert (rows["unsat"].status, rows["unsat"].correct) == ("unsat", "yes")
    assert (rows["unknown"].status, rows["unknown"].correct) == ("unknown", "")
    assert rows["hang"].status == "timeout" and rows["hang"].time < 2.0 + 1 + 15
    assert rows["crash"].status == "error" and "signal" in rows["crash"].note
    assert rows["garbage"].status == "error" and "unreadable verdict" in rows["garbage"].note
    assert rows["memory"].status == "error"
    assert code == 1  # the forged witness is a wrong answer
    # the header holds the columns the issue names, paths as written in instances.csv
    with results.open() as handle:
        header = next(csv.reader(handle))
    assert header[:8] == ["tool", "benchmark", "onnx", "vnnlib", "status", "time", "expected", "correct"]
    assert rows["unsat"].onnx == "onnx/relu.onnx" and rows["unsat"].vnnlib == "vnnlib/unsat.vnnlib"
    details = results.with_suffix(".jsonl").read_text().splitlines()
    assert len(details) == len(BEHAVIOURS)


def test_a_second_identical_run_resumes_and_runs_nothing(tmp_path: Path, fake_log: Path) -> None:
    bench = make_benchmark(tmp_path / "fakebench", ["unsat", "sat_valid"])
    results = tmp_path / "results.csv"
    argv = [str(bench), "--tool", fake_template(), "--results", str(results), "--quiet"]
    assert bench_main(argv) == 0
    assert bench_main(argv) == 0
    assert len(read_results(results)) == 2
    assert len(fake_log.read_text().splitlines()) == 2


def test_resuming_over_changed_instance_files_is_refused(tmp_path: Path, fake_log: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = make_benchmark(tmp_path / "fakebench", ["unsat", "sat_valid"])
    results = tmp_path / "results.csv"
    argv = [str(bench), "--tool", fake_template(), "--results", str(results), "--quiet"]
    assert bench_main(argv) == 0
    spec = bench / "vnnlib" / "unsat.vnnlib"
    spec.write_text(spec.read_text().replace("2.0", "3.0"))  # regenerated under the same name
    assert bench_main(argv) == 3
    assert "vnnlib/unsat.vnnlib" in capsys.readouterr().err
    assert len(read_results(results)) == 2 and len(fake_log.read_text().splitlines()) == 2
    assert bench_main([*argv[:3], "--results", str(tmp_path / "new.csv"), "--quiet"]) == 0


def _default_sigint() -> None:
    """A pytest started in the background (``cmd &``) ignores SIGINT and its children inherit
    that; the driver must see Ctrl-C as a user's terminal would send it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _driver_with_rows(tmp_path: Path, names: list[str], rows: int,
                      start_new_session: bool = False) -> tuple[list[str], Path, subprocess.Popen[str]]:
    """Starts ``verify bench`` on slow fake instances in a process of its own and returns once
    ``rows`` rows are written: its command line, results file and process."""
    bench = make_benchmark(tmp_path / "fakebench", names)
    results = tmp_path / "results.csv"
    argv = [sys.executable, "-m", "verifier.cli", "bench", str(bench), "--tool", fake_template(),
            "--results", str(results), "--quiet"]
    driver = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              start_new_session=start_new_session, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not results.exists() or len(read_results(results)) < rows):
        time.sleep(0.1)
    return argv, results, driver


def test_a_killed_run_resumes_with_no_instance_lost_or_run_twice(tmp_path: Path, fake_log: Path) -> None:
    names = [f"slow{i}" for i in range(8)]
    argv, results, driver = _driver_with_rows(tmp_path, names, 3, start_new_session=True)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the tool it was running
    driver.wait()
    first = {r.vnnlib for r in read_results(results)}
    assert 3 <= len(first) < len(names)
    calls_before = fake_log.read_text().splitlines()
    code = subprocess.run(argv, capture_output=True, timeout=120).returncode
    assert code == 0
    rows = read_results(results)
    assert sorted(r.vnnlib for r in rows) == sorted(f"vnnlib/{n}.vnnlib" for n in names)  # none lost, none twice
    second_calls = fake_log.read_text().splitlines()[len(calls_before):]
    assert not {f"vnnlib/{c}.vnnlib" for c in second_calls} & first  # finished ones were not run again


def test_a_partial_last_line_from_a_killed_driver_is_dropped(tmp_path: Path, fake_log: Path) -> None:
    bench = make_benchmark(tmp_path / "fakebench", ["unsat", "sat_valid"])
    results = tmp_path / "results.csv"
    argv = [str(bench), "--tool", fake_template(), "--results", str(results), "--quiet"]
    assert bench_main([*argv, "--limit", "1"]) == 0
    with results.open("a") as handle:
        handle.write("fake,fakebench,onnx/relu.onnx,vnnlib/sat_va")  # cut short
    assert bench_main(argv) == 0
    assert sorted(r.vnnlib for r in read_results(results)) == ["vnnlib/sat_valid.vnnlib", "vnnlib/unsat.vnnlib"]


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = make_benchmark(tmp_path / "fakebench", ["unsat"])
    assert bench_main([str(tmp_path / "missing")]) == 3
    assert "not a folder" in capsys.readouterr().err
    assert bench_main([str(bench), "--tool", "broken=run {onnx} {vnnlib}"]) == 3
    assert "{result}" in capsys.readouterr().err
    assert bench_main([str(bench), "--tool", "x=run {onnx} {model} {result}"]) == 3
    assert "unknown placeholder" in capsys.readouterr().err
    assert bench_main([str(bench), "--filter", "("]) == 3


def test_ctrl_c_stops_the_tools_keeps_the_rows_and_the_run_resumes(tmp_path: Path, fake_log: Path) -> None:
    names = [f"slow{i}" for i in range(12)]  # ten still to run when Ctrl-C comes, even on a loaded machine
    argv, results, driver = _driver_with_rows(tmp_path, names, 2)
    assert driver.poll() is None, "the run finished before Ctrl-C could be sent"
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130 and "resume" in err
    kept = read_results(results)
    assert 2 <= len(kept) < len(names)
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    assert sorted(r.vnnlib for r in read_results(results)) == sorted(f"vnnlib/{n}.vnnlib" for n in names)
