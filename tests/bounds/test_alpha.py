"""alpha-CROWN: never looser than CROWN, sound by sampling (ACAS Xu) and by onnxruntime (random DAGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from tests.bounds.random_dags import random_dag
from tests.conftest import ROOT
from verifier.bounds.alpha import AlphaConfig, alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, grid_box, snap_into_box

ACAS = ROOT / "benchmarks" / "acasxu"


@pytest.mark.parametrize(("net", "prop"), [("1_1", 1), ("1_1", 3), ("2_2", 3), ("3_3", 4), ("4_6", 2)])
def test_alpha_is_sound_and_at_least_crown_on_acasxu(net: str, prop: int) -> None:
    model = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    graph = load_model(model)
    region = parse_vnnlib(ACAS / "vnnlib" / f"prop_{prop}.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
    c = torch.as_tensor(region.clauses[0].C)
    base = crown.lower_bound(c).detach()
    optimised = alpha_lower_bound(crown, c, AlphaConfig(iterations=20))
    assert (optimised >= base).all()
    assert float((optimised - base).sum()) > 0  # the slopes do move on these unstable networks
    rng = np.random.default_rng(0)
    x = region.lower + rng.random((20000, 5)) * (region.upper - region.lower)
    y = TorchGraph(graph, "cpu", torch.float32).forward_flat(torch.from_numpy(x).float()).double()
    assert ((y @ c.T) >= optimised).all()
    assert not crown.lower_bound(c).requires_grad  # the slopes were the call's own: CROWN is plain again


@pytest.mark.parametrize("seed", range(1, 24, 2))
def test_alpha_bounds_contain_onnxruntime_outputs_on_random_dags(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"dag{seed}.onnx"
    onnx.save(random_dag(seed), path)
    graph = load_model(path)
    size = graph.input_size
    rng = np.random.default_rng(seed)
    centre, radius = rng.normal(size=size), rng.uniform(0.05, 1.0)
    box = grid_box(centre - radius, centre + radius, np.dtype(np.float32))
    lower, upper = (torch.from_numpy(b).reshape(1, *graph.inputs[0].shape) for b in box)
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower], [upper])
    c = torch.from_numpy(rng.normal(size=(5, graph.output_size)))
    bound = alpha_lower_bound(crown, c, AlphaConfig(iterations=15))
    points = box[0] + rng.random((800, size)) * (box[1] - box[0])
    oracle = OnnxOracle(path)
    outs = torch.from_numpy(np.stack([oracle.run(snap_into_box(p, box[0], box[1], np.dtype(np.float32)))
                                      for p in points]))
    assert ((outs @ c.T) >= bound).all()


@pytest.mark.parametrize(("net", "prop"), [("1_1", 1), ("3_3", 4)])
def test_joint_intermediate_alpha_tightens_and_keeps_intermediate_bounds_sound(net: str, prop: int) -> None:
    """Optimising the intermediate slopes too is at least as tight as the final slopes alone;
    afterwards the Crown object's intermediate bounds are tighter and still contain samples."""
    model = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    graph = load_model(model)
    tgraph = TorchGraph(graph, "cpu", torch.float64)
    region = parse_vnnlib(ACAS / "vnnlib" / f"prop_{prop}.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    box = [lower.reshape(1, *graph.inputs[0].shape)], [upper.reshape(1, *graph.inputs[0].shape)]
    c = torch.as_tensor(region.clauses[0].C)
    final_only = alpha_lower_bound(Crown(tgraph, *box), c, AlphaConfig(iterations=20, intermediate=False))
    crown = Crown(tgraph, *box)
    before = {name: (lo.clone(), hi.clone()) for name, (lo, hi) in crown.bounds.items()}
    joint = alpha_lower_bound(crown, c, AlphaConfig(iterations=20))
    assert float(joint.sum()) > float(final_only.sum())
    rng = np.random.default_rng(1)
    x = torch.from_numpy(region.lower + rng.random((20000, 5)) * (region.upper - region.lower)).float()
    values = TorchGraph(graph, "cpu", torch.float32).forward_all(x.reshape(-1, *graph.inputs[0].shape))
    assert crown.refined
    width_before = width_after = 0.0
    for name in crown.refined:
        lo, hi = crown.bounds[name]
        assert (lo >= before[name][0]).all() and (hi <= before[name][1]).all()
        width_before += float((before[name][1] - before[name][0]).sum())
        width_after += float((hi - lo).sum())
        v = values[name].double()
        assert (v >= lo).all() and (v <= hi).all()
    assert width_after < width_before


class _Left:
    """A deadline that always has ``seconds`` left (never expires by itself)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def remaining(self) -> float:
        return self.seconds

    def expired(self) -> bool:
        return False


@pytest.mark.parametrize("joint", [False, True])
def test_a_step_that_would_end_past_the_deadline_is_not_begun(joint: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """With less time left than a step takes, alpha-CROWN begins none and runs no closing pass
    (on a wide CNN one step took 1.3 s and the closing passes 2.6 s past a slice's end: the
    run's answer came after its watchdog); with time left it steps and tightens."""
    graph = load_model(ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx")
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_1.vnnlib").regions[0]
    lower, upper = proof_box(graph, region, torch.device("cpu"))
    shape = graph.inputs[0].shape
    crown = Crown(TorchGraph(graph, "cpu", torch.float64), [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
    c = torch.as_tensor(region.clauses[0].C)
    base = crown.lower_bound(c).detach()
    passes = []
    monkeypatch.setattr(Crown, "compute", lambda self, *args: passes.append(args))
    config = AlphaConfig(iterations=5, intermediate=joint)
    none_begun = alpha_lower_bound(crown, c, config, _Left(1e-5))  # type: ignore[arg-type]  # a Deadline's two methods
    assert torch.equal(none_begun, base) and not passes
    stepped = alpha_lower_bound(crown, c, config, _Left(1e9))  # type: ignore[arg-type]
    assert float((stepped - base).sum()) > 0
    assert len(passes) == (5 + 2 if joint else 0)  # a pass per step and the two closing ones
