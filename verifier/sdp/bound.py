"""Certified lower bounds of clause rows by the low-rank SDP relaxation.

For each row ``C_r y - d_r`` of a clause: the network's exact encoding over the region's box
(:func:`verifier.exact.encoding.encode`, the same contract as the MILP engine: every float32
execution satisfies it), the quadratic program of :mod:`verifier.sdp.problem`, the low-rank
solver of :mod:`verifier.sdp.solver`, and the certificate of :mod:`verifier.sdp.certificate`.
Only the certificate's ``row_bound`` is returned; it is a lower bound of the row over every
float execution on the box, so a positive value refutes the clause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from verifier.bounds.table import BoundTable
from verifier.config import SdpConfig
from verifier.deadline import Deadline
from verifier.exact.encoding import Encoding, ExactUnsupported, encode
from verifier.sdp.problem import SdpUnsupported, build_problem
from verifier.sdp.solver import SdpResult, solve_sdp
from verifier.spec.types import Clause


@dataclass
class SdpRows:
    """Certified row bounds of one clause and the solver's records per row."""

    lower: Tensor
    results: list[SdpResult | None] = field(default_factory=list)


def encode_for_sdp(table: BoundTable) -> Encoding:
    """The exact encoding of ``table``'s network over its box.

    Raises:
        SdpUnsupported: an op without an exact encoding (named with its node).
    """
    try:
        return encode(table)
    except ExactUnsupported as exc:
        raise SdpUnsupported(str(exc)) from None


def sdp_clause_rows(table: BoundTable, clause: Clause, config: SdpConfig, deadline: Deadline | None = None,
                    seed: int = 0, encoding: Encoding | None = None, stop_above: float | None = None) -> SdpRows:
    """Certified lower bounds ``(rows,)`` (float64) of ``C_r y - d_r`` over ``table``'s box
    (batch 1). A row whose time ran out gets ``-inf``. With ``stop_above``, the rows after
    the first whose bound exceeds it are skipped (``-inf``): the clause is refuted already;
    each row's solve stops once its bound exceeds it, or gives up once it cannot (see
    :func:`~verifier.sdp.solver.solve_sdp`).

    Raises:
        SdpUnsupported: the network has an op or relation the SDP bound cannot express.
    """
    enc = encoding if encoding is not None else encode_for_sdp(table)
    device = table.tgraph.place.device
    lower = torch.full((clause.num_rows,), -torch.inf, dtype=torch.float64)
    results: list[SdpResult | None] = []
    for r in range(clause.num_rows):
        if ((deadline is not None and deadline.expired())
                or (stop_above is not None and bool((lower > stop_above).any()))):
            results.append(None)
            continue
        problem = build_problem(enc, np.asarray(clause.C[r], dtype=np.float64), float(clause.d[r]))
        result = solve_sdp(problem, config, device, deadline, seed, stop_above)
        lower[r] = result.certificate.row_bound
        results.append(result)
    return SdpRows(lower, results)
