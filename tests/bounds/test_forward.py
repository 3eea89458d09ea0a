"""Forward-mode linear bounds (:mod:`verifier.bounds.forward`) checked against independent
oracles: float32 evaluation at sampled points (every value, not only the outputs) and
onnxruntime, over every single-node op case of the registry, random DAGs, the bundled models
(point boxes: only the float-error margins separate the bounds) and ACAS Xu sub-boxes.
A deliberately unsound form (bias moved inward) is caught by the same check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import verifier.bounds.forward as forward_module
from tests.bounds.random_dags import saved_dag_box
from tests.bounds.test_crown_registry import MODELS
from tests.conftest import ROOT, one_spec_per_model
from verifier.bounds.crown import Crown, CrownConfig
from verifier.bounds.forward import ForwardForms
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Graph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, grid_box, snap_into_box

FORWARD = CrownConfig(intermediate_method="forward")
SINGLE_INPUT = [m for m in MODELS if len(m[2]) == 1]
ACAS = ROOT / "benchmarks" / "acasxu" / "onnx"


def _violations(crown: Crown, tgraph: TorchGraph, points: torch.Tensor) -> list[str]:
    """The values whose bounds (box 0 of ``crown``) some float32 evaluation at ``points``
    ``(S, *input_shape)`` leaves; NaN and infinite values are not held against them."""
    values = TorchGraph(tgraph.graph, "cpu", torch.float32).forward_all(points.float())
    bad = []
    for name, (lo, hi) in crown.bounds.items():
        if name not in values or not values[name].is_floating_point():
            continue
        v = values[name].double().reshape(points.shape[0], -1)
        lo, hi = lo[:1].reshape(1, -1), hi[:1].reshape(1, -1)
        finite = torch.isfinite(v)
        if not (((v >= lo) | ~finite).all() and ((v <= hi) | ~finite).all()):
            bad.append(name)
    return bad


def registry_case_box(tmp_path: Path, model: onnx.ModelProto, ranges: list[tuple[float, float]],
                      seed: int) -> tuple[Graph, torch.Tensor, torch.Tensor]:
    """A registry case's graph (saved under ``tmp_path``) and a random float32-representable box
    ``(1, *shape)`` inside its first input's range."""
    path = tmp_path / "case.onnx"
    onnx.save(model, path)
    graph = load_model(path)
    rng = np.random.default_rng(seed)
    low, high = ranges[0]
    a, b = (rng.uniform(low, high, size=(1, *graph.inputs[0].shape)) for _ in range(2))
    lower = torch.from_numpy(np.minimum(a, b).astype(np.float32).astype(np.float64))
    upper = torch.from_numpy(np.maximum(a, b).astype(np.float32).astype(np.float64))
    return graph, lower, upper


