"""Networks with ReLU and Sigmoid neurons through the pipeline: the ReLU-split search runs
first; its leaves (every ReLU decided) that the exact engine cannot encode get a short search
of general splits (:mod:`verifier.bab.neuron_split`), and when its splits run out undecided
that search takes over the region. Checked against dense sampling (no ``unsat`` where a
sampled point violates the property) and against the pipeline without either, which cannot
prove the instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bab.test_cross_check import property_near_minimum, write_mlp
from verifier import api
from verifier.api import verify
from verifier.bab import relu_split
from verifier.config import AttackConfig, BabMode, ReluSplitConfig, VerifierConfig

HANDED_OVER = 1
"""A seed whose ReLU splits run out undecided within the time (the mixed search takes over)."""
BY_LEAVES = (7, 9)
"""Seeds whose leaves (every ReLU decided, a Sigmoid layer left) the general splits refute."""


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


def test_the_mixed_search_takes_over_when_relu_splits_run_out(tmp_path: Path) -> None:
    model, spec, values = _instance(HANDED_OVER, tmp_path)
    result = verify(model, spec, timeout=10, config=VerifierConfig(bab=BabMode.RELU))  # 5 s ran out on a slow host
    assert result.stats.get("bab_bounds") == "relu split, then neuron split"
    assert result.status.value != "unsat" or not (values <= -1e-4).any()


@pytest.mark.parametrize("seed", BY_LEAVES)
def test_leaves_the_exact_engine_cannot_encode_go_to_general_splits(tmp_path: Path, seed: int) -> None:
    model, spec, values = _instance(seed, tmp_path)
    result = verify(model, spec, timeout=6, config=VerifierConfig(bab=BabMode.RELU))
    assert result.status.value == "unsat" and not (values <= -1e-4).any()
    assert result.stats["bab"]["leaves_general"] >= 1


@pytest.mark.parametrize("seed", BY_LEAVES)
def test_without_general_splits_the_instances_stay_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        seed: int) -> None:
    """No leaf search, no hand-over: the ReLU-split search alone leaves them open."""
    model, spec, _ = _instance(seed, tmp_path)
    monkeypatch.setattr(api._Run, "neuron_search", lambda self, region, proof, confirm: None)
    config = VerifierConfig(bab=BabMode.RELU, relu_split=ReluSplitConfig(leaf_seconds=0.0))
    result = verify(model, spec, timeout=4, config=config)
    assert result.status.value != "unsat" and "bab_bounds" not in result.stats


PLANTED = (19, 21)
"""Seeds whose property sampling violates, and whose ReLU-split search reaches leaves (every
ReLU decided) with the attack off."""


def _agrees_with_sampling(status: str, values: np.ndarray) -> bool:
    """The check of these tests: no ``unsat`` where a sampled point violates the property."""
    return status != "unsat" or not (values <= -1e-4).any()


@pytest.mark.parametrize("seed", PLANTED)
def test_a_leaf_search_that_refutes_every_leaf_is_caught_by_sampling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      seed: int) -> None:
    """The sampling check of the leaf tests can fail: with a planted bug (the general-split
    search on a leaf answers "refuted" without searching) the pipeline answers ``unsat`` on a
    property that sampled points violate; the real leaf search does not."""
    model, spec, values = _instance(seed, tmp_path)
    assert (values <= -1e-4).any()
    config = VerifierConfig(bab=BabMode.RELU, attack=AttackConfig(rounds=0))  # only the search decides
    honest = verify(model, spec, timeout=5, config=config)
    assert _agrees_with_sampling(honest.status.value, values)
    monkeypatch.setattr(relu_split._ClauseSearch, "_general_splits_refute", lambda self, leaf, deadline, stats: True)
    planted = verify(model, spec, timeout=5, config=config)
    assert not _agrees_with_sampling(planted.status.value, values)
