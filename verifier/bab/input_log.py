"""What input-split branch and bound tells its proof log (:mod:`verifier.certificate.log`).

Each function takes the log or None (nothing recorded: they return node ids ``-1``) and
returns the log's node ids of the domains that go on, aligned with them, so that their
children name their parent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from verifier.bab.input_domains import Children
from verifier.bab.relu_domains import splittable_layers
from verifier.bounds.crown import Crown
from verifier.certificate.log import ProofLog
from verifier.graph.torch_graph import TorchGraph

if TYPE_CHECKING:
    from verifier.bab.input_split import Bounded

Box = tuple[Tensor, Tensor]


@dataclass
class Scored:
    """Strong branching's scoring pass: every half (``halves``), its box after the scoring
    bounds clipped it (``lower``, ``upper``), which halves those bounds refuted, and the halves
    the selector chose (indices into ``halves``: lower halves, then upper; set when it runs),
    and the scoring bounds' lower slopes (see :func:`lower_slopes`)."""

    halves: Children
    lower: Tensor
    upper: Tensor
    refuted: Tensor
    slopes: dict[int, Tensor] = field(default_factory=dict)
    chosen: Tensor | None = None


def _none(count: int, like: Tensor) -> Tensor:
    return torch.full((count,), -1, dtype=torch.long, device=like.device)


def lower_slopes(crown: Crown, ordinals: dict[str, int], m: int) -> dict[int, Tensor]:
    """The lower slopes ``(m, size)`` of the ReLU-like layers' relaxations in ``crown`` (keyed by
    position among those layers): with them, the proof log lets a checker rebuild CROWN's row
    bounds whatever lower slope its own (other) intermediate bounds would pick."""
    found = {}
    for name, j in ordinals.items():
        relaxation = crown.relaxations.get(name)
        if relaxation is not None:
            found[j] = relaxation.lower_slope.detach().reshape(m, -1)
    return found


def log_root(log: ProofLog | None, box: Box, done: Bounded) -> Tensor:
    """The root node (the proof box ``box``, bounded as ``done``)."""
    if log is None:
        return _none(1, box[0])
    node = log.root()
    log.clip(node, box, (done.lower, done.upper))
    log.lower(node, done.slopes)
    return node.to(box[0].device)


def _pairs(log: ProofLog, halves: Children, chosen: Tensor) -> Tensor:
    """Half nodes for the ``chosen`` halves (lower halves, then the matching upper halves)."""
    half = chosen.numel() // 2
    low, high = chosen[:half], chosen[half:]
    return log.halves(halves.node[low], (halves.lower[low], halves.upper[low]),
                      (halves.lower[high], halves.upper[high]))


def log_halves(log: ProofLog | None, halves: Children, chosen: Tensor | None, done: Bounded) -> Tensor:
    """Half nodes for the halves kept (``chosen``; None: all, lower halves then upper ones),
    bounded once as ``done`` (selected to them)."""
    if log is None:
        return _none(done.lower.shape[0], done.lower)
    if chosen is None:
        chosen = torch.arange(halves.lower.shape[0], device=halves.lower.device)
    ids = _pairs(log, halves, chosen)
    log.clip(ids, (halves.lower[chosen], halves.upper[chosen]), (done.lower, done.upper))
    log.lower(ids, done.slopes)
    return ids.to(done.lower.device)


def log_rescored(log: ProofLog | None, scored: Scored, done: Bounded | None) -> Tensor:
    """Half nodes for the halves chosen after scoring (as the scoring bounds left them), and a
    re-bound node for each that those did not refute (bounded in full as ``done``, selected to
    them; None when there is none)."""
    count = 0 if done is None else done.lower.shape[0]
    if log is None:
        return _none(count, scored.lower)
    assert scored.chosen is not None
    chosen, halves = scored.chosen, scored.halves
    ids = _pairs(log, halves, chosen)
    log.clip(ids, (halves.lower[chosen], halves.upper[chosen]), (scored.lower[chosen], scored.upper[chosen]))
    log.lower(ids, {j: s[chosen] for j, s in scored.slopes.items()})
    alive = ~scored.refuted[chosen]
    if done is None:
        return _none(0, scored.lower)
    again = log.rebound(ids[alive.cpu()])
    log.clip(again, (scored.lower[chosen][alive], scored.upper[chosen][alive]), (done.lower, done.upper))
    log.lower(again, done.slopes)
    return again.to(done.lower.device)


def relu_ordinals(tgraph: TorchGraph) -> dict[str, int]:
    """Each ReLU-like node's position among them (the certificate's slope keys)."""
    return {layer.node: j for j, layer in enumerate(splittable_layers(tgraph))}


def log_alpha(log: ProofLog | None, parent: Tensor, record: dict[str, Tensor] | None,
              ordinals: dict[str, int]) -> Tensor:
    """Re-bound nodes for boxes bounded again by alpha-CROWN with the ``record``-ed slopes
    (node name -> ``(M, rows, *shape)``); without a log, the ``parent`` ids unchanged."""
    if log is None or record is None:
        return parent
    ids = log.rebound(parent)
    if any(name not in ordinals for name in record):
        log.incomplete = "alpha weights of a node that is not ReLU-like (not in the format)"
    slopes = {ordinals[name]: s.reshape(s.shape[0], s.shape[1], -1) for name, s in record.items() if name in ordinals}
    log.alpha(ids, slopes)
    return ids.to(parent.device)
