"""Certified output and spec-row bounds over each region, for ``verify bounds``: the rung of the
region's bound ladder (:mod:`verifier.ladder`, the one the pipeline climbs) that was asked for."""

from __future__ import annotations

from typing import Any

import torch

from verifier.bounds.settle import output_magnitude
from verifier.config import BOUND_METHODS, VerifierConfig
from verifier.graph.torch_graph import TorchGraph
from verifier.ladder import Ladder, Rung
from verifier.problem import Problem

METHODS = BOUND_METHODS


def spec_bounds(problem: Problem, method: str, config: VerifierConfig) -> list[dict[str, Any]]:
    """Per region: certified output bounds and lower bounds of every clause row.

    ``method`` is ``ibp`` (interval bounds), ``crown`` (CROWN; output bounds are intersected
    with the interval ones, spec rows are bounded directly), ``alpha-crown`` (CROWN with
    optimised ReLU lower slopes, per output and per spec row) or ``sdp`` (CROWN's output
    bounds; spec rows by the low-rank SDP relaxation, :mod:`verifier.sdp`, each the larger of
    its certified bound and CROWN's).

    Raises:
        SdpUnsupported: ``sdp`` on a network it cannot express.

    The layout is the one documented for ``verify bounds --json``: ``output_lower``,
    ``output_upper`` (flattened outputs), ``clause_lower[c][r]``, a certified lower bound
    of ``C_r y - d_r`` for row ``r`` of clause ``c``, and ``refinement_cut``: True when
    ``config.crown.refine_seconds`` left some intermediate neurons unrefined. CROWN is
    ``config.crown`` (the pipeline's hybrid one), alpha-CROWN ``config.alpha``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}")
    rung = Rung(method)
    dev = config.device
    tgraph = TorchGraph(problem.graph, dev.torch_device, dev.bounds_torch_dtype)
    out: list[dict[str, Any]] = []
    for region in problem.spec.regions:
        ladder = Ladder(tgraph, region, config.crown, config.alpha)
        settled = region.settled(output_magnitude(ladder.y_lower, ladder.y_upper))
        y_lo, y_hi = ladder.output_bounds(Rung.CROWN if rung is Rung.SDP else rung)
        if rung is Rung.SDP:
            clauses = [torch.maximum(ladder.rows(c, Rung.CROWN).cpu(),
                                     ladder.rows(c, Rung.SDP, sdp=config.sdp, seed=config.seed)).tolist()
                       for c in settled.clauses]
        else:
            clauses = [ladder.rows(c, rung).tolist() for c in settled.clauses]
        cut = rung is not Rung.INTERVAL and ladder.crown().refinement_cut
        out.append({"output_lower": y_lo[0].tolist(), "output_upper": y_hi[0].tolist(), "clause_lower": clauses,
                    "refinement_cut": cut})
    return out
