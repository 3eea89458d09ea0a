"""Networks with ReLU and Sigmoid neurons through the pipeline: the ReLU-split search runs
first, and when its splits run out undecided the search that splits both kinds of neurons
(:mod:`verifier.bab.neuron_split`) takes over. Checked against dense sampling (no ``unsat``
where a sampled point violates the property) and against the pipeline without the hand-over,
which cannot prove the instance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bab.test_cross_check import property_near_minimum, write_mlp
from verifier import api
from verifier.api import verify
from verifier.config import BabMode, VerifierConfig

HANDED_OVER = 9
"""The seed whose instance the ReLU splits leave undecided and the mixed search proves (1.6 s)."""


def _instance(seed: int, folder: Path) -> tuple[Path, Path, np.ndarray]:
    """A random Relu/Sigmoid MLP, a property near its sampled minimum written as VNN-LIB, and
    the property's row values at 20000 sampled points."""
    rng = np.random.default_rng(seed)
    path = folder / f"mixed{seed}.onnx"
    n_in = int(rng.integers(2, 4))
    sizes = [n_in, int(rng.integers(3, 7)), int(rng.integers(3, 7)), 2]
    write_mlp(path, sizes, rng, "mixed", "Relu,Sigmoid", gain=2.0)
    region, values = property_near_minimum(path, rng, n_in, 1.0)
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)] + [f"(declare-const Y_{j} Real)" for j in (0, 1)]
    for i in range(n_in):
        lines += [f"(assert (>= X_{i} {float(region.lower[i])!r}))", f"(assert (<= X_{i} {float(region.upper[i])!r}))"]
    lines.append(f"(assert (<= (- Y_0 Y_1) {float(region.clauses[0].d[0])!r}))")
    spec = folder / f"mixed{seed}.vnnlib"
    spec.write_text("\n".join(lines) + "\n")
    return path, spec, values


@pytest.mark.parametrize("seed", [1, HANDED_OVER])
def test_the_mixed_search_takes_over_when_relu_splits_run_out(tmp_path: Path, seed: int) -> None:
    model, spec, values = _instance(seed, tmp_path)
    result = verify(model, spec, timeout=6, config=VerifierConfig(bab=BabMode.RELU))
    if result.status.value == "unsat":
        assert not (values <= -1e-4).any()
    assert result.stats.get("bab_bounds") == "relu split, then neuron split"
    if seed == HANDED_OVER:
        assert result.status.value == "unsat"


def test_without_the_hand_over_the_instance_stays_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, spec, _ = _instance(HANDED_OVER, tmp_path)
    monkeypatch.setattr(api._Run, "neuron_search", lambda self, region, proof, confirm: None)
    result = verify(model, spec, timeout=4, config=VerifierConfig(bab=BabMode.RELU))
    assert result.status.value != "unsat" and "bab_bounds" not in result.stats
