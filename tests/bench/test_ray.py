"""The Ray backend on a local Ray instance gives the same results file as ``--jobs 1`` (same
rows, same verdicts and witness checks), and a finished run resumes there too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.helpers import fake_template, make_benchmark
from verifier.bench.cli import main as bench_main
from verifier.bench.results import read_results

ray = pytest.importorskip("ray", reason="the Ray backend needs the test extras (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def ray_log(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A local Ray instance whose workers log the fake tool's calls (the environment is set
    before Ray starts them); yields the log's path."""
    log = tmp_path_factory.mktemp("ray") / "calls.log"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAKE_LOG", str(log))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield log
        ray.shutdown()


def _rows(path: Path) -> list[tuple[str, ...]]:
    return sorted((r.tool, r.benchmark, r.onnx, r.vnnlib, r.status, r.expected, r.correct, r.witness)
                  for r in read_results(path))


def test_ray_backend_matches_local_run(tmp_path: Path, ray_log: Path) -> None:
    bench = make_benchmark(tmp_path / "fakebench", ["sat_valid", "sat_forged", "unsat", "crash", "hang"], timeout=2.0)
    common = [str(bench), "--tool", fake_template(), "--grace", "1", "--threads", "1", "--quiet"]
    local, remote = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert bench_main([*common, "--results", str(local), "--jobs", "1"]) == 1
    assert bench_main([*common, "--results", str(remote), "--ray", "auto"]) == 1
    assert _rows(local) == _rows(remote)
    assert len(_rows(remote)) == 5
    calls = ray_log.read_text().splitlines()
    assert len(calls) == 10  # each instance once per run, in this process and on the Ray workers
    assert bench_main([*common, "--results", str(remote), "--ray", "auto"]) == 1  # resume: nothing runs
    assert ray_log.read_text().splitlines() == calls


def test_an_instance_whose_worker_dies_is_retried_then_recorded_as_error(tmp_path: Path, ray_log: Path) -> None:
    bench = make_benchmark(tmp_path / "fakebench", ["kill_parent", "unsat"], timeout=5.0)
    results = tmp_path / "ray.csv"
    before = len(ray_log.read_text().splitlines()) if ray_log.exists() else 0
    code = bench_main([str(bench), "--tool", fake_template(), "--threads", "1", "--quiet", "--results", str(results),
                       "--ray", "auto"])
    assert code == 0
    rows = {Path(r.vnnlib).stem: r for r in read_results(results)}
    assert rows["unsat"].status == "unsat" and rows["unsat"].correct == "yes"
    assert rows["kill_parent"].status == "error" and "ray task failed" in rows["kill_parent"].note
    calls = ray_log.read_text().splitlines()[before:]
    assert calls.count("kill_parent") == 2  # the first try and one retry
