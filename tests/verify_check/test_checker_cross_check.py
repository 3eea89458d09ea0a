"""The checker against the MILP engine on the 300 random networks of the complete-method
cross-check (30 in the default run, the rest with ``pytest -m slow``), each verified twice: in
the default mode (input splitting on these small inputs) and with ReLU splitting (beta-CROWN,
alpha-CROWN at the root, claimed intermediate bounds): every certificate the verifier writes
for an ``unsat`` answer is checked, and a certificate the checker accepts must
never meet a ``sat`` from MILP (confirmed by onnxruntime) or a sampled violation. The
verifier's certificates must check ``valid`` (or ``incomplete`` where a step that writes no
proof decided), never ``invalid``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.bab.test_cross_check import NETWORKS, PER_TEST, QUICK_CHUNKS, _network
from verifier.api import verify
from verifier.bounds.crown import Crown
from verifier.config import BabMode, VerifierConfig
from verifier.exact.milp import MilpConfig, milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness
from verify_check.cli import INCOMPLETE, VALID, check


def write_property(path: Path, region: Region) -> None:
    """The region as a VNN-LIB 1.0 file (every number written exactly: ``repr`` of float64)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(region.lower.size)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    for i, (lo, hi) in enumerate(zip(region.lower, region.upper, strict=True)):
        lines += [f"(assert (>= X_{i} {float(lo)!r}))", f"(assert (<= X_{i} {float(hi)!r}))"]
    (clause,) = region.clauses
    assert clause.C.tolist() == [[1.0, -1.0]]
    lines.append(f"(assert (<= (- Y_0 Y_1) {float(clause.d[0])!r}))")
    path.write_text("\n".join(lines) + "\n")


def _milp(model: Path, region: Region) -> str:
    graph = load_model(model)
    shape = graph.inputs[0].shape
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [torch.from_numpy(region.lower).reshape(1, *shape)],
                  [torch.from_numpy(region.upper).reshape(1, *shape)])
    result = milp_check(crown.table, region.clauses, MilpConfig(time_limit=20))
    if result.status == "sat":
        assert result.x is not None and check_witness(OnnxOracle(model), region, result.x).valid
    return str(result.status)


@pytest.mark.parametrize("bab", [BabMode.AUTO, BabMode.RELU], ids=["auto", "relu"])
@pytest.mark.parametrize("chunk", [chunk if chunk < QUICK_CHUNKS else pytest.param(chunk, marks=pytest.mark.slow)
                                   for chunk in range(NETWORKS // PER_TEST)])
def test_checker_agrees_with_milp(tmp_path: Path, chunk: int, bab: BabMode) -> None:
    certified = 0
    for seed in range(chunk * PER_TEST, (chunk + 1) * PER_TEST):
        model, spec, proof = tmp_path / f"net{seed}.onnx", tmp_path / f"p{seed}.vnnlib", tmp_path / f"c{seed}.npz"
        region, values = _network(seed, model)
        write_property(spec, region)
        result = verify(model, spec, timeout=30, config=VerifierConfig(bab=bab), certificate=proof)
        if result.status.value != "unsat":
            continue
        code, message = check(str(model), str(spec), str(proof))
        assert code in (VALID, INCOMPLETE), (seed, message)
        if code == VALID:
            certified += 1
            assert _milp(model, region) == "unsat", seed
            assert not bool((values <= -1e-4).any()), seed
    assert certified >= 1
