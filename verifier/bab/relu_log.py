"""Recording a ReLU-split search's tree for a proof certificate (:mod:`verifier.certificate.log`).

Each function takes the log or None (nothing recorded: the domains keep no node ids). The root
is the region's box; a split adds two children of a domain's node (the neuron's input ``>= 0``,
then ``<= 0``); a domain refuted by a bounding round gets the slopes and multipliers of the
iterate that refuted it, per row and ReLU layer position. A checker rebuilds every node's
intermediate bounds itself (from the root's and the splits on its path), so nothing else is
recorded. A leaf with every neuron decided that its linear program's multipliers refute is
recorded like any refuted domain (those multipliers: a Farkas certificate where it is empty);
leaves handed to the exact engine make the tree incomplete (no proof is written for them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from verifier.bab.relu_domains import _Domains, _Layer
from verifier.certificate.log import ProofLog


def log_root(log: ProofLog | None, domains: _Domains) -> _Domains:
    """The root domain with its node id (unchanged without a log)."""
    return domains if log is None else domains.with_state(node=log.root())


def log_refuted(log: ProofLog | None, domains: _Domains, refuted: Tensor, alpha: Mapping[str, Tensor],
                beta: Mapping[str, Tensor], layers: Sequence[_Layer]) -> None:
    """Records, for the ``refuted`` domains ``(M,)`` mask, the slopes and multipliers
    (node -> ``(M, R, size)``) their bound was found with."""
    if log is None or domains.node is None or not bool(refuted.any()):
        return
    ids = domains.node[refuted.to(domains.node.device)]
    ordinal = {layer.node: j for j, layer in enumerate(layers)}
    log.alpha(ids, {ordinal[name]: a[refuted] for name, a in alpha.items()})
    log.beta(ids, {ordinal[name]: b[refuted] for name, b in beta.items()})


def log_bounded(log: ProofLog | None, domains: _Domains, layers: Sequence[_Layer]) -> None:
    """Records the slopes and multipliers every one of ``domains`` was bounded with (its own
    ``alpha`` and ``beta``): a row search's open leaves prove its bound too."""
    if domains.size:
        mask = torch.ones(domains.size, dtype=torch.bool, device=domains.open.device)
        log_refuted(log, domains, mask, domains.alpha, domains.beta, layers)


def log_splits(log: ProofLog | None, parents: _Domains, neuron: Tensor, layers: Sequence[_Layer],
               children: _Domains) -> _Domains:
    """``children`` (the active children of ``parents``, then the inactive ones, split at the
    flat indices ``neuron``) with their node ids."""
    if log is None or parents.node is None:
        return children
    offsets = torch.tensor([layer.offset for layer in layers], device=neuron.device)
    which = torch.searchsorted(offsets, neuron, right=True) - 1
    ids = log.relu_halves(parents.node, which, neuron - offsets[which])
    return children.with_state(node=ids)


def log_exact_leaves(log: ProofLog | None) -> None:
    """Marks the tree incomplete: some of its leaves go to the exact engine, which writes no
    proof."""
    if log is not None:
        log.incomplete = "leaves decided by the MILP engine"
