"""The exact engines cross-checked: MILP with HiGHS, MILP with CBC and SMT (z3) agree on small
random networks; every ``sat`` candidate is re-checked with onnxruntime on the ONNX file, and
every ``unsat`` answer survives dense sampling with onnxruntime. The network builders here are
shared with ``test_smt.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tests.bounds.random_dags import GraphBuilder
from verifier.bounds.crown import Crown
from verifier.exact import (
    ExactOutcome,
    ExactUnsupported,
    MilpConfig,
    SmtConfig,
    encode,
    milp_check,
    smt_check,
)
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec.types import Clause, Region
from verifier.witness import OnnxOracle, check_witness

SAMPLES = 100_000
SHIFT = (0.3, 3.0)


# ---------------------------------------------------------------------------- networks
class Net(GraphBuilder):
    """Builds one ONNX graph twice: batch 1 (for the verifier) and a free batch (for sampling)."""

    def __init__(self, seed: int, input_shape: list[int]) -> None:
        super().__init__(seed)
        self.input_shape = input_shape

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self.name("v")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op.lower()), **attrs))
        return out

    def dense(self, x: str, n_in: int, n_out: int) -> str:
        w = self.rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        return self.node("Gemm", [x, self.const(w), self.const(self.rng.normal(size=n_out) * 0.3)], transB=1)

    def conv(self, x: str, c_in: int, c_out: int) -> str:
        w = self.rng.normal(size=(c_out, c_in, 3, 3)) / 3
        return self.node("Conv", [x, self.const(w), self.const(self.rng.normal(size=c_out) * 0.2)], pads=[1, 1, 1, 1])

    def models(self, out: str, width: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
        """(batch-1 model, batch-free model)."""
        made = []
        for batch in (1, "N"):
            shape = [batch, *self.input_shape[1:]]
            graph = helper.make_graph(self.nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                      [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, width])],
                                      self.inits)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
            onnx.checker.check_model(model)
            made.append(model)
        return made[0], made[1]


def relu_mlp(seed: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """2-3 hidden ReLU layers of 4-10 neurons, 2-4 inputs, 2-3 outputs."""
    rng = np.random.default_rng(10_000 + seed)
    n_in = int(rng.integers(2, 5))
    widths = [int(w) for w in rng.integers(4, 11, size=int(rng.integers(2, 4)))]
    n_out = int(rng.integers(2, 4))
    b = Net(seed, [1, n_in])
    h, width = "x", n_in
    for w in widths:
        h, width = b.node("Relu", [b.dense(h, width, w)]), w
    return b.models(b.dense(h, width, n_out), n_out)


def conv_residual(seed: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Conv -> Relu -> Conv -> residual Add -> Relu -> Flatten -> Gemm on a 1x3x3 image."""
    b = Net(seed, [1, 1, 3, 3])
    a = b.node("Relu", [b.conv("x", 1, 2)])
    r = b.node("Relu", [b.node("Add", [a, b.conv(a, 2, 2)])])
    return b.models(b.dense(b.node("Flatten", [r]), 18, 3), 3)


