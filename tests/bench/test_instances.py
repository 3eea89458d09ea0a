"""Finding instances: one folder, a tree of folders, filters, limits, timeout scaling,
expected verdicts, gzipped files, and clear errors for malformed instances.csv files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.bench.helpers import make_benchmark
from verifier.bench.instances import select_instances
from verifier.errors import InputError


def test_a_tree_of_benchmarks_filtered_limited_and_scaled(tmp_path: Path) -> None:
    make_benchmark(tmp_path / "tree" / "alpha", ["unsat", "sat_valid"], timeout=10)
    make_benchmark(tmp_path / "tree" / "nested" / "beta", ["unknown"], timeout=4)
    every = select_instances([tmp_path / "tree"], timeout_scale=0.5)
    assert [(i.benchmark, i.vnnlib, i.timeout, i.expected) for i in every] == [
        ("alpha", "vnnlib/unsat.vnnlib", 5.0, "unsat"), ("alpha", "vnnlib/sat_valid.vnnlib", 5.0, "sat"),
        ("beta", "vnnlib/unknown.vnnlib", 2.0, "unsat")]
    assert [i.benchmark for i in select_instances([tmp_path / "tree"], pattern="beta/")] == ["beta"]
    assert len(select_instances([tmp_path / "tree"], limit=1)) == 1
    both = select_instances([tmp_path / "tree" / "alpha", tmp_path / "tree" / "nested" / "beta"])
    assert len(both) == 3


def test_gzipped_files_are_unpacked_beside_them(tmp_path: Path) -> None:
    bench = make_benchmark(tmp_path / "b", ["unsat"])
    model = bench / "onnx" / "relu.onnx"
    (bench / "onnx" / "relu.onnx.gz").write_bytes(gzip.compress(model.read_bytes()))
    data = model.read_bytes()
    model.unlink()
    instance = select_instances([bench])[0]
    assert instance.path(instance.onnx).read_bytes() == data


@pytest.mark.parametrize("rows, message", [("a.onnx,b.vnnlib\n", ":1: expected onnx,vnnlib,timeout"),
                                           ("a.onnx,b.vnnlib,soon\n", "is not a number"),
                                           ("a.onnx,b.vnnlib,0\n", "must be positive")])
def test_malformed_instances_csv_names_the_line(tmp_path: Path, rows: str, message: str) -> None:
    (tmp_path / "instances.csv").write_text(rows)
    with pytest.raises(InputError, match=message):
        select_instances([tmp_path])


def test_a_folder_without_benchmarks_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no instances\.csv"):
        select_instances([tmp_path])
