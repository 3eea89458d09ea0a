"""Tighter intermediate bounds for deep ReLU networks: branch and bound on the network cut at
one layer's pre-activations.

The bounds that CROWN and alpha-CROWN give a pre-activation ``x_j`` of a deep layer relax every
unstable neuron before it at once; on deep MLPs (MNIST 6x256) that leaves most neurons of the
middle layers unstable and the final rows negative. Peers tighten these bounds with a MILP solver
(NeuralSAT: Gurobi, neuron by neuron; our exact engine is HiGHS, without a license). This module
instead runs the project's own ReLU-split branch and bound (beta-CROWN,
:mod:`verifier.bab.relu_split`) on the network *cut* at the layer: its
output is the layer's pre-activation vector, and for each unstable neuron ``j`` two one-row
searches ask for ``x_j <= 0`` and for ``-x_j <= 0``. When a search refutes its row the neuron is
stable on that side; when it runs out of its short budget, the lowest certified bound of its
open domains is still a bound of ``x_j`` over the whole region.

Soundness: each new bound is a bound of the cut network's output, which is the same value of the
same float32 model (the cut keeps the nodes, their error bounds and the region's box); the
search's bound covers every domain (:meth:`verifier.bab.relu_split.ReluSplitSearch.lower_bound`)
and is intersected with the one before. A search's counterexample only ends that search: it is
not a verdict on the property.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.bab.relu_domains import splittable_layers
from verifier.bab.relu_split import ReluSplitSearch
from verifier.bounds.crown import Crown, CrownConfig
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.torch_graph import TorchGraph
from verifier.ir import Graph, ValueInfo
from verifier.search_config import ReluSplitConfig, TightenConfig
from verifier.spec.types import Clause, Region

Bounds = tuple[Tensor, Tensor]


@dataclass
class TightenStats:
    """What tightening did: layers tightened, bounds searched, neurons made stable, seconds,
    whether the caller's check proved the region on the way (``proved``: tightening stopped)."""

    layers: int = 0
    searches: int = 0
    stabilised: int = 0
    unstable_before: int = 0
    seconds: float = 0.0
    proved: bool = False
    per_layer: list[dict[str, str | int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def cut_graph(graph: Graph, value: str) -> Graph:
    """The graph up to the node producing ``value``, with ``value`` as its only output."""
    stop = next(i for i, node in enumerate(graph.nodes) if value in node.outputs)
    output = ValueInfo(value, graph.shapes[value], np.dtype(np.float32))
    return dataclasses.replace(graph, nodes=graph.nodes[: stop + 1], outputs=(output,))


def tighten_bounds(tgraph: TorchGraph, region: Region, root: Crown, deadline: Deadline,
                   config: TightenConfig, proves: Callable[[dict[str, Bounds]], bool] | None = None
                   ) -> tuple[dict[str, Bounds], TightenStats]:
    """Tighter bounds of the pre-activations of the splittable layers ``1 .. config.layers``
    (the first layer's are already exact up to rounding: an affine map of the box).

    Args:
        tgraph: the bound graph (one input); region: its box is the one searched.
        root: CROWN (after alpha-CROWN) over the region's box: the starting bounds.
        deadline: tightening stops at it (each search also stops after ``config.seconds_per_bound``).
        config: layers, per-search seconds, the most unstable neurons a layer may have.
        proves: called with the bounds so far after each layer that gained a stable neuron;
            True (these bounds already prove the region, e.g. by one CROWN pass) stops the
            tightening there. Only the time spent depends on it, never a bound.

    Returns:
        every value's bounds of ``root`` (batch 1) with the tightened ones intersected in, and
        the statistics. Every bound holds for the float32 model on the region's box.
    """
    began = time.monotonic()
    stats = TightenStats()
    bounds = {name: (lo.clone(), hi.clone()) for name, (lo, hi) in root.bounds.items()}
    for layer in splittable_layers(tgraph)[1 : config.layers + 1]:
        if deadline.expired():
            break
        if stats.stabilised:  # the later layers' bounds from the ones tightened so far
            bounds = recomputed_bounds(tgraph, root, bounds, deadline)
        stable = stats.stabilised
        _tighten_layer(tgraph, region, root, bounds, layer.value, deadline, config, stats)
        if proves is not None and stats.stabilised > stable and proves(bounds):
            stats.proved = True
            break
    stats.seconds = time.monotonic() - began
    return bounds, stats


def recomputed_bounds(tgraph: TorchGraph, root: Crown, bounds: dict[str, Bounds], deadline: Deadline
                      ) -> dict[str, Bounds]:
    """``bounds`` intersected with one CROWN pass over ``root``'s box that starts from them (so
    neurons a tightened layer made stable, and its narrower intervals, tighten every later
    layer before that layer's unstable neurons are counted and searched). Sound: CROWN's
    bounds hold given valid ``bounds`` (:class:`~verifier.bounds.crown.Crown`, ``prior``).
    At the deadline ``bounds`` are returned as they are."""
    lower, upper = _root_box(tgraph, root)
    try:
        with torch.no_grad():
            crown = Crown(tgraph, [lower], [upper], root.config, prior=bounds, deadline=deadline)
    except DeadlineExceeded:
        return bounds
    fresh = crown.bounds
    return {value: (torch.maximum(lo, fresh[value][0].reshape(lo.shape)),
                    torch.minimum(hi, fresh[value][1].reshape(hi.shape))) if value in fresh else (lo, hi)
            for value, (lo, hi) in bounds.items()}


def _root_box(tgraph: TorchGraph, root: Crown) -> tuple[Tensor, Tensor]:
    """The box ``root`` bounds over, as a batch of one ``(1, *shape)``."""
    info = tgraph.graph.inputs[0]
    lower, upper = root.input_bounds[info.name]
    return lower.reshape(1, *info.shape), upper.reshape(1, *info.shape)


def _tighten_layer(tgraph: TorchGraph, region: Region, root: Crown, bounds: dict[str, Bounds], value: str,
                   deadline: Deadline, config: TightenConfig, stats: TightenStats) -> None:
    """Tightens ``bounds[value]`` in place, neuron by neuron (see :func:`tighten_bounds`)."""
    lo, hi = (b.reshape(-1).clone() for b in bounds[value])
    unstable = torch.nonzero((lo < 0) & (hi > 0)).flatten().tolist()
    if not unstable or len(unstable) > config.max_unstable:
        return
    box = _root_box(tgraph, root)
    cut = TorchGraph(cut_graph(tgraph.graph, value), tgraph.place.device, tgraph.place.dtype)
    attack = TorchGraph(cut.graph, tgraph.place.device, torch.float32)
    prior = {name: b for name, b in bounds.items() if name in cut.graph.shapes}
    before, began, made_stable, left = stats.searches, time.monotonic(), 0, False
    for j in unstable:
        if deadline.expired():
            break
        made_stable += _tighten_neuron(cut, attack, region, box, prior, j, lo, hi, deadline, config, stats)
        spent = time.monotonic() - began
        if spent > config.probe_seconds and spent > config.seconds_per_stable * made_stable:
            left = True  # this layer does not pay: its neurons rarely become stable
            break
    shape_of = bounds[value][0].shape
    bounds[value] = (torch.maximum(bounds[value][0], lo.reshape(shape_of)),
                     torch.minimum(bounds[value][1], hi.reshape(shape_of)))
    stable = int(((lo >= 0) | (hi <= 0))[unstable].sum())
    stats.layers += 1
    stats.unstable_before += len(unstable)
    stats.stabilised += stable
    stats.per_layer.append({"value": value, "unstable": len(unstable), "stabilised": stable,
                            "searches": stats.searches - before, "left_early": left})


def _tighten_neuron(cut: TorchGraph, attack: TorchGraph, region: Region, box: tuple[Tensor, Tensor],
                    prior: Mapping[str, Bounds], j: int, lo: Tensor, hi: Tensor, deadline: Deadline,
                    config: TightenConfig, stats: TightenStats) -> bool:
    """Searches the sides of neuron ``j`` of the cut's output, the side nearer to zero first
    (when its search refutes it the neuron is stable and the other side is skipped); narrows
    ``lo[j]``, ``hi[j]`` in place to the certified bounds found. True when the neuron became
    stable."""
    for sign in ((1.0, -1.0) if -lo[j] <= hi[j] else (-1.0, 1.0)):
        if deadline.expired():
            break
        bound = _search_side(cut, attack, region, box, prior, j, sign, deadline.sooner(config.seconds_per_bound))
        stats.searches += 1
        if sign > 0:  # x_j >= bound, or x_j > 0 when refuted (bound inf)
            lo[j] = torch.clamp(lo[j], min=min(bound, 0.0))
        else:  # -x_j >= bound
            hi[j] = torch.clamp(hi[j], max=-min(bound, 0.0))
        if lo[j] >= 0 or hi[j] <= 0:
            return True
    return False


def _search_side(cut: TorchGraph, attack: TorchGraph, region: Region, box: tuple[Tensor, Tensor],
                 prior: Mapping[str, Bounds], j: int, sign: float, deadline: Deadline) -> float:
    """A certified lower bound of ``sign * x_j`` over the box (``inf``: refuted, so ``sign *
    x_j > 0`` everywhere), by ReLU-split search until ``deadline``."""
    size = cut.graph.outputs[0].size
    row = np.zeros((1, size))
    row[0, j] = sign
    clause = Clause(row, np.zeros(1), np.zeros(1, dtype=bool), exact=True)
    crown = Crown(cut, [box[0]], [box[1]], CrownConfig(intermediate=False), prior=prior)

    def stop_at(x: np.ndarray) -> bool:  # a point on that side: the bound cannot reach 0
        with torch.no_grad():
            y = cut.forward_flat(torch.as_tensor(x, dtype=cut.place.dtype).reshape(1, -1))
        return bool(sign * float(y[0, j]) <= 0.0)

    sub = Region(region.lower, region.upper, (clause,))
    search = ReluSplitSearch(cut, attack, sub, (clause,), crown, stop_at, ReluSplitConfig())
    search.run(deadline)
    return search.lower_bound()