def piecewise(seed: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Conv -> LeakyRelu -> MaxPool -> Flatten -> Gemm, then Max of two branches, Abs, PRelu,
    Clip: every piecewise-linear op the engines encode."""
    b = Net(seed, [1, 1, 4, 4])
    a = b.node("LeakyRelu", [b.conv("x", 1, 1)], alpha=0.1)
    p = b.node("Flatten", [b.node("MaxPool", [a], kernel_shape=[2, 2], strides=[2, 2])])
    h1, h2 = b.dense(p, 4, 3), b.dense(p, 4, 3)
    m = b.node("Abs", [b.node("Max", [h1, h2])])
    q = b.node("PRelu", [b.dense(m, 3, 3), b.const(b.rng.uniform(-0.5, 1.5, size=3))])
    clip = b.node("Clip", [b.dense(q, 3, 2), b.const(np.array(-1.5)), b.const(np.array(2.0))])
    return b.models(clip, 2)


# ---------------------------------------------------------------------------- instances
@dataclass
class Instance:
    """A network on disk, its batch-free twin in onnxruntime, a region and its Crown."""

    path: Path
    sampler: ort.InferenceSession
    region: Region
    crown: Crown

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """onnxruntime outputs ``(B, m)`` for flattened inputs ``(B, n)`` (cast to float32)."""
        return run_batch(self.sampler, x)

    def samples(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform float32 points of the box and their onnxruntime outputs."""
        return sample_box(self.sampler, self.region.lower, self.region.upper, count, seed)


def run_batch(sampler: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """onnxruntime outputs ``(B, m)`` of the batch-free model for flattened inputs ``(B, n)``."""
    shape = [d if isinstance(d, int) else x.shape[0] for d in sampler.get_inputs()[0].shape]
    return sampler.run(None, {"x": x.astype(np.float32).reshape(shape)})[0].reshape(x.shape[0], -1).astype(np.float64)


def sample_box(sampler: ort.InferenceSession, lower: np.ndarray, upper: np.ndarray, count: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uniform points of the box, as float32 values inside it, and their outputs."""
    rng = np.random.default_rng(seed)
    x = (lower + rng.random((count, lower.size)) * (upper - lower)).astype(np.float32)
    x = np.clip(x, lower.astype(np.float32), upper.astype(np.float32)).astype(np.float64)
    x = np.clip(x, lower, upper)  # a float32 corner outside the box is not sampled
    return x, run_batch(sampler, x)


def make_crown(path: Path, region: Region) -> Crown:
    """CROWN (float64 arithmetic) over the region's proof box, as the caller builds it."""
    graph = load_model(path)
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    return Crown(TorchGraph(graph, "cpu", torch.float64), [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])


def random_instance(tmp_path: Path, models: tuple[onnx.ModelProto, onnx.ModelProto], seed: int,
                    radius: tuple[float, float] = (0.05, 0.6)) -> Instance:
    """A box around a random point and 1-2 clauses of 1-2 rows whose thresholds sit near the
    sampled range of the rows, so that some instances are sat and some unsat."""
    rng = np.random.default_rng(seed)
    path = tmp_path / f"net{seed}.onnx"
    onnx.save(models[0], path)
    sampler = ort.InferenceSession(models[1].SerializeToString(), providers=["CPUExecutionProvider"])
    n = load_model(path).input_size
    centre = rng.normal(size=n)
    half = rng.uniform(*radius)
    lower, upper = centre - half, centre + half
    _, ys = sample_box(sampler, lower, upper, 2000, seed)
    clauses = []
    for _ in range(int(rng.integers(1, 3))):
        rows = int(rng.integers(1, 3))
        c = rng.normal(size=(rows, ys.shape[1]))
        values = ys @ c.T
        target = values[int(rng.integers(len(values)))]
        spread = values.std(axis=0) + 0.01  # a saturated output (Clip) has no spread of its own
        d = target - rng.uniform(SHIFT[0], SHIFT[1], size=rows) * spread
        clauses.append(Clause(c, d, rng.random(rows) < 0.3))
    region = Region(lower, upper, tuple(clauses))
    return Instance(path, sampler, region, make_crown(path, region))


def sampled_violation(instance: Instance, seed: int) -> bool:
    """True when dense sampling (onnxruntime) finds an input where some clause holds."""
    _, ys = instance.samples(SAMPLES, seed)
    for clause in instance.region.clauses:
        value = ys @ clause.C.T - clause.d
        holds = np.where(clause.strict, value < 0, value <= 0)
        if holds.all(axis=1).any():
            return True
    return False


def check_agreement(instance: Instance, seed: int) -> str:
    """Runs the three engines; asserts that they agree and that every answer checks out."""
    outcomes: dict[str, ExactOutcome] = {
        "highs": milp_check(instance.crown.table, instance.region.clauses, MilpConfig("highs", time_limit=30)),
        "cbc": milp_check(instance.crown.table, instance.region.clauses, MilpConfig("cbc", time_limit=30)),
        "smt": smt_check(instance.crown.table, instance.region.clauses, SmtConfig(time_limit=30)),
    }
    statuses = {name: o.status for name, o in outcomes.items()}
    assert len(set(statuses.values())) == 1 and "unknown" not in statuses.values(), (statuses, outcomes)
    oracle = OnnxOracle(instance.path)
    for name, outcome in outcomes.items():
        if outcome.status == "sat":
            assert outcome.x is not None
            check = check_witness(oracle, instance.region, outcome.x)
            assert check.valid, (name, check.reason, outcome.stats)
    if statuses["smt"] == "unsat":
        assert not sampled_violation(instance, seed)
    return statuses["smt"]


# ---------------------------------------------------------------------------- tests
def test_engines_agree_on_random_relu_networks(tmp_path: Path) -> None:
    verdicts = [check_agreement(random_instance(tmp_path, relu_mlp(seed), seed), seed) for seed in range(40)]
    assert verdicts.count("sat") >= 8 and verdicts.count("unsat") >= 8, verdicts


@pytest.mark.parametrize("builder", [pytest.param(conv_residual, marks=pytest.mark.slow), piecewise])
def test_engines_agree_on_conv_residual_and_piecewise_ops(tmp_path: Path, builder: object) -> None:
    verdicts = [check_agreement(random_instance(tmp_path, builder(seed), 500 + seed, (0.02, 0.15)), 500 + seed)  # type: ignore[operator]
                for seed in range(8)]
    assert "sat" in verdicts and "unsat" in verdicts, verdicts


def test_highs_decides_after_another_highs_solve_in_the_same_process(tmp_path: Path) -> None:
    """HiGHS sizes one thread pool per process at its first solve and then ignores solves that
    ask for another thread count (status kNotset). A plain pulp LP with HiGHS' default threads
    before the engine's single-threaded solves must not turn their answers into unknown."""
    import pulp

    lp = pulp.LpProblem("other_user", pulp.LpMinimize)
    x = pulp.LpVariable("x", -1, 1)
    lp += x
    lp += x >= -0.5
    lp.solve(pulp.HiGHS(msg=False))
    assert x.value() == pytest.approx(-0.5)
    for seed in (3, 4):
        check_agreement(random_instance(tmp_path, relu_mlp(seed), seed), seed)


def test_bounds_alone_refute_without_a_solve(tmp_path: Path) -> None:
    instance = random_instance(tmp_path, relu_mlp(3), 3)
    y_hi = instance.crown.output_bounds()[1][0].numpy()
    clause = Clause(np.eye(len(y_hi))[:1] * -1.0, np.array([-y_hi[0] - 1.0]), np.array([False]))  # y0 >= hi + 1
    outcome = milp_check(instance.crown.table, [clause], MilpConfig())
    assert outcome.status == "unsat" and outcome.stats["solve_seconds"] == 0.0


def test_unsupported_op_is_named(tmp_path: Path) -> None:
    b = Net(0, [1, 3])
    hidden = b.node("Sigmoid", [b.dense("x", 3, 4)])
    models = b.models(b.dense(hidden, 4, 2), 2)
    instance = random_instance(tmp_path, models, 0)
    sigmoid = next(n for n in instance.crown.graph.nodes if n.op == "Sigmoid")
    with pytest.raises(ExactUnsupported, match=f"{sigmoid.name}.*Sigmoid"):
        milp_check(instance.crown.table, instance.region.clauses, MilpConfig())


def test_dense_matrix_cap(tmp_path: Path) -> None:
    instance = random_instance(tmp_path, relu_mlp(1), 1)
    with pytest.raises(ExactUnsupported, match="over the cap"):
        encode(instance.crown.table, max_entries=3)


def wrong_bounds_case(tmp_path: Path, seed: int) -> tuple[Instance, str, tuple[torch.Tensor, torch.Tensor]]:
    """A sat instance and too-tight bounds on the first layer: below ``-1e-3`` everywhere, so
    every first-layer ReLU looks inactive and the encoded network is constant, ``K``. The clause
    (``y0 <= d`` or ``y0 >= d``) puts ``d`` between ``K`` and the sampled extreme of ``y0``."""
    models = relu_mlp(seed)
    instance = random_instance(tmp_path, models, seed)
    _, ys = instance.samples(4000, seed)
    dead = onnx.ModelProto()
    dead.CopyFrom(models[1])  # the first layer's output forced to 0: weights 0, bias -1
    first_gemm = dead.graph.node[0]
    for init in dead.graph.initializer:
        if init.name in first_gemm.input[1:]:
            value = numpy_helper.to_array(init)
            fill = -1.0 if init.name == first_gemm.input[2] else 0.0
            init.CopyFrom(numpy_helper.from_array(np.full_like(value, fill), init.name))
    constant = run_batch(ort.InferenceSession(dead.SerializeToString(), providers=["CPUExecutionProvider"]),
                         instance.region.lower[None])[0, 0]
    low, high = ys[:, 0].min(), ys[:, 0].max()
    if constant > low:
        clause = Clause(np.eye(ys.shape[1])[:1], np.array([(low + constant) / 2]), np.array([False]))
    else:
        clause = Clause(-np.eye(ys.shape[1])[:1], np.array([-(high + constant) / 2]), np.array([False]))
    region = Region(instance.region.lower, instance.region.upper, (clause,))
    instance = Instance(instance.path, instance.sampler, region, make_crown(instance.path, region))
    first = instance.crown.graph.nodes[0].outputs[0]
    lo, _ = instance.crown.bounds[first]
    return instance, first, (torch.minimum(lo, torch.full_like(lo, -2e-3)), torch.full_like(lo, -1e-3))


def test_wrong_big_m_bounds_break_the_cross_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance, first, tight = wrong_bounds_case(tmp_path, 7)
    clauses = instance.region.clauses
    assert sampled_violation(instance, 7)
    assert milp_check(instance.crown.table, clauses, MilpConfig()).status == "sat"
    monkeypatch.setitem(instance.crown.bounds, first, tight)
    # with the wrong bounds both engines "prove" a property that sampling refutes
    assert milp_check(instance.crown.table, clauses, MilpConfig()).status == "unsat"
    assert milp_check(instance.crown.table, clauses, MilpConfig("cbc")).status == "unsat"
    assert smt_check(instance.crown.table, clauses, SmtConfig()).status == "unsat"


def test_config_checks_margin_against_tolerance() -> None:
    with pytest.raises(ValueError, match="margin"):
        MilpConfig(margin=1e-8, tolerance=1e-9)
    with pytest.raises(ValueError, match="solver"):
        MilpConfig(solver="gurobi")
