"""The bundled suite benchmarks/soundness: its shape, every planted point re-run through
onnxruntime (independently of our own witness check), and our verifier never unsound on it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from tests.soundness.helpers import onnx_outputs, read_box
from verifier.bench.results import read_results
from verifier.soundness.check import planted_keys, tally_soundness
from verifier.soundness.cli import main as soundness_main

SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "soundness"


def _info() -> list[dict[str, str]]:
    with (SUITE / "info.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_suite_covers_architectures_and_activations() -> None:
    info = _info()
    instances = [r for r in csv.reader((SUITE / "instances.csv").open()) if r]
    assert len(instances) == len(info) >= 50
    assert len({r["architecture"] for r in info if r["kind"] == "planted"}) >= 5
    assert {r["family"] for r in info if r["kind"] == "planted"} == {"mlp", "cnn"}
    assert {r["activation"] for r in info if r["kind"] == "planted"} == {"relu", "sigmoid", "tanh"}
    assert any(r["kind"] == "unplanted" for r in info)
    size = sum(p.stat().st_size for p in SUITE.rglob("*") if p.is_file())
    assert size < 5 * 2**20


def test_every_planted_point_is_a_counterexample_on_onnxruntime() -> None:
    lines = [json.loads(t) for t in (SUITE / "counterexamples.jsonl").read_text().splitlines()]
    with (SUITE / "expected.csv").open() as handle:
        sat = {(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == "sat"}
    assert {(c["onnx"], c["vnnlib"]) for c in lines} == sat
    for entry in lines:
        lower, upper, label = read_box(SUITE / entry["vnnlib"])
        x = np.asarray(entry["x"], dtype=np.float64)
        assert np.all(x >= lower) and np.all(x <= upper), entry["vnnlib"]
        assert np.array_equal(x.astype(np.float32).astype(np.float64), x)
        y = onnx_outputs(onnxruntime.InferenceSession(str(SUITE / entry["onnx"])), x)
        assert np.delete(y, label).max() > y[label], entry["vnnlib"]


# A planted and (where the suite has one) a proven instance per activation on the smallest MLP,
# and on two CNNs, at a short timeout: the verifier may answer sat, unsat (on the proven ones),
# unknown or timeout, but never unsat on a planted one. The whole suite runs with -m slow.
SAMPLE = r"(m0[0-2]|m1[59])_.*(planted0|unplanted3)\."


def test_our_verifier_is_never_unsound_on_a_sample(tmp_path: Path) -> None:
    results = tmp_path / "ours.csv"
    code = soundness_main(["check", str(SUITE), "--filter", SAMPLE, "--timeout-scale", "0.1", "--jobs", "2",
                           "--results", str(results), "--quiet"])
    rows = read_results(results)
    assert len(rows) == 8
    table = tally_soundness(rows, planted_keys(SUITE))["verifier"]
    assert code == 0 and not table.failed
    assert table.proven >= 1


@pytest.mark.slow
def test_our_verifier_is_never_unsound_on_the_whole_suite(tmp_path: Path) -> None:
    results = tmp_path / "ours.csv"
    code = soundness_main(["check", str(SUITE), "--timeout-scale", "0.25", "--jobs", "2", "--results", str(results),
                           "--quiet"])
    table = tally_soundness(read_results(results), planted_keys(SUITE))["verifier"]
    assert code == 0 and not table.failed and table.instances == len(_info())
