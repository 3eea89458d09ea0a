"""Tighter intermediate bounds for deep ReLU networks: branch and bound on the network cut at
one layer's pre-activations.

The bounds that CROWN and alpha-CROWN give a pre-activation ``x_j`` of a deep layer relax every
unstable neuron before it at once; on deep MLPs (MNIST 6x256) that leaves most neurons of the
middle layers unstable and the final rows negative. Peers tighten these bounds with a MILP solver
(NeuralSAT: Gurobi, neuron by neuron; our exact engine is HiGHS, without a license). This module
instead runs the project's own ReLU-split branch and bound (beta-CROWN,
:mod:`verifier.bab.relu_split`) on the network *cut* at the layer: its output is the layer's
pre-activation vector. For each unstable neuron ``j``, the centre of the box and a few hundred
seeded points (uniform and corners) show which signs ``x_j`` takes; a neuron seen with both
signs cannot become stable and is left, and for every other one the side no point contradicts
(``x_j > 0`` or ``x_j < 0``) becomes one row of a single batched search over all of the
layer's rows (:mod:`verifier.bab.row_search`). A refuted row makes the neuron stable; an open
one still gives the lowest certified bound of its domains, a bound of ``x_j`` over the region.

Soundness: each new bound is a bound of the cut network's output, which is the same value of the
same float32 model (the cut keeps the nodes, their error bounds and the region's box); the
search's bound covers every domain of its row (:func:`verifier.bab.row_search.row_lower_bounds`)
and is intersected with the one before. The sampled points only choose which rows are searched.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from verifier.bab.relu_domains import splittable_layers
from verifier.bab.row_search import row_lower_bounds
from verifier.bounds.crown import Crown
from verifier.certificate.claims import RootRecord, RowTrees
from verifier.certificate.log import ProofLog
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.torch_graph import TorchGraph
from verifier.search_config import TightenConfig

Bounds = tuple[Tensor, Tensor]


@dataclass
class TightenStats:
    """What tightening did: layers tightened, bounds searched, neurons made stable, seconds,
    whether the caller's check proved the region on the way (``proved``: tightening stopped)."""

    layers: int = 0
    searches: int = 0
    domains: int = 0
    stabilised: int = 0
    unstable_before: int = 0
    seconds: float = 0.0
    proved: bool = False
    per_layer: list[dict[str, str | int | float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def tighten_bounds(tgraph: TorchGraph, root: Crown, deadline: Deadline,
                   config: TightenConfig, proves: Callable[[dict[str, Bounds]], bool] | None = None,
                   record: RootRecord | None = None) -> tuple[dict[str, Bounds], TightenStats]:
    """Tighter bounds of the pre-activations of the splittable layers ``1 .. config.layers``
    (the first layer's are already exact up to rounding: an affine map of the box).

    Args:
        tgraph: the bound graph (one input).
        root: CROWN (after alpha-CROWN) over the region's box: the box searched and the
            starting bounds.
        deadline: tightening stops at it.
        config: layers, domains per searched bound, the most unstable neurons a layer may
            have, the payoff rule that leaves a layer.
        proves: called with the bounds so far after each layer that gained a stable neuron;
            True (these bounds already prove the region, e.g. by one CROWN pass) stops the
            tightening there. Only the time spent depends on it, never a bound.
        record: for a certificate, each layer's search is added to ``record.trees`` (its
            trees prove the bounds it found; data only).

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
        _tighten_layer(tgraph, root, bounds, layer.value, deadline, config, stats, record)
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


def _tighten_layer(tgraph: TorchGraph, root: Crown, bounds: dict[str, Bounds], value: str, deadline: Deadline,
                   config: TightenConfig, stats: TightenStats, record: RootRecord | None = None) -> None:
    """Tightens ``bounds[value]`` in place: every unstable neuron's side that sampled points do
    not contradict is searched, all of them in one batched search (see :func:`tighten_bounds`)."""
    lo, hi = (b.reshape(-1).clone() for b in bounds[value])
    unstable = torch.nonzero((lo < 0) & (hi > 0)).flatten()
    if not unstable.numel() or unstable.numel() > config.max_unstable:
        return
    box = _root_box(tgraph, root)
    cut = tgraph.cut_at(value)
    positive, negative = _observed_signs(cut, box, unstable, config.samples)
    neurons = torch.cat([unstable[~negative], unstable[~positive]])  # the sides no sample contradicts
    signs = torch.cat([torch.ones(int((~negative).sum())), -torch.ones(int((~positive).sum()))]).to(unstable.device)
    rows = torch.zeros(neurons.numel(), cut.graph.outputs[0].size, dtype=cut.place.dtype, device=cut.place.device)
    rows[torch.arange(neurons.numel()), neurons] = signs.to(rows)
    prior = {name: b for name, b in bounds.items() if name in cut.graph.shapes}
    log = None if record is None else ProofLog(int(box[0].numel()), (0,), (1,))
    found, search = row_lower_bounds(cut, box[0], box[1], prior, rows, deadline, config, config.search, log)
    if record is not None and log is not None:
        record.trees.setdefault(value, []).append(
            RowTrees(log, neurons.cpu().numpy(), signs.cpu().numpy(), found.cpu().numpy()))
    floor = found.clamp(max=0.0).to(lo)  # refuted (inf): the neuron's sign holds, its bound is 0
    up = signs > 0
    lo[neurons[up]] = torch.maximum(lo[neurons[up]], floor[up])
    hi[neurons[~up]] = torch.minimum(hi[neurons[~up]], -floor[~up])
    shape_of = bounds[value][0].shape
    bounds[value] = (torch.maximum(bounds[value][0], lo.reshape(shape_of)),
                     torch.minimum(bounds[value][1], hi.reshape(shape_of)))
    stable = int(((lo >= 0) | (hi <= 0))[unstable].sum())
    stats.layers += 1
    stats.searches += neurons.numel()
    stats.domains += search.domains_bounded
    stats.unstable_before += unstable.numel()
    stats.stabilised += stable
    stats.per_layer.append({"value": value, "unstable": unstable.numel(), "stabilised": stable,
                            "searches": neurons.numel(), "domains": search.domains_bounded,
                            "rounds": search.rounds, "violated": search.violated, "capped": search.capped,
                            "left_early": search.left, "seconds": round(search.seconds, 3)})


def _observed_signs(cut: TorchGraph, box: tuple[Tensor, Tensor], neurons: Tensor, samples: int
                    ) -> tuple[Tensor, Tensor]:
    """Whether each of ``neurons`` (flat output positions of ``cut``) was seen ``> 0`` and seen
    ``<= 0`` at the box's centre and ``samples`` points, half uniform in the box, half random
    corners (seeded: the same points every run). Only chooses what is searched."""
    lower, upper = (b.reshape(1, -1).to(cut.place.dtype) for b in box)
    generator = torch.Generator().manual_seed(0)
    uniform = torch.rand(samples - samples // 2, lower.shape[1], generator=generator, dtype=lower.dtype)
    corners = torch.randint(0, 2, (samples // 2, lower.shape[1]), generator=generator).to(lower.dtype)
    weights = torch.cat([torch.full((1, lower.shape[1]), 0.5, dtype=lower.dtype), uniform, corners])
    points = lower + weights.to(lower.device) * (upper - lower)
    with torch.no_grad():
        values = cut.forward_flat(points)[:, neurons]
    return (values > 0).any(dim=0), (values <= 0).any(dim=0)
