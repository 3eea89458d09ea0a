"""The certificate's parts: Lanczos against a dense eigensolver, the Cholesky-proven lower bound
of the smallest eigenvalue, and soundness of the certified bound for *arbitrary* multipliers
(weak duality needs no optimality), checked by sampling the network through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from tests.sdp.nets import tiny_net
from verifier.sdp.bound import encode_for_sdp
from verifier.sdp.certificate import Multipliers, certify, lambda_min_lower
from verifier.sdp.lanczos import smallest_eigenpair
from verifier.sdp.problem import build_problem


@pytest.mark.parametrize("size", [1, 5, 40, 120])
def test_lanczos_finds_the_smallest_eigenpair(size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    A = torch.randn((size, size), generator=generator, dtype=torch.float64)
    A = A + A.T
    value, vector = smallest_eigenpair(lambda x: A @ x, size, steps=size, generator=generator)
    exact = float(torch.linalg.eigvalsh(A)[0])
    assert value == pytest.approx(exact, abs=1e-8 * (1 + abs(exact)))
    assert float((A @ vector - value * vector).norm()) < 1e-6 * (1 + abs(exact))


@pytest.mark.parametrize("shift", [-3.0, 0.0, 1e-7, 5.0])
def test_lambda_min_lower_is_below_the_eigenvalue_and_close(shift: float) -> None:
    generator = torch.Generator().manual_seed(7)
    B = torch.randn((60, 60), generator=generator, dtype=torch.float64)
    A = B @ B.T / 60
    A = A - (float(torch.linalg.eigvalsh(A)[0]) - shift) * torch.eye(60, dtype=torch.float64)
    exact = float(torch.linalg.eigvalsh(A)[0])
    lower = lambda_min_lower(A, generator)
    assert lower <= exact
    assert lower >= exact - 1e-6 * (1 + float(torch.linalg.matrix_norm(A)))


@pytest.mark.parametrize("seed", [0, 3])
def test_any_non_negative_multipliers_give_a_sound_bound(tmp_path: Path, seed: int) -> None:
    tiny = tiny_net(tmp_path, seed)
    clause = tiny.clause
    problem = build_problem(encode_for_sdp(tiny.crown.table), clause.C[0], float(clause.d[0]))
    session = onnxruntime.InferenceSession(str(tiny.onnx))
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    samples = rng.uniform(tiny.lower, tiny.upper, (3000, tiny.lower.size))
    outputs = np.stack([session.run(None, {name: s.astype(np.float32)[None]})[0][0] for s in samples])
    sampled = float((outputs @ clause.C[0] - clause.d[0]).min())
    p, n, m = problem.G.shape[0], problem.size, problem.B1.shape[0]
    for scale in (0.0, 0.1, 1.0, 10.0):
        mult = Multipliers(scale * rng.random(p), scale * rng.random(n), scale * rng.random(m), scale * rng.random(m))
        cert = certify(problem, mult)
        assert cert.row_bound <= sampled
        assert np.isfinite(cert.row_bound) or scale == 0.0
