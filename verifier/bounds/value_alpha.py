"""alpha-CROWN on the intermediate bounds themselves, value by value.

alpha-CROWN with intermediate slopes (:mod:`verifier.bounds.alpha`) chooses the slopes behind
every intermediate bound for the sake of the final rows, through gradients that pass through
the relaxations of every later node. Where every neuron's relaxation depends on its interval
(Sigmoid, Tanh...: not only the unstable ones of a ReLU layer), the intermediate bounds are
what holds the final bound back, and optimising each one for its own tightness is both cheaper
per step and much stronger. On eran's 6x200 Sigmoid network (idx 4214, the hardest clause)
alpha-CROWN with intermediate slopes rose from CROWN's -7.65 to -5.12 in 40 steps (29.8 s on one
core); these bounds, 30 steps per value (16.8 s), then alpha-CROWN on the final rows alone
(0.1 s), to +0.45 (``python benchmarks/value_alpha.py MODEL SPEC``).

For each refined value ``v`` (the input of a relaxed node that CROWN refined, in graph
order) the graph is cut at ``v`` (:meth:`~verifier.graph.torch_graph.TorchGraph.cut_at`) and
alpha-CROWN bounds the rows ``+e_p`` and ``-e_p`` of ``v``'s refined positions ``p`` over the
same box, each row with its own slopes, from the bounds found so far (the earlier values'
already tightened); what it finds is intersected into ``v``'s bounds.

Soundness: each new bound is a certified alpha-CROWN bound of the cut graph's output over the
box, and that output is the same float value (the cut keeps the nodes and their float-error
terms) given valid prior bounds of the earlier values; intersections of valid bounds are valid.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.table import Bounds
from verifier.certificate.claims import RootRecord
from verifier.config import AlphaConfig
from verifier.deadline import Deadline, DeadlineExceeded


@dataclass
class ValueAlphaStats:
    """What the tightening did: values tightened (of those refined), the mean width of their
    refined positions before and after, seconds."""

    values: int = 0
    refined: int = 0
    width_before: float = 0.0
    width_after: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        """The figures for ``--json`` statistics (rounded)."""
        return {"values": self.values, "refined": self.refined, "width_before": round(self.width_before, 6),
                "width_after": round(self.width_after, 6), "seconds": round(self.seconds, 3)}


def value_alpha_bounds(crown: Crown, config: AlphaConfig, deadline: Deadline | None = None,
                       record: RootRecord | None = None) -> tuple[dict[str, Bounds], ValueAlphaStats]:
    """Every value's bounds of ``crown``, the refined ones tightened by alpha-CROWN on their
    own rows, value by value in graph order (see the module docstring).

    ``config``: the ascent's options for each value (its intermediate slopes and early stop
    are not used: the earlier values' bounds are fixed by then, and every row is raised). The
    time to ``deadline`` is shared among the values in proportion to the estimated cost of
    one of their ascent steps (rows times the relaxed nodes they pass), so that each gets about
    as many steps; a value's ascent stops at its share, the values not reached keep their
    bounds. Every bound returned holds for the float model on ``crown``'s boxes.

    ``record`` (one box only): receives, per value and position, the lower slopes behind its
    best bound in each direction (:meth:`~verifier.certificate.claims.RootRecord.add_value`),
    for proof certificates.
    """
    began = time.monotonic()
    stats = ValueAlphaStats(refined=len(crown.refined))
    bounds = {name: (lo.clone(), hi.clone()) for name, (lo, hi) in crown.bounds.items()}
    options = replace(config, intermediate=False, stop_above=None)
    widths = [0.0, 0.0]
    items = [(value, wanted) for value, (_, wanted) in crown.refined.items() if wanted.numel()]
    costs = [_step_cost(crown, value, wanted) for value, wanted in items]
    try:
        for i, (value, wanted) in enumerate(items):
            if deadline is not None and deadline.expired():
                break
            mine = None if deadline is None else deadline.sooner(deadline.remaining() * costs[i] / sum(costs[i:]))
            before = _mean_width(bounds[value], wanted)
            bounds[value] = _tightened(crown, bounds, value, wanted, options, mine, record)
            stats.values += 1
            widths = [widths[0] + before, widths[1] + _mean_width(bounds[value], wanted)]
    except DeadlineExceeded:  # a cut's first pass met the deadline: the values done so far stay
        pass
    if stats.values:
        stats.width_before, stats.width_after = widths[0] / stats.values, widths[1] / stats.values
    stats.seconds = time.monotonic() - began
    return bounds, stats


def _tightened(crown: Crown, bounds: dict[str, Bounds], value: str, wanted: Tensor, options: AlphaConfig,
               deadline: Deadline | None, record: RootRecord | None = None) -> Bounds:
    """``bounds[value]`` intersected with alpha-CROWN's bounds of its positions ``wanted`` on
    the graph cut at ``value``, in chunks of rows whose slopes fit ``options.max_intermediate``."""
    cut = crown.tgraph.cut_at(value)
    prior = {name: b for name, b in bounds.items() if name in cut.graph.shapes}
    inputs = [crown.input_bounds[info.name] for info in cut.graph.inputs]
    config = replace(crown.config, intermediate=False, refine_seconds=None)
    with torch.no_grad():
        cut_crown = Crown(cut, [lo for lo, _ in inputs], [hi for _, hi in inputs], config, prior=prior,
                          deadline=deadline)
    lo, hi = bounds[value]
    flat_lo, flat_hi = lo.reshape(lo.shape[0], -1).clone(), hi.reshape(hi.shape[0], -1).clone()
    size = flat_lo.shape[1]
    slopes_per_row = 2 * sum(math.prod(cut.graph.shapes[node.outputs[0]]) for node, op in
                             zip(cut.graph.nodes, cut.ops, strict=True) if op.relaxation or op.multi_relaxation)
    per_chunk = max(1, options.max_intermediate // max(1, 2 * slopes_per_row * crown.batch))
    for chunk in wanted.split(per_chunk):
        if deadline is not None and deadline.expired():
            break
        k = chunk.numel()
        rows = torch.zeros(2 * k, size, dtype=flat_lo.dtype, device=flat_lo.device)
        rows[torch.arange(k), chunk] = 1.0
        rows[torch.arange(k, 2 * k), chunk] = -1.0
        slopes: dict[str, Tensor] | None = None if record is None else {}
        found = alpha_lower_bound(cut_crown, rows, options, deadline, record=slopes).detach()
        if record is not None and slopes is not None:
            record.add_value(value, chunk, found[0].reshape(2, k), {n: s[0] for n, s in slopes.items()})
        flat_lo[:, chunk] = torch.maximum(flat_lo[:, chunk], found[:, :k].to(flat_lo.dtype))
        flat_hi[:, chunk] = torch.minimum(flat_hi[:, chunk], -found[:, k:].to(flat_hi.dtype))
    return flat_lo.reshape(lo.shape), flat_hi.reshape(hi.shape)


def _step_cost(crown: Crown, value: str, wanted: Tensor) -> float:
    """An ascent step's relative cost for ``value``: its rows times the relaxed nodes before
    the node it feeds (one more for the value's own producer)."""
    stop = crown.refined[value][0]
    relaxed = sum(1 for op in crown.tgraph.ops[:stop] if op.relaxation is not None or op.multi_relaxation is not None)
    return float(wanted.numel() * (1 + relaxed))


def _mean_width(bounds: Bounds, wanted: Tensor) -> float:
    """Mean width of the positions ``wanted`` (over the batch), finite ones only."""
    lo, hi = bounds
    width = (hi.reshape(hi.shape[0], -1)[:, wanted] - lo.reshape(lo.shape[0], -1)[:, wanted]).double()
    finite = width[torch.isfinite(width)]
    return float(finite.mean()) if finite.numel() else 0.0
