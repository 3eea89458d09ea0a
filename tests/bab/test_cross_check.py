"""Complete methods cross-checked on 300 random small ReLU networks (30 in the default run, the
other 270 with ``pytest -m slow``): input-split and ReLU-split
(beta-CROWN) branch and bound, MILP (HiGHS) and SMT (z3) must never contradict each other; every ``sat`` is re-run
through onnxruntime; every ``unsat`` is checked by dense sampling. A deliberately unsound
relaxation (a ReLU upper line with half the chord's slope) must be caught by the same checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from verifier.api import RegionProof
from verifier.bab import input_split_search, relu_split_search
from verifier.bounds.backward import Multipliers
from verifier.bounds.crown import Crown
from verifier.config import InputSplitConfig, ReluSplitConfig
from verifier.deadline import Deadline
from verifier.exact.milp import MilpConfig, milp_check
from verifier.exact.smt import SmtConfig, smt_check
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec.types import Clause, Region
from verifier.witness import OnnxOracle, check_witness, grid_box

NETWORKS = 300
PER_TEST = 15
QUICK_CHUNKS = 2
"""Chunks run by default (30 networks); the other 270 networks run with ``pytest -m slow``."""


def _network(seed: int, path: Path) -> tuple[Region, np.ndarray]:
    """A random MLP (2-3 inputs, two hidden ReLU layers of 3-6) and a property on it: output 0
    below a threshold near its sampled minimum (some thresholds below, some above it, so the
    answers mix). Returns the region and the row values ``C y - d`` at 20000 sampled points
    (float32 evaluation)."""
    rng = np.random.default_rng(seed)
    n_in, h1, h2 = int(rng.integers(2, 4)), int(rng.integers(3, 7)), int(rng.integers(3, 7))
    write_mlp(path, [n_in, h1, h2, 2], rng, f"mlp{seed}")
    return property_near_minimum(path, rng, n_in, 1.0)


def write_mlp(path: Path, sizes: list[int], rng: np.random.Generator, name: str, activation: str = "Relu",
              gain: float = 1.0) -> None:
    """Saves a random MLP with layer widths ``sizes`` (inputs first, outputs last; float32
    Gemm layers with weights ``N(0, gain^2/fan_in)`` and biases ``N(0, 0.09)``, ``activation``
    after each hidden one; ``"Relu,Sigmoid"``: those in turn) at ``path``."""
    activations = activation.split(",")
    nodes, inits, value = [], [], "x"
    for k in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[k + 1], sizes[k])) * gain / np.sqrt(sizes[k])
        b = rng.normal(size=sizes[k + 1]) * 0.3
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{k}")]
        nodes.append(helper.make_node("Gemm", [value, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        value = f"z{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node(activations[k % len(activations)], [value], [f"a{k}"]))
            value = f"a{k}"
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                              [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, sizes[-1]])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def property_near_minimum(path: Path, rng: np.random.Generator, n_in: int, radius: float) -> tuple[Region, np.ndarray]:
    """For the two-output network at ``path``: a box of ``radius`` around a random centre and
    the property ``y0 - y1`` below a threshold near its sampled minimum (some thresholds below,
    some above it); the region and the row values ``C y - d`` at 20000 sampled points (float32
    evaluation)."""
    centre = rng.normal(size=n_in)
    lower, upper = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    x = lower + rng.random((20000, n_in)) * (upper - lower)
    tg = TorchGraph(load_model(path), "cpu", torch.float32)
    y = tg.forward_flat(torch.from_numpy(x).float()).double().numpy()
    values = y[:, 0] - y[:, 1]
    threshold = float(values.min()) + float(rng.uniform(-0.4, 0.15)) * float(values.std() + 1e-3)
    clause = Clause(np.array([[1.0, -1.0]]), np.array([threshold]), np.array([False]))
    return Region(lower, upper, (clause,)), values - threshold


def _crown(path: Path, region: Region) -> tuple[Crown, TorchGraph, TorchGraph]:
    graph = load_model(path)
    bounds = TorchGraph(graph, "cpu", torch.float64)
    shape = graph.inputs[0].shape
    lo = torch.from_numpy(region.lower).reshape(1, *shape)
    hi = torch.from_numpy(region.upper).reshape(1, *shape)
    return Crown(bounds, [lo], [hi]), bounds, TorchGraph(graph, "cpu", torch.float32)


def _verdicts(path: Path, region: Region, config: InputSplitConfig | None = None,
              search_seconds: float = 20.0) -> dict[str, str]:
    """Verdict of each complete method (``config``: the branch and bound's options; each search
    gets ``search_seconds``, each exact engine 20 s); every sat is confirmed by onnxruntime here."""
    oracle = OnnxOracle(path)
    crown, bounds, attack = _crown(path, region)
    verdicts: dict[str, str] = {}

    def confirm(x: np.ndarray) -> bool:
        return check_witness(oracle, region, x).valid

    proof = RegionProof(bounds, region)
    if proof.proven:
        verdicts["bab"] = verdicts["bab_relu"] = "unsat"
    else:
        assert proof.crown is not None
        outcome = input_split_search(bounds, attack, region, proof.open, proof.lower, proof.upper, confirm,
                                     Deadline.after(search_seconds), config or InputSplitConfig(pgd_every=0))
        verdicts["bab"] = outcome.status
        relu = relu_split_search(bounds, attack, region, proof.open, proof.crown, confirm,
                                 Deadline.after(search_seconds), ReluSplitConfig(pgd_every=0))
        verdicts["bab_relu"] = relu.status
    for name, result in (("milp", milp_check(crown.table, region.clauses, MilpConfig(time_limit=20))),
                         ("smt", smt_check(crown.table, region.clauses, SmtConfig(time_limit=20)))):
        status = result.status
        if status == "sat":
            assert result.x is not None
            status = "sat" if confirm(result.x) else "unconfirmed"
        verdicts[name] = status
    return verdicts


def _consistent(verdicts: dict[str, str], values: np.ndarray) -> bool:
    """No unsat next to a confirmed sat, and no unsat when a sampled point clearly violates
    (by more than float32 evaluation noise)."""
    said = set(verdicts.values())
    sampled_sat = bool((values <= -1e-4).any())
    return not ("unsat" in said and ("sat" in said or sampled_sat))


@pytest.mark.parametrize("chunk", [chunk if chunk < QUICK_CHUNKS else pytest.param(chunk, marks=pytest.mark.slow)
                                   for chunk in range(NETWORKS // PER_TEST)])
def test_branch_and_bound_milp_and_smt_agree_on_random_networks(tmp_path: Path, chunk: int) -> None:
    decided = 0
    kinds: set[str] = set()
    for seed in range(chunk * PER_TEST, (chunk + 1) * PER_TEST):
        path = tmp_path / f"net{seed}.onnx"
        region, values = _network(seed, path)
        verdicts = _verdicts(path, region)
        assert "unconfirmed" not in verdicts.values(), (seed, verdicts)
        assert _consistent(verdicts, values), (seed, verdicts)
        decided += all(v in ("sat", "unsat") for v in verdicts.values())
        kinds.update(verdicts.values())
    assert decided >= PER_TEST - 1  # small networks: every method finishes
    assert kinds & {"sat", "unsat"}


def _caught_within(tmp_path: Path, networks: int) -> bool:
    """True once one of the first ``networks`` random networks shows an inconsistency."""
    for seed in range(networks):
        path = tmp_path / f"net{seed}.onnx"
        region, values = _network(seed, path)
        if not _consistent(_verdicts(path, region), values):
            return True
    return False


def test_cross_check_catches_an_unsound_relu_relaxation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the ReLU upper line's slope halved (no longer above the function), branch and bound
    claims unsat on instances where MILP, SMT or sampling show a violation."""
    import verifier.ops.relax as relax_module

    original = relax_module.relax_leaky

    def broken(lower: torch.Tensor, upper: torch.Tensor, alpha: torch.Tensor | float,
               mode: str = "adaptive") -> relax_module.LinearBounds:
        good = original(lower, upper, alpha, mode)
        unstable = (lower < 0) & (upper > 0)
        return relax_module.LinearBounds(good.lower_slope, good.lower_bias,
                                         torch.where(unstable, good.upper_slope * 0.5, good.upper_slope),
                                         torch.where(unstable, good.upper_bias * 0.5, good.upper_bias))

    monkeypatch.setattr(relax_module, "relax_leaky", broken)
    assert _caught_within(tmp_path, 40)


