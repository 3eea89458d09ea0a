"""The checker against the MILP engine on the 300 random networks of the complete-method
cross-check (30 in the default run, the rest with ``pytest -m slow``), and on random networks
of the other certified layouts (LeakyRelu MLPs, convolutional networks without pooling, with
MaxPool and with Pad and AveragePool: 15 each by default, 150 with ``slow``), each verified twice: in
the default mode (input splitting on these small inputs) and with ReLU splitting (beta-CROWN,
alpha-CROWN at the root, claimed intermediate bounds; on the layouts other than MLPs only with
``slow``): every certificate the verifier writes
for an ``unsat`` answer is checked, and a certificate the checker accepts must
never meet a ``sat`` from MILP (confirmed by onnxruntime) or a sampled violation. The
verifier's certificates must check ``valid`` (or ``incomplete`` where a step that writes no
proof decided), never ``invalid``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bab.test_cross_check import NETWORKS, PER_TEST, QUICK_CHUNKS, _network, property_near_minimum, write_mlp
from verifier.api import verify
from verifier.bounds.crown import Crown
from verifier.config import BabMode, VerifierConfig
from verifier.exact.milp import MilpConfig, milp_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause, Region
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


def _conv_network(seed: int, path: Path, pool: str | None = None) -> tuple[Region, np.ndarray]:
    """A random convolutional network on a ``(1, 1, 3, 3)`` input (a 2x2 Conv with bias to 2-4
    channels, Relu, with ``pool`` ``"max"`` a 2x2 MaxPool of stride 1 padded at the end or
    ``"avg"`` a Pad (a column of 0.25) and a 2x2 AveragePool padded at the bottom, Flatten, a
    Gemm to 2 outputs) and a property near its minimum sampled at uniform points and box corners
    (in 9 dimensions uniform points alone miss the corners)."""
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(2, 5))
    init = [numpy_helper.from_array(rng.normal(size=(channels, 1, 2, 2)).astype(np.float32), "K"),
            numpy_helper.from_array((rng.normal(size=channels) * 0.3).astype(np.float32), "b"),
            numpy_helper.from_array((rng.normal(size=(2, 4 * channels)) / 2).astype(np.float32), "W")]
    nodes = [helper.make_node("Conv", ["x", "K", "b"], ["c"]), helper.make_node("Relu", ["c"], ["a"]),
             helper.make_node("Flatten", ["p" if pool else "a"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["y"], transB=1)]
    if pool == "max":
        nodes.insert(2, helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]))
    elif pool == "avg":
        init += [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 0, 1], dtype=np.int64), "pads"),
                 numpy_helper.from_array(np.array(0.25, dtype=np.float32), "fill")]
        nodes[2:2] = [helper.make_node("Pad", ["a", "pads", "fill"], ["q"]),
                      helper.make_node("AveragePool", ["q"], ["p"], kernel_shape=[2, 2], pads=[0, 0, 1, 0])]
    graph = helper.make_graph(nodes, f"conv{seed}",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    region, values = property_near_minimum(path, rng, 9, 0.5)
    (clause,) = region.clauses
    corners = np.where(rng.random((4000, 9)) < 0.5, region.lower, region.upper)
    y = TorchGraph(load_model(path), "cpu", torch.float32).forward_flat(torch.from_numpy(corners).float()).double()
    raw = np.concatenate([values + clause.d[0], (y[:, 0] - y[:, 1]).numpy()])
    threshold = float(raw.min()) + float(rng.uniform(-0.4, 0.15)) * float(raw.std() + 1e-3)
    clauses = (Clause(clause.C, np.array([threshold]), clause.strict),)
    return Region(region.lower, region.upper, clauses), raw - threshold


def _leaky_network(seed: int, path: Path) -> tuple[Region, np.ndarray]:
    """A random MLP as :func:`tests.bab.test_cross_check._network`, with LeakyRelu (alpha 0.01)."""
    rng = np.random.default_rng(seed)
    n_in, h1, h2 = int(rng.integers(2, 4)), int(rng.integers(3, 7)), int(rng.integers(3, 7))
    write_mlp(path, [n_in, h1, h2, 2], rng, f"leaky{seed}", activation="LeakyRelu")
    return property_near_minimum(path, rng, n_in, 1.0)


LAYOUTS = {"mlp": (_network, NETWORKS), "leaky": (_leaky_network, NETWORKS // 2),
           "conv": (_conv_network, NETWORKS // 2),
           "pool": (lambda seed, path: _conv_network(seed, path, pool="max"), NETWORKS // 2),
           "avgpool": (lambda seed, path: _conv_network(seed, path, pool="avg"), NETWORKS // 2)}
"""Network makers of the cross-check, with how many networks each runs with ``slow``."""


def _chunks(layout: str) -> list[object]:
    count = LAYOUTS[layout][1] // PER_TEST
    quick = QUICK_CHUNKS if layout == "mlp" else 1
    return [pytest.param(layout, chunk, id=f"{layout}-{chunk}",
                         marks=() if chunk < quick else (pytest.mark.slow,)) for chunk in range(count)]


def _milp(model: Path, region: Region) -> str:
    graph = load_model(model)
    shape = graph.inputs[0].shape
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [torch.from_numpy(region.lower).reshape(1, *shape)],
                  [torch.from_numpy(region.upper).reshape(1, *shape)])
    result = milp_check(crown.table, region.clauses, MilpConfig(time_limit=20))
    if result.status == "sat":
        assert result.x is not None and check_witness(OnnxOracle(model), region, result.x).valid
    return str(result.status)


def _cases() -> list[object]:
    """Each chunk in both modes; ReLU splitting on the layouts other than MLPs only with
    ``slow`` (it takes 15-32 s a chunk on them, and on MaxPool networks ends mostly incomplete)."""
    cases = []
    for layout in LAYOUTS:
        for case in _chunks(layout):
            for bab in (BabMode.AUTO, BabMode.RELU):
                slow = bab is BabMode.RELU and layout != "mlp"
                marks = (*case.marks, pytest.mark.slow) if slow else case.marks  # type: ignore[attr-defined]
                cases.append(pytest.param(*case.values, bab, id=f"{case.id}-{bab.name.lower()}",  # type: ignore[attr-defined]
                                          marks=marks))
    return cases


@pytest.mark.parametrize(("layout", "chunk", "bab"), _cases())
def test_checker_agrees_with_milp(tmp_path: Path, layout: str, chunk: int, bab: BabMode) -> None:
    certified = 0
    for seed in range(chunk * PER_TEST, (chunk + 1) * PER_TEST):
        model, spec, proof = tmp_path / f"net{seed}.onnx", tmp_path / f"p{seed}.vnnlib", tmp_path / f"c{seed}.npz"
        region, values = LAYOUTS[layout][0](seed, model)
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
    # ReLU splitting decides no MaxPool window: on the pool networks its leaves mostly go to the
    # MILP engine (uncertified); its certified answers there are those proven on the whole box
    assert certified >= (0 if (layout, bab) == ("pool", BabMode.RELU) else 1)
