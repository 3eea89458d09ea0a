"""Shared fixtures: paths of the bundled models and properties."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from verifier.spec.types import Region

if "PYTEST_XDIST_WORKER" in os.environ:
    # The suite runs in one worker per core (``-n auto`` in pyproject.toml): one thread each, and
    # the same for the verifier processes tests start, so that workers do not oversubscribe.
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
LARGE_BUNDLES = frozenset({"deadline", "generator"})
"""Benchmark folders of large networks (the largest of each shared benchmark, a 0.5 M-parameter
generator): ``tests/test_deadlines.py`` runs them; a full CROWN pass on some takes minutes, so
the per-model suites leave them out."""


def bundled_instances() -> list[tuple[Path, Path]]:
    """(onnx, vnnlib) pairs from every bundled instances.csv (benchmarks/* and specs/) but the
    :data:`LARGE_BUNDLES`."""
    pairs: list[tuple[Path, Path]] = []
    folders = [p for p in ROOT.glob("benchmarks/*/instances.csv") if p.parent.name not in LARGE_BUNDLES]
    for csv_path in sorted([*folders, ROOT / "specs" / "instances.csv"]):
        with csv_path.open() as handle:
            for row in csv.reader(handle):
                if row:
                    pairs.append((csv_path.parent / row[0].strip(), csv_path.parent / row[1].strip()))
    return pairs


def one_spec_per_model() -> list[tuple[Path, Path]]:
    """For every bundled model, the first property it is paired with."""
    seen: dict[Path, Path] = {}
    for model, spec in bundled_instances():
        seen.setdefault(model, spec)
    return sorted(seen.items())


def expected_verdicts(folder: Path) -> dict[tuple[str, str], str]:
    """(onnx, vnnlib) relative paths -> expected verdict, from folder/expected.csv."""
    out: dict[tuple[str, str], str] = {}
    with (folder / "expected.csv").open() as handle:
        for row in csv.DictReader(handle):
            out[(row["onnx"].strip(), row["vnnlib"].strip())] = row["expected"].strip()
    return out


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def recording_confirm(model: Path, region: Region) -> tuple[Callable[[np.ndarray], bool], list[np.ndarray]]:
    """An onnxruntime re-check of candidate points in ``region`` of ``model``, and the list it
    appends every confirmed point to (the oracle the branch-and-bound tests hand the searches)."""
    from verifier.witness import OnnxOracle, check_witness

    oracle = OnnxOracle(model)
    confirmed: list[np.ndarray] = []

    def confirm(x: np.ndarray) -> bool:
        valid = check_witness(oracle, region, x).valid
        if valid:
            confirmed.append(x)
        return valid

    return confirm, confirmed
