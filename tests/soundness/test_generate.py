"""The generator: layout, reproducibility, planted points checked with onnxruntime directly,
and the exported model against the trained torch module."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from tests.soundness.helpers import TINY, onnx_outputs, read_box
from verifier.errors import InputError
from verifier.soundness.generate import generate, plan_models, train_model
from verifier.soundness.onnx_export import network_to_onnx
from verifier.soundness.training import TrainConfig


def test_layout_and_tables_agree(tiny: Path) -> None:
    rows = [r for r in csv.reader((tiny / "instances.csv").open()) if r]
    with (tiny / "expected.csv").open() as handle:
        expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader(handle)}
    lines = [json.loads(t) for t in (tiny / "counterexamples.jsonl").read_text().splitlines()]
    assert rows and len(rows) == len(expected)
    for onnx_rel, vnnlib_rel, timeout in rows:
        assert (tiny / onnx_rel).is_file() and (tiny / vnnlib_rel).is_file() and float(timeout) == 30
    planted = {(c["onnx"], c["vnnlib"]) for c in lines}
    assert planted == {k for k, v in expected.items() if v == "sat"}
    assert len(planted) >= 2
    assert {v for v in expected.values()} <= {"sat", "unsat"}
    for line in lines:  # the property files never carry the planted point or its target label
        text = (tiny / line["vnnlib"]).read_text()
        assert "target" not in text and "corner" not in text


def test_both_families_get_planted_counterexamples(tiny: Path) -> None:
    with (tiny / "info.csv").open() as handle:
        planted = [r for r in csv.DictReader(handle) if r["kind"] == "planted"]
    assert {r["family"] for r in planted} == {"mlp", "cnn"}


def test_planted_points_violate_on_onnxruntime(tiny: Path) -> None:
    for line in (tiny / "counterexamples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        lower, upper, label = read_box(tiny / entry["vnnlib"])
        x = np.asarray(entry["x"], dtype=np.float64)
        assert np.all(x >= lower) and np.all(x <= upper)
        assert np.array_equal(x.astype(np.float32).astype(np.float64), x)
        on_corner = np.isclose(x, lower, rtol=0, atol=0) | np.isclose(x, upper, rtol=0, atol=0)
        assert on_corner.all()
        y = onnx_outputs(onnxruntime.InferenceSession(str(tiny / entry["onnx"])), x)
        assert np.delete(y, label).max() > y[label] + 1e-3


def test_unplanted_instances_hold_on_samples(tiny: Path) -> None:
    with (tiny / "expected.csv").open() as handle:
        unsat = [r for r in csv.DictReader(handle) if r["expected"] == "unsat"]
    rng = np.random.default_rng(0)
    for row in unsat:
        lower, upper, label = read_box(tiny / row["vnnlib"])
        session = onnxruntime.InferenceSession(str(tiny / row["onnx"]))
        points = lower + rng.random((500, lower.size)) * (upper - lower)
        y = np.stack([onnx_outputs(session, p) for p in points])  # the model takes one input at a time
        assert np.all(np.delete(y, label, axis=1).max(axis=1) < y[:, label])


def test_same_seed_same_benchmark(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, TINY)
    for line in (again / "counterexamples.jsonl").read_text().splitlines():
        entry = json.loads(line)
        assert (again / entry["onnx"]).read_bytes() == (tiny / entry["onnx"]).read_bytes()
        assert (again / entry["vnnlib"]).read_bytes() == (tiny / entry["vnnlib"]).read_bytes()
    assert (again / "counterexamples.jsonl").read_text() == (tiny / "counterexamples.jsonl").read_text()


def test_exported_onnx_computes_the_trained_network() -> None:
    plan = plan_models(replace(TINY, architectures=("mlp-2x32", "cnn-2c-pool"), activations=("sigmoid",)))[1]
    network, _, _ = train_model(plan, replace(TINY, train=TrainConfig(epochs=2, check_every=2)))
    model = network_to_onnx(network, plan.arch.input_shape, plan.name)
    session = onnxruntime.InferenceSession(model.SerializeToString())
    points = torch.rand((16, *plan.arch.input_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = network(points).numpy()
    got = np.stack([onnx_outputs(session, p.numpy()) for p in points])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("change", "message"), [
    ({"architectures": ("mlp-9x9",)}, "unknown architecture"),
    ({"activations": ("gelu",)}, "--activation"),
    ({"eps": (0.0,)}, "--eps"),
    ({"count": 0}, "--count"),
    ({"planted": 0, "unplanted": 0}, "--planted"),
])
def test_bad_options_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        plan_models(replace(TINY, **change))  # type: ignore[arg-type]


def test_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate(tmp_path, TINY)
