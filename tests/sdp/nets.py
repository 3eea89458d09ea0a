"""Tiny random ReLU MLPs with robustness properties, and an exact MILP oracle of their own."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pulp
import torch
from torch import nn

from verifier.bounds.crown import Crown
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import load_problem, proof_box
from verifier.soundness.onnx_export import network_to_onnx
from verifier.soundness.vnnlib_writer import robustness_property
from verifier.spec.types import Clause


@dataclass
class Tiny:
    """A network, its files, the proof box and CROWN over it, and the first clause."""

    network: nn.Sequential
    onnx: Path
    vnnlib: Path
    lower: np.ndarray
    upper: np.ndarray
    crown: Crown
    clause: Clause


def tiny_net(folder: Path, seed: int, sizes: tuple[int, ...] = (4, 12, 12, 3), eps: float = 0.3) -> Tiny:
    """A random ReLU MLP of ``sizes`` around a random point, saved as ONNX and VNN-LIB."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        linear = nn.Linear(a, b)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(b, a, generator=generator) / a**0.5)
            linear.bias.copy_(0.1 * torch.randn(b, generator=generator))
        layers += [linear, nn.ReLU()]
    network = nn.Sequential(*layers[:-1])
    model, spec = folder / f"tiny{seed}.onnx", folder / f"tiny{seed}.vnnlib"
    onnx.save(network_to_onnx(network, (sizes[0],), "tiny"), model)
    x0 = np.random.default_rng(seed).random(sizes[0]).astype(np.float32)
    with torch.no_grad():
        label = int(network(torch.tensor(x0)[None]).argmax())
    spec.write_text(robustness_property(x0 - eps, x0 + eps, label, sizes[-1], "tiny"))
    problem = load_problem(model, spec)
    region = problem.spec.regions[0]
    lo, hi = proof_box(problem.graph, region, torch.device("cpu"))
    crown = Crown(TorchGraph(problem.graph, torch.device("cpu"), torch.float64), [lo], [hi])
    return Tiny(network, model, spec, lo.numpy()[0], hi.numpy()[0], crown, region.clauses[0])


def milp_minimum(network: nn.Sequential, lower: np.ndarray, upper: np.ndarray, c: np.ndarray, d: float) -> float:
    """``min c y - d`` over the box for the real-arithmetic network: big-M MILP (HiGHS) with
    interval bounds, written here independently of the verifier's encoding."""
    linears = [m for m in network if isinstance(m, nn.Linear)]
    model = pulp.LpProblem("tiny", pulp.LpMinimize)
    xs = [pulp.LpVariable(f"x{i}", float(lower[i]), float(upper[i])) for i in range(len(lower))]
    lo, hi = lower.astype(np.float64), upper.astype(np.float64)
    for k, layer in enumerate(linears):
        W = layer.weight.detach().double().numpy()
        b = layer.bias.detach().double().numpy()
        pre = [pulp.lpSum(float(W[j, i]) * xs[i] for i in range(len(xs))) + float(b[j]) for j in range(W.shape[0])]
        pre_lo = np.clip(W, 0, None) @ lo + np.clip(W, None, 0) @ hi + b
        pre_hi = np.clip(W, 0, None) @ hi + np.clip(W, None, 0) @ lo + b
        if k == len(linears) - 1:
            model += pulp.lpSum(float(c[j]) * pre[j] for j in range(len(pre))) - d
            break
        nxt = []
        for j, expr in enumerate(pre):
            y = pulp.LpVariable(f"y{k}_{j}", 0, max(0.0, float(pre_hi[j])))
            z = pulp.LpVariable(f"z{k}_{j}", cat="Binary")
            model += y >= expr
            model += y <= expr - float(pre_lo[j]) * (1 - z)
            model += y <= max(0.0, float(pre_hi[j])) * z
            nxt.append(y)
        xs, lo, hi = nxt, np.maximum(pre_lo, 0), np.maximum(pre_hi, 0)
    model.solve(pulp.HiGHS(msg=False, mip_rel_gap=0.0))
    assert pulp.LpStatus[model.status] == "Optimal"
    return float(pulp.value(model.objective))
