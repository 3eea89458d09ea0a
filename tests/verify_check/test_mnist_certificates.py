"""Certificates of MNIST fc ``unsat`` answers proven by alpha-CROWN at the root and by ReLU-split
branch and bound (beta-CROWN): both check ``valid``, from claimed intermediate bounds the
checker proves first; broken ones are rejected with the place named (multipliers dropped, split
sides swapped, a claim tightened, the claims dropped, a leaf dropped, slopes zeroed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from verifier.api import verify
from verify_check.cli import INVALID, VALID, check

MNIST = Path(__file__).resolve().parents[2] / "benchmarks" / "mnist_fc"
MODEL = MNIST / "onnx" / "mnist-net_256x2.onnx"
ROOT_ALPHA, RELU_SPLIT = MNIST / "vnnlib" / "prop_4_0.03.vnnlib", MNIST / "vnnlib" / "prop_6_0.03.vnnlib"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two instances' certificates, written by ``verify`` (60 s cap each)."""
    folder = tmp_path_factory.mktemp("mnist")
    made = {}
    for name, spec in (("alpha", ROOT_ALPHA), ("split", RELU_SPLIT)):
        path = folder / f"{name}.npz"
        result = verify(MODEL, spec, timeout=60, certificate=path)
        assert result.status.value == "unsat"
        assert result.stats["certificate"]["regions_certified"] == 1, result.stats["certificate"]
        made[name] = path
    return made


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


def _check(arrays: dict[str, np.ndarray], path: Path, spec: Path = RELU_SPLIT) -> tuple[int, str]:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return check(str(MODEL), str(spec), str(path))


def test_root_alpha_and_relu_split_certificates_are_valid(certificates: dict[str, Path]) -> None:
    assert check(str(MODEL), str(ROOT_ALPHA), str(certificates["alpha"]))[0] == VALID
    code, message = check(str(MODEL), str(RELU_SPLIT), str(certificates["split"]))
    assert code == VALID, message
    header = json.loads(bytes(_arrays(certificates["split"])["header"]))
    assert len(header["regions"][0]["trees"]) > 1  # a tree per clause searched by ReLU splits
    assert any(k.endswith("_beta_0") for k in _arrays(certificates["split"]))


def test_the_root_claims_carry_the_alpha_proof(certificates: dict[str, Path], tmp_path: Path) -> None:
    """Without its claims (the checker's own CROWN bounds alone) the root alpha proof fails."""
    arrays = {k: v for k, v in _arrays(certificates["alpha"]).items() if "claim" not in k}
    code, message = _check(arrays, tmp_path / "m.npz", ROOT_ALPHA)
    assert code == INVALID and "is not refuted" in message


@pytest.mark.parametrize("mutation, expected", [
    ("no betas", "is not refuted"),
    ("sides swapped", "is not refuted"),
    ("claim tightened", "is tighter than its proof gives"),
    ("no claims", "is not refuted"),
    ("leaf dropped", "neither two halves, two sides of a ReLU split"),
    ("slopes zeroed", "is not refuted"),
])
def test_mutations_are_rejected(certificates: dict[str, Path], tmp_path: Path, mutation: str, expected: str) -> None:
    arrays = _arrays(certificates["split"])
    trees = [k[:-len("kind")] for k in arrays if k.endswith("_kind") and "_t" in k]
    deepest = max(trees, key=lambda p: arrays[p + "kind"].size)
    if mutation == "no betas":
        arrays = {k: v for k, v in arrays.items() if "beta" not in k}
    elif mutation == "sides swapped":
        for p in trees:
            kind = arrays[p + "kind"]
            arrays[p + "kind"] = np.where(kind == 4, 5, np.where(kind == 5, 4, kind)).astype(kind.dtype)
    elif mutation == "claim tightened":
        lower, upper = arrays["r0_claim_lower_1"], arrays["r0_claim_upper_1"]
        unstable = np.nonzero((lower < 0) & (upper > 0))[0]
        upper = upper.copy()
        upper[unstable[0]] = upper[unstable[0]] / 4
        arrays["r0_claim_upper_1"] = upper
    elif mutation == "no claims":
        arrays = {k: v for k, v in arrays.items() if "claim" not in k}
    elif mutation == "leaf dropped":
        keep = arrays[deepest + "parent"].size - 1  # the last node, a leaf: its sibling is left alone
        for name in ("parent", "kind", "dim", "point", "neuron"):
            arrays[deepest + name] = arrays[deepest + name][:keep]
        for name in ("alpha", "beta"):
            nodes = arrays[deepest + name + "_node"]
            mine = nodes < keep
            arrays[deepest + name + "_node"] = nodes[mine]
            for j in range(2):
                arrays[f"{deepest}{name}_{j}"] = arrays[f"{deepest}{name}_{j}"][mine]
    else:
        for p in trees:
            for j in range(2):
                arrays[f"{p}alpha_{j}"] = np.zeros_like(arrays[f"{p}alpha_{j}"])
    code, message = _check(arrays, tmp_path / "m.npz")
    assert code == INVALID, message
    assert expected in message
