"""Certified output and spec-row bounds over each region, for ``verify bounds`` (api layer: it
combines the problem, the bound methods and the SDP)."""

from __future__ import annotations

from typing import Any

import torch

from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.bounds.objective import clause_row_lower, crown_rows
from verifier.bounds.settle import output_magnitude
from verifier.config import BOUND_METHODS, VerifierConfig
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import Problem, proof_box

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
    ``output_upper`` (flattened outputs) and ``clause_lower[c][r]``, a certified lower bound
    of ``C_r y - d_r`` for row ``r`` of clause ``c``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown bound method {method!r}")
    dev = config.device
    tgraph = TorchGraph(problem.graph, dev.torch_device, dev.bounds_torch_dtype)
    out: list[dict[str, Any]] = []
    for region in problem.spec.regions:
        lower, upper = proof_box(problem.graph, region, dev.torch_device)
        with torch.no_grad():
            y_lo, y_hi = interval_bounds(tgraph, lower, upper)
            region = region.settled(output_magnitude(y_lo, y_hi))
            if method == "ibp":
                clauses = [clause_row_lower(c, y_lo, y_hi)[0].tolist() for c in region.clauses]
            else:
                shape = problem.graph.inputs[0].shape
                crown = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
                c_lo, c_hi = crown.output_bounds()
                y_lo, y_hi = torch.maximum(y_lo, c_lo), torch.minimum(y_hi, c_hi)
                optimise = method == "alpha-crown"
                if optimise:
                    m = problem.graph.output_size
                    eye = torch.eye(m, dtype=torch.float64)
                    both = alpha_lower_bound(crown, torch.cat([eye, -eye]))
                    y_lo, y_hi = torch.maximum(y_lo, both[:, :m]), torch.minimum(y_hi, -both[:, m:])
                if method == "sdp":
                    from verifier.sdp import sdp_clause_rows
                    from verifier.sdp.bound import encode_for_sdp

                    enc = encode_for_sdp(crown.table)
                    clauses = [torch.maximum(crown_rows(crown, c)[0].cpu(),
                                             sdp_clause_rows(crown.table, c, config.sdp, seed=config.seed, encoding=enc).lower
                                             ).tolist() for c in region.clauses]
                else:
                    clauses = [crown_rows(crown, c, optimise=optimise)[0].tolist() for c in region.clauses]
        out.append({"output_lower": y_lo[0].tolist(), "output_upper": y_hi[0].tolist(), "clause_lower": clauses})
    return out
