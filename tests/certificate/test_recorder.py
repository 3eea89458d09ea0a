"""What a certificate says about each region: certified where interval/CROWN bounds, input
splitting, alpha-CROWN at the root or ReLU splitting proved it (and then ``verify-check``
re-derives it: ``valid``; decided ReLU-split leaves by the multipliers of their linear program),
uncertified with the reason elsewhere (the SDP bound, leaves handed to the MILP engine, as
MaxPool networks' are: ``incomplete``), never silently missing. Checked on the cross-check's random
networks, whose proofs take each of these ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.verify_check.test_checker_cross_check import LAYOUTS, write_property
from verifier.api import verify
from verifier.certificate.claims import RootRecord
from verifier.certificate.log import NodeKind, ProofLog
from verifier.config import BabMode, ReluSplitConfig, VerifierConfig
from verify_check.certificate import region_tree
from verify_check.cli import INCOMPLETE, VALID, check


def _run(tmp_path: Path, seed: int, config: VerifierConfig, layout: str = "mlp") -> tuple[dict, tuple[int, str]]:
    model, spec, proof = tmp_path / "n.onnx", tmp_path / "p.vnnlib", tmp_path / "c.npz"
    region, _ = LAYOUTS[layout][0](seed, model)
    write_property(spec, region)
    result = verify(model, spec, timeout=20, config=config, certificate=proof)
    assert result.status.value == "unsat"
    return result.stats["certificate"], check(str(model), str(spec), str(proof))


FEW_STEPS = ReluSplitConfig(iterations=1, root_iterations=1, estimated_steps=False)  # many decided leaves


@pytest.mark.parametrize("seed, layout, config, code, reason", [
    (3, "mlp", VerifierConfig(), VALID, "valid (1 regions, 1 leaves)"),  # CROWN on the whole box
    (0, "mlp", VerifierConfig(), VALID, "valid"),  # input splitting
    (0, "mlp", VerifierConfig(bab=BabMode.RELU), VALID, "valid (1 regions, 4 leaves)"),  # ReLU splitting
    (35, "mlp", VerifierConfig(bab=BabMode.RELU), VALID, "valid (1 regions, 6 leaves)"),  # a split side is empty
    (6, "mlp", VerifierConfig(bab=BabMode.RELU), VALID, "valid (1 regions, 1 leaves)"),  # alpha-CROWN at the root
    (0, "mlp", VerifierConfig(bab=BabMode.RELU, relu_split=FEW_STEPS), VALID, "valid"),  # leaves refuted by their LP
    (16, "pool", VerifierConfig(bab=BabMode.RELU), INCOMPLETE, "leaves decided by the MILP engine"),  # MaxPool
    (7, "mlp", VerifierConfig(bab=BabMode.RELU, sdp_before_bab=True), INCOMPLETE, "low-rank SDP bounds"),
], ids=["crown", "input-split", "relu-split", "empty-side", "root-alpha", "decided-leaves", "milp-leaves", "sdp"])
def test_regions_are_certified_or_marked(tmp_path: Path, seed: int, layout: str, config: VerifierConfig, code: int,
                                         reason: str) -> None:
    stats, (found, message) = _run(tmp_path, seed, config, layout)
    assert found == code and reason in message, message
    assert stats["regions_certified"] == (1 if code == VALID else 0)


def test_halves_record_their_cut() -> None:
    """The cut of a pair of halves is where the lower half's upper end is below the upper's."""
    log = ProofLog(3, (0,), (1,))
    root = log.root()
    lower = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    low_hi, high_lo = upper.clone(), lower.clone()
    low_hi[0, 1] = high_lo[0, 1] = 0.25
    ids = log.halves(root, (lower, low_hi), (high_lo, upper))
    arrays = log.arrays("r0_", 1, (0,))
    assert ids.tolist() == [1, 2]
    assert arrays["r0_kind"].tolist() == [NodeKind.ROOT, NodeKind.LOW, NodeKind.HIGH]
    assert arrays["r0_dim"].tolist() == [-1, 1, 1] and arrays["r0_point"][1:].tolist() == [0.25, 0.25]
    assert arrays["r0_parent"].tolist() == [-1, 0, 0] and arrays["r0_clip_lower"].shape == (0, 3)
    assert np.isnan(arrays["r0_point"][0])


def test_relu_splits_record_their_neuron() -> None:
    """A ReLU split's children: the active side, then the inactive one, with the split's ReLU
    layer (position among the ReLU layers) and neuron; multipliers go with the leaves' slopes."""
    log = ProofLog(2, (0,), (1,))
    root = log.root()
    ids = log.relu_halves(root, torch.tensor([1]), torch.tensor([7]))
    log.alpha(ids, {0: torch.full((2, 1, 3), 0.5), 1: torch.full((2, 1, 9), 0.5)})
    log.beta(ids, {0: torch.zeros(2, 1, 3), 1: torch.ones(2, 1, 9)})
    arrays = log.arrays("r0_", 1, (0,))
    assert ids.tolist() == [1, 2]
    assert arrays["r0_kind"].tolist() == [NodeKind.ROOT, NodeKind.ACTIVE, NodeKind.INACTIVE]
    assert arrays["r0_dim"].tolist() == [-1, 1, 1] and arrays["r0_neuron"].tolist() == [-1, 7, 7]
    assert arrays["r0_beta_node"].tolist() == [1, 2] and arrays["r0_beta_1"].shape == (2, 1, 9)


