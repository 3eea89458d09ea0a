"""Certificates of regions whose intermediate bounds were tightened by search on the cut network
(:mod:`verifier.bab.tighten`): each tightened bound is claimed with the tree of its search, which
``verify-check`` re-derives on the network cut at that layer. Oracles: the checker itself
(mutated trees and bounds are rejected, naming the layer and neuron) and the MILP engine (every
certified region is unsat for it too)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bab.test_tighten import CONFIG, NETWORKS, _write_spec
from verifier.api import RegionProof, verify
from verifier.config import BabMode, MilpConfig, default_config
from verifier.exact.milp import milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.result import Status
from verify_check.cli import INVALID, VALID, check

SEEDS = [7, 9, 11]  # deep random MLPs whose proofs tighten bounds and rest on the tightened ones


def _certified(tmp_path: Path, seed: int) -> tuple[Path, Path, Path]:
    """The network, property and certificate of a deep MLP proven with tightening."""
    model, spec, proof = tmp_path / "deep.onnx", tmp_path / "deep.vnnlib", tmp_path / "deep.npz"
    region = NETWORKS["mlp"](seed, model)
    _write_spec(region, spec)
    config = replace(default_config("cpu", 0), bab=BabMode.RELU, tighten=CONFIG, milp_max_unstable=0)
    result = verify(model, spec, timeout=60, config=config, certificate=proof)
    assert result.status is Status.UNSAT and result.stats["tighten"][0]["stabilised"] > 0
    crown = RegionProof(TorchGraph(load_model(model), "cpu", torch.float64), region).crown
    assert crown is not None
    assert milp_check(crown.table, region.clauses, MilpConfig(time_limit=60)).status is Status.UNSAT
    return model, spec, proof


def _mutated(proof: Path, change: dict[str, np.ndarray | None]) -> Path:
    """A copy of the certificate with arrays replaced (None: removed)."""
    arrays = dict(np.load(proof))
    for name, value in change.items():
        if value is None:
            arrays.pop(name)
        else:
            arrays[name] = value
    out = proof.with_name("mutated.npz")
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("seed", [SEEDS[0], *(pytest.param(seed, marks=pytest.mark.slow) for seed in SEEDS[1:])])
def test_tightened_bounds_are_certified_by_their_trees(tmp_path: Path, seed: int) -> None:
    """The certificate is valid; a tree's bound raised, a tree's split dropped, and the trees
    left out each make it invalid, named at the claim."""
    model, spec, proof = _certified(tmp_path, seed)
    assert check(str(model), str(spec), str(proof))[0] == VALID
    arrays = dict(np.load(proof))
    names = sorted(k for k in arrays if k.endswith("_trees"))
    assert names, "the tightened bounds' trees are in the certificate"
    name = names[0]
    prefix = name[: -len("trees")]
    raised = arrays[prefix + "tree_bounds"].copy()
    raised[0] += 1.0
    code, message = check(str(model), str(spec), str(_mutated(proof, {prefix + "tree_bounds": raised})))
    assert code == INVALID and "the tree of ReLU layer" in message, message
    dropped = {n: None for n in arrays if n.startswith(prefix) and not n.startswith(prefix + "tree")}
    dropped |= {n: None for n in names}
    code, message = check(str(model), str(spec), str(_mutated(proof, dropped)))
    assert code == INVALID and "is tighter than its proof gives" in message, message


def test_a_tree_that_does_not_cover_its_box_is_rejected(tmp_path: Path) -> None:
    """A claim tree with one child of a split cut away (it no longer covers the box) is rejected."""
    model, spec, proof = _certified(tmp_path, SEEDS[0])
    arrays = dict(np.load(proof))
    deep = [n[: -len("parent")] for n in arrays if n.endswith("parent") and "claim_" in n and arrays[n].size > 2]
    assert deep, "some tightened bound needed splits"
    prefix = deep[0]
    last = arrays[prefix + "parent"].size - 1
    change: dict[str, np.ndarray | None] = {prefix + n: arrays[prefix + n][:last]
                                            for n in ("parent", "kind", "dim", "point", "neuron")}
    for kind in ("alpha", "beta"):
        keep = arrays[f"{prefix}{kind}_node"] < last
        change[f"{prefix}{kind}_node"] = arrays[f"{prefix}{kind}_node"][keep]
        for n in [n for n in arrays if n.startswith(f"{prefix}{kind}_") and not n.endswith("node")]:
            change[n] = arrays[n][keep]
    code, message = check(str(model), str(spec), str(_mutated(proof, change)))
    assert code == INVALID and "neither two halves, two sides of a ReLU split" in message, message
