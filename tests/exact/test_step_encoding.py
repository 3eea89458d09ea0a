"""Sign in the exact engines (:class:`verifier.exact.program.StepRow`): on random binarised
networks (3 inputs -> dense 6 -> Sign -> dense 4 -> Sign -> dense 2) MILP (HiGHS) and SMT (z3)
agree with each other, with input-split branch and bound and with the outputs onnxruntime gives
at 4,000 sampled points; every ``sat`` is re-run through onnxruntime; a Sign encoded without
its zero level is caught by the same checks (a wrong ``unsat``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pulp
import pytest
from onnx import TensorProto, helper

from tests.bab.test_cross_check import _consistent, _crown, _verdicts, property_near_minimum
from tests.bab.test_cross_check_scatter import _dense, _onnxruntime_values
from verifier.exact import encode, milp
from verifier.sdp import SdpUnsupported
from verifier.sdp.problem import build_problem
from verifier.spec.types import Region

SEEDS = range(8)


def _network(seed: int, path: Path) -> Region:
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes = [_dense(rng, "a", "x", 3, 6, inits), helper.make_node("Sign", ["a"], ["s1"]),
             _dense(rng, "b", "s1", 6, 4, inits), helper.make_node("Sign", ["b"], ["s2"]),
             _dense(rng, "y", "s2", 4, 2, inits)]
    graph = helper.make_graph(nodes, f"sign{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return property_near_minimum(path, rng, 3, 1.0)[0]


def _runs(tmp_path: Path, seeds: range = SEEDS) -> list[tuple[dict[str, str], np.ndarray]]:
    out = []
    for seed in seeds:
        path = tmp_path / f"sign{seed}.onnx"
        region = _network(seed, path)
        verdicts = {k: str(v.value) if hasattr(v, "value") else str(v) for k, v in _verdicts(path, region).items()}
        out.append((verdicts, _onnxruntime_values(path, region, seed)))
    return out


def assert_engines_agree(runs: list[tuple[dict[str, str], np.ndarray]]) -> None:
    """Every run consistent with onnxruntime, MILP and SMT agree on unsat, MILP decides, and
    proofs and confirmed counterexamples both occur."""
    for verdicts, values in runs:
        assert _consistent(verdicts, values), verdicts
        assert (verdicts["milp"] == "unsat") == (verdicts["smt"] == "unsat"), verdicts
        assert verdicts["milp"] in ("sat", "unsat", "unconfirmed"), verdicts  # small: decided
    said = {v["milp"] for v, _ in runs}
    assert {"sat", "unsat"} <= said  # proofs and confirmed counterexamples both occur


def test_exact_engines_agree_on_binarised_networks(tmp_path: Path) -> None:
    assert_engines_agree(_runs(tmp_path))


def test_a_sign_without_its_zero_level_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plausible bug, Sign encoded as a two-level (+-1) step: on network 1 every
    counterexample needs a neuron whose float input is exactly 0 (Sign 0); the MILP then
    answers ``unsat`` where input splitting's counterexample is confirmed by onnxruntime."""
    original = milp.MilpProgram.step

    def two_levels(self: milp.MilpProgram, rel: milp.StepRow) -> None:
        original(self, rel)
        names = self.problem.variablesDict()
        p, q = names[f"z{self.binaries - 2}"], names[f"z{self.binaries - 1}"]
        self.add(pulp.LpAffineExpression([(p, 1.0), (q, 1.0)]) >= 1)

    monkeypatch.setattr(milp.MilpProgram, "step", two_levels)
    assert any(not _consistent(verdicts, values) for verdicts, values in _runs(tmp_path, range(1, 2)))


def test_the_sdp_bound_refuses_a_step(tmp_path: Path) -> None:
    """The SDP bound encodes two-term maxima only: a program with a Sign relation is refused
    with the node named (never bounded as if the Sign's output were free)."""
    path = tmp_path / "sign1.onnx"
    region = _network(1, path)
    crown, _, _ = _crown(path, region)
    enc = encode(crown.table)
    assert enc.steps
    with pytest.raises(SdpUnsupported, match="Sign"):
        build_problem(enc, np.ones(2), 0.0)