def test_value_proofs_keep_the_slopes_of_each_best_bound() -> None:
    """Over rounds, each position and direction keeps the slopes that gave its best bound."""
    record = RootRecord()
    first = {"relu0": torch.zeros(2, 2, 3)}
    record.add_value("v", torch.tensor([4, 7]), torch.tensor([[1.0, -2.0], [0.5, 0.5]]), first)
    second = {"relu0": torch.ones(2, 2, 3)}
    record.add_value("v", torch.tensor([7, 9]), torch.tensor([[-1.0, 3.0], [0.75, 0.0]]), second)
    proof = record.values["v"]
    assert proof.positions.tolist() == [4, 7, 9]
    assert proof.found.tolist() == [[1.0, -1.0, 3.0], [0.5, 0.75, 0.0]]
    slopes = proof.slopes["relu0"][:, :, 0]
    assert slopes.tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]  # 7: +e from the second round (-1 > -2), -e too


def test_a_forest_splits_into_trees_the_checker_reads() -> None:
    """A row search's forest (one root per row) splits into one tree per root, nodes renumbered
    in order, slopes kept at leaves and their parents only; the checker's reader accepts each
    tree's arrays (its shape checks: parents first, children pairs, node ids in range)."""
    log = ProofLog(2, (0,), (1,))
    roots = log.roots(2)
    kids = log.relu_halves(roots[1:], torch.tensor([0]), torch.tensor([2]))  # row 1's root split: nodes 2, 3
    grand = log.relu_halves(kids, torch.tensor([1, 1]), torch.tensor([4, 3]))  # both split: nodes 4, 5, 6, 7
    every = torch.arange(8)
    log.alpha(every, {0: torch.rand(8, 1, 3), 1: torch.rand(8, 1, 5)})
    log.beta(every, {0: torch.rand(8, 1, 3), 1: torch.rand(8, 1, 5)})
    first, second = log.subtrees([0, 1])
    assert first.count == 1 and second.count == 7 and grand.tolist() == [4, 5, 6, 7]
    arrays = second.arrays("p_", 1, (0,))
    assert arrays["p_parent"].tolist() == [-1, 0, 0, 1, 2, 1, 2]
    assert arrays["p_neuron"].tolist() == [-1, 2, 2, 4, 3, 4, 3]
    assert arrays["p_alpha_node"].tolist() == [1, 2, 3, 4, 5, 6]  # not the root: no leaf is its child
    assert np.array_equal(arrays["p_alpha_1"][2], log.alphas[0][1][1][4])  # node 4's slopes, now node 3's
    assert first.arrays("q_", 1, (0,))["q_alpha_node"].tolist() == [0]  # a lone root is a leaf
    tree = region_tree(arrays, "p_", 2, 1, [3, 5], [0])
    assert tree.children == [[1, 2], [3, 5], [4, 6], [], [], [], []]
    assert log.subtrees([]) == []


@pytest.mark.parametrize("margin, proven", [(0.0, True), (1e9, False)])
def test_a_refutation_margin_holds_the_search_back(tmp_path: Path, margin: float, proven: bool) -> None:
    """A ReLU-split domain counts as refuted only when its bound exceeds the margin: with an
    impossible margin the search that proves seed 0 (4 leaves) refutes nothing (the room a
    certificate leaves for a checker's rounding allowances, ``VerifierConfig.for_certificates``)."""
    model, spec = tmp_path / "n.onnx", tmp_path / "p.vnnlib"
    region, _ = LAYOUTS["mlp"][0](0, model)
    write_property(spec, region)
    config = VerifierConfig(bab=BabMode.RELU, relu_split=ReluSplitConfig(refute_margin=margin), milp_max_unstable=0)
    result = verify(model, spec, timeout=3, config=config)
    assert (result.stats["bab"]["domains_proven"] > 0) is proven, result.stats["bab"]
    assert result.status.value == "unsat" or not proven
    assert VerifierConfig().for_certificates().relu_split.refute_margin > 0
