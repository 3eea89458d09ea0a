"""Complete methods cross-checked on 12 random networks with parallel branches (4 in the default
run, the others with ``pytest -m slow``): the input is split
in two, each half goes through its own dense path, the paths are concatenated and go through
a shared head. One path always passes a node that CROWN bounds by intervals only (Sin: a
"cut"); in some networks both paths do, so the spec rows' linear bounds reach no input at
all (ReLU splitting once failed there with a KeyError). Input-split and ReLU-split branch and
bound, MILP and SMT (which cannot encode Sin and say so) must never contradict each other or
the sampled outputs; every ``sat`` is re-run through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import _consistent, _crown, property_near_minimum
from verifier.exact.milp import MilpConfig, milp_check
from verifier.exact.program import ExactUnsupported
from verifier.spec.types import Region

NETWORKS = 12
QUICK = (0, 1, 2, 4)
"""Networks run by default (both paths cut, sat and unsat among them); the others run with
``pytest -m slow``."""


def _dense(rng: np.random.Generator, name: str, source: str, n_in: int, n_out: int,
           inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    w = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
    b = rng.normal(size=n_out) * 0.3
    inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}_W"),
              numpy_helper.from_array(b.astype(np.float32), f"{name}_b")]
    return helper.make_node("Gemm", [source, f"{name}_W", f"{name}_b"], [name], transB=1)


def _branch(rng: np.random.Generator, tag: str, source: str, cut: bool, inits: list[onnx.TensorProto],
            nodes: list[onnx.NodeProto]) -> str:
    """A dense path of two layers from a half of the input; ``cut``: Sin after the first."""
    hidden = int(rng.integers(3, 6))
    nodes.append(_dense(rng, f"{tag}1", source, 2, hidden, inits))
    nodes.append(helper.make_node("Sin" if cut else "Relu", [f"{tag}1"], [f"{tag}a"]))
    nodes.append(_dense(rng, f"{tag}2", f"{tag}a", hidden, 3, inits))
    return f"{tag}2"


def _network(seed: int, path: Path) -> tuple[Region, np.ndarray]:
    """The network (4 inputs) and a property on it as in :mod:`tests.bab.test_cross_check`:
    ``y0 - y1`` below a threshold near its sampled minimum; returns the region and the row
    values at 20000 sampled points (float32 evaluation)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(np.array([2, 2], dtype=np.int64), "halves")]
    nodes = [helper.make_node("Split", ["x", "halves"], ["left", "right"], axis=1)]
    left = _branch(rng, "p", "left", cut=seed % 3 == 0, inits=inits, nodes=nodes)
    right = _branch(rng, "q", "right", cut=True, inits=inits, nodes=nodes)
    nodes.append(helper.make_node("Concat", [left, right], ["joined"], axis=1))
    nodes.append(_dense(rng, "h", "joined", 6, 4, inits))
    nodes.append(helper.make_node("Relu", ["h"], ["ha"]))
    nodes.append(_dense(rng, "y", "ha", 4, 2, inits))
    graph = helper.make_graph(nodes, f"branches{seed}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return property_near_minimum(path, rng, 4, 0.5)


@pytest.mark.parametrize("seed", [seed if seed in QUICK else pytest.param(seed, marks=pytest.mark.slow)
                                  for seed in range(NETWORKS)])
def test_branch_and_bound_agrees_with_sampling_on_networks_with_cut_branches(
        tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / f"branches{seed}.onnx"
    region, values = _network(seed, path)
    with pytest.raises(ExactUnsupported, match="Sin"):  # the exact engines name the node they cannot encode
        milp_check(_crown(path, region)[0].table, region.clauses, MilpConfig(time_limit=20))
    verdicts = _verdicts_without_exact(path, region, monkeypatch)
    assert set(verdicts) == {"bab", "bab_relu"}
    assert "unconfirmed" not in verdicts.values(), verdicts
    assert _consistent(verdicts, values), verdicts  # no unsat beside a sat or a sampled violation


def _verdicts_without_exact(path: Path, region: Region, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The two searches' verdicts (the exact engines, which cannot encode Sin, left out)."""
    import tests.bab.test_cross_check as cross

    class _Skipped:
        status = "skipped"
        x = None

    monkeypatch.setattr(cross, "milp_check", lambda *args, **kwargs: _Skipped())
    monkeypatch.setattr(cross, "smt_check", lambda *args, **kwargs: _Skipped())
    found = cross._verdicts(path, region)
    return {k: str(v) for k, v in found.items() if v != "skipped"}