def _sample(lower: torch.Tensor, upper: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Uniform points and corners of the box ``(1, *shape)``, float32-representable inside it."""
    rng = np.random.default_rng(seed)
    u = torch.from_numpy(rng.random((count, *lower.shape[1:])))
    u[count // 2:] = (u[count // 2:] < 0.5).double()
    return (lower + (upper - lower) * u).float().double().clamp(lower, upper)


@pytest.mark.parametrize(("name", "model", "ranges"), SINGLE_INPUT, ids=[m[0] for m in SINGLE_INPUT])
def test_forward_bounds_of_every_value_contain_samples(tmp_path: Path, name: str, model: onnx.ModelProto,
                                                       ranges: list[tuple[float, float]]) -> None:
    graph, lower, upper = registry_case_box(tmp_path, model, ranges, seed=11)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    crown = Crown(tgraph, [lower], [upper], FORWARD)
    assert crown.forms is not None
    assert _violations(crown, tgraph, _sample(lower, upper, 600, 3)) == [], name
    if graph.output_size:
        y_lo, y_hi = crown.output_bounds()
        points = _sample(lower, upper, 500, 4).reshape(500, -1).float()
        outs = TorchGraph(graph, "cpu", torch.float32).forward_flat(points)
        finite = torch.isfinite(outs)
        assert (((outs >= y_lo) | ~finite).all() and ((outs <= y_hi) | ~finite).all()), name


@pytest.mark.parametrize(("name", "model", "ranges"), SINGLE_INPUT, ids=[m[0] for m in SINGLE_INPUT])
def test_forms_with_fixed_inputs_contain_samples(tmp_path: Path, name: str, model: onnx.ModelProto,
                                                 ranges: list[tuple[float, float]]) -> None:
    """Every other input position narrowed to one float32 step (a fixed pixel, as dist_shift's):
    the forms drop its column and carry its box ends as constants; every value's bounds still
    contain the float32 evaluation at sampled points."""
    graph, lower, upper = registry_case_box(tmp_path, model, ranges, seed=12)
    flat_lo, flat_hi = lower.reshape(-1).clone(), upper.reshape(-1).clone()
    fixed = torch.arange(flat_lo.numel()) % 2 == 1
    step = torch.from_numpy(np.nextafter(flat_lo.float().numpy(), np.float32(np.inf)).astype(np.float64))
    flat_hi[fixed] = step[fixed]
    lower, upper = flat_lo.reshape(lower.shape), flat_hi.reshape(upper.shape)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    crown = Crown(tgraph, [lower], [upper], FORWARD)
    assert crown.forms is not None
    wide = int(((upper - lower).reshape(-1) > 1e-6 * float((upper - lower).max())).sum())
    assert crown.forms.n == wide
    assert _violations(crown, tgraph, _sample(lower, upper, 600, 5)) == [], name

@pytest.mark.parametrize("seed", range(24))
def test_forward_bounds_contain_onnxruntime_on_random_dags(tmp_path: Path, seed: int) -> None:
    path, graph, lower, upper = saved_dag_box(tmp_path, seed)
    size = graph.inputs[0].size
    rng = np.random.default_rng(seed + 100)
    box = lower.reshape(-1).numpy(), upper.reshape(-1).numpy()
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper], FORWARD)
    c_lo, c_hi = crown.output_bounds()
    width = box[1] - box[0]
    points = np.concatenate([box[0] + rng.random((800, size)) * width,
                             box[0] + rng.integers(0, 2, size=(200, size)) * width])
    points = np.stack([snap_into_box(p, box[0], box[1], np.dtype(np.float32)) for p in points])
    oracle = OnnxOracle(path)
    outs = torch.from_numpy(np.stack([oracle.run(p) for p in points]))
    assert torch.isfinite(c_lo).all() and torch.isfinite(c_hi).all()
    assert (outs >= c_lo).all() and (outs <= c_hi).all()


@pytest.mark.parametrize(("model", "spec"), one_spec_per_model(), ids=[m.name for m, _ in one_spec_per_model()])
def test_forward_point_bounds_contain_onnxruntime_float32(model: Path, spec: Path) -> None:
    """lower == upper == x: the forms are exact but for their float-error margins, which
    must still cover onnxruntime's float32 evaluation."""
    graph = load_model(model)
    region = parse_vnnlib(spec).regions[0]
    rng = np.random.default_rng(5)
    x = (region.lower + rng.random(region.lower.size) * (region.upper - region.lower)).astype(np.float32)
    point = torch.from_numpy(x.astype(np.float64)).reshape(1, *graph.inputs[0].shape)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [point], [point], FORWARD)
    y_lo, y_hi = crown.output_bounds()
    y = torch.from_numpy(OnnxOracle(model).run(x.astype(np.float64))).reshape(1, -1)
    assert (y >= y_lo).all() and (y <= y_hi).all()


def _acas_box(net: str, spec: str, fraction: float, seed: int) -> tuple[TorchGraph, torch.Tensor, torch.Tensor]:
    graph = load_model(ACAS / f"ACASXU_run2a_{net}_batch_2000.onnx")
    region = parse_vnnlib(ROOT / "benchmarks" / "acasxu" / "vnnlib" / f"{spec}.vnnlib").regions[0]
    lo, hi = proof_box(graph, region, torch.device("cpu"))
    rng = np.random.default_rng(seed)
    width = (hi - lo) * fraction
    start = lo + torch.from_numpy(rng.random(lo.shape[1])) * (hi - lo - width)
    shape = (1, *graph.inputs[0].shape)
    box = grid_box(start.reshape(-1).numpy(), (start + width).reshape(-1).numpy(), np.dtype(np.float32))
    return TorchGraph(graph, "cpu", torch.float64), *(torch.from_numpy(b).reshape(shape) for b in box)


@pytest.mark.parametrize("net", ["1_1", "3_3", "5_9"])
@pytest.mark.parametrize("fraction", [1.0, 0.05])
def test_forward_intermediate_bounds_hold_on_acasxu(net: str, fraction: float) -> None:
    """Every hidden value's forward bounds contain its float32 value at sampled points, and
    they are never looser than interval arithmetic would give on its own (intersected)."""
    tgraph, lower, upper = _acas_box(net, "prop_2", fraction, seed=int(fraction * 100))
    crown = Crown(tgraph, [lower], [upper], FORWARD)
    assert _violations(crown, tgraph, _sample(lower, upper, 4000, 9)) == []
    intervals = Crown(tgraph, [lower], [upper], CrownConfig(intermediate=False))
    for name, (lo, hi) in crown.bounds.items():
        assert (lo >= intervals.bounds[name][0] - 1e-12).all() and (hi <= intervals.bounds[name][1] + 1e-12).all()


def test_an_unsound_form_is_caught_by_the_sampling_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: forms whose bounds are moved inward by a tenth of their
    width on one hidden layer are reported."""
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 0.05, seed=1)
    honest = ForwardForms.bounds

    def inward(self: ForwardForms, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        found = honest(self, name)
        if found is None or not name.endswith("_3_Add"):
            return found
        lo, hi = found
        return lo + (hi - lo) / 10, hi - (hi - lo) / 10

    monkeypatch.setattr(ForwardForms, "bounds", inward)
    crown = Crown(tgraph, [lower], [upper], FORWARD)
    assert any(name.endswith("_3_Add") for name in _violations(crown, tgraph, _sample(lower, upper, 4000, 9)))


def test_forward_mode_needs_one_finite_input_box() -> None:
    tgraph, lower, upper = _acas_box("1_1", "prop_2", 1.0, seed=0)
    crown = Crown(tgraph, [lower], [upper.clone().fill_(torch.inf)], FORWARD)
    assert crown.forms is None  # falls back to backward refinement


@pytest.mark.parametrize("seed", range(6))
def test_forms_in_chunks_of_rows_equal_forms_in_one_call(tmp_path: Path, seed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Passing forms through an op a few rows per call (what lets a pass on thousands of input
    columns check its deadline) gives the same forms as one call for all rows."""
    _, graph, lower, upper = saved_dag_box(tmp_path, seed)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    whole = Crown(tgraph, [lower], [upper], FORWARD)
    monkeypatch.setattr(forward_module, "FORM_ROWS_PER_CALL", 2)
    chunked = Crown(tgraph, [lower], [upper], FORWARD)
    assert whole.forms is not None and chunked.forms is not None
    for name, form in whole.forms.forms.items():
        other = chunked.forms.forms[name]
        for a, b in ((form.lower, other.lower), (form.upper, other.upper),
                     (form.lower_bias, other.lower_bias), (form.upper_bias, other.upper_bias)):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), name


def test_a_forms_pass_stops_at_its_deadline() -> None:
    """A deadline already passed stops the forms before any node's rows are computed."""
    tgraph, lower, upper = _acas_box("1_1", "prop_1", 1.0, 0)
    with pytest.raises(DeadlineExceeded):
        Crown(tgraph, [lower], [upper], FORWARD, deadline=Deadline.after(0.0))