def test_cross_check_catches_split_multipliers_of_the_wrong_sign(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With the beta-CROWN term added with the wrong sign (``+beta s x``, which is >= 0 on the
    split domain, so maximising beta inflates the bound), ReLU-split branch and bound claims
    unsat where MILP, SMT or sampling show a violation."""
    import verifier.bab.relu_split as relu_module

    original = relu_module._BetaBounder._set

    def flipped(self: relu_module._BetaBounder, crown: Crown, domains: relu_module._Domains,
                alpha: dict[str, torch.Tensor], beta: dict[str, torch.Tensor]) -> Multipliers:
        mult = original(self, crown, domains, alpha, beta)
        return Multipliers(mult.slopes, {key: -value for key, value in mult.betas.items()})

    monkeypatch.setattr(relu_module._BetaBounder, "_set", flipped)
    assert _caught_within(tmp_path, 60)


@pytest.mark.parametrize("config", [
    pytest.param(InputSplitConfig(pgd_every=0, branching="smear", inherit_bounds=False), id="smear",
                 marks=pytest.mark.slow),
    pytest.param(InputSplitConfig(pgd_every=0, per_domain_rows=False, batch=4), id="union-rows"),
])
def test_branching_and_row_options_agree_with_milp_and_smt(tmp_path: Path, config: InputSplitConfig) -> None:
    """Smear branching without inherited bounds, and CROWN's union rows (small batches): the
    same checks on 15 of the random networks (the test above covers the defaults)."""
    for seed in range(15):
        path = tmp_path / f"net{seed}.onnx"
        region, values = _network(seed, path)
        verdicts = _verdicts(path, region, config)
        assert "unconfirmed" not in verdicts.values(), (seed, verdicts)
        assert _consistent(verdicts, values), (seed, verdicts)
