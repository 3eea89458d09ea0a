"""The bundled binarised CNN (benchmarks/binarised: Conv, BatchNormalization, Sign, MaxPool,
Gemm): the pipeline gives the verdicts that an independent real-arithmetic z3 model of the
weights gives (benchmarks/make_binarised.py, which imports nothing of ``verifier``), every
``sat`` re-run through onnxruntime; the ``unsat`` one needs the exact engine (interval and
CROWN bounds through Sign leave it open), and one ``sat`` hides from 20,000 sampled points."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime
import pytest
import torch
import z3

from verifier import Status, verify
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.region_proof import RegionProof
from verifier.spec import parse_vnnlib

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "binarised"
EXPECTED = {row["vnnlib"]: row["expected"] for row in csv.DictReader((SUITE / "expected.csv").open())}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_binarised", ROOT / "benchmarks" / "make_binarised.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("vnnlib", [name if i == 0 else pytest.param(name, marks=pytest.mark.slow)
                                    for i, name in enumerate(sorted(EXPECTED))])  # one by default (about 20 s each)
def test_pipeline_matches_the_independent_model(vnnlib: str) -> None:
    model, spec = SUITE / "onnx" / "bnn_conv.onnx", SUITE / vnnlib
    result = verify(model, spec, timeout=60)
    assert result.status.value == EXPECTED[vnnlib], result.stats
    if result.status is Status.SAT:
        assert result.counterexample is not None
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        region = parse_vnnlib(spec).regions[0]
        x = np.asarray(result.counterexample.x, dtype=np.float32).reshape(1, 1, 6, 6)
        y = session.run(None, {"x": x})[0].ravel().astype(np.float64)
        assert np.all(x.ravel() >= region.lower - 1e-7) and np.all(x.ravel() <= region.upper + 1e-7)
        assert any(bool(np.all(c.C @ y <= c.d)) for c in region.clauses)


def test_the_proof_needs_the_exact_engine() -> None:
    model, spec = SUITE / "onnx" / "bnn_conv.onnx", SUITE / "vnnlib" / "y0_floor.vnnlib"
    proof = RegionProof(TorchGraph(load_model(model), "cpu", torch.float64), parse_vnnlib(spec).regions[0])
    assert not proof.proven  # intervals and CROWN cut Sign at its interval bounds
    result = verify(model, spec, timeout=60)
    assert result.status is Status.UNSAT and result.stats["exact"][-1]["solver_status"] == "kInfeasible"


@pytest.mark.slow
def test_the_bundled_verdicts_are_the_independent_models() -> None:
    """Re-derives the expected verdicts with the script's z3 model (no ``verifier`` code): a
    check of the bundled data, not of the verifier (about 45 s; ``-m slow``)."""
    script = _script()
    w = script.weights()
    rng = np.random.default_rng(1)
    centre = rng.uniform(0.2, 0.8, 36)
    for vnnlib, expected in EXPECTED.items():
        region = parse_vnnlib(SUITE / vnnlib).regions[0]
        assert np.all(region.lower <= centre + 0.06) and np.all(centre - 0.06 <= region.upper)
        clauses = [[(c.C[r], float(c.d[r])) for r in range(c.C.shape[0])] for c in region.clauses]

        def violated(y: list[object], clauses: list[list[tuple[np.ndarray, float]]] = clauses) -> object:
            return z3.Or([z3.And([sum(float(c[j]) * y[j] for j in range(3) if c[j]) <= d for c, d in rows])
                          for rows in clauses])

        assert script.z3_verdict(w, region.lower, region.upper, violated)[0] == expected
