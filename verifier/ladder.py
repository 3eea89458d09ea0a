"""The bound ladder of one region: intervals, CROWN, alpha-CROWN, the low-rank SDP.

One :class:`Ladder` per input region serves both the pipeline (:class:`verifier.region_proof.RegionProof`
climbs it until every clause is refuted) and ``verify bounds`` (:mod:`verifier.output_bounds`
reads the rung asked for). Each rung is computed once, when first asked for. Every number it
returns is a certified bound for the float model on the region's proof box.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.bounds.objective import clause_refuted, clause_row_lower, crown_rows, joint_alpha_rows
from verifier.config import AlphaConfig, CrownConfig, SdpConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import proof_box
from verifier.spec.types import Clause, Region

if TYPE_CHECKING:
    from verifier.exact.program import Encoding
    from verifier.sdp.bound import SdpRows


class Rung(enum.Enum):
    """The rungs, cheapest first; the values are ``verify bounds --method`` names."""

    INTERVAL = "ibp"
    CROWN = "crown"
    ALPHA = "alpha-crown"
    SDP = "sdp"


class Ladder:
    """Certified bounds of one region's outputs and clause rows, rung by rung.

    Attributes:
        lower, upper: the proof box (flattened inputs, the bound dtype).
        y_lower, y_upper: interval bounds ``(1, m)`` of the flattened outputs.
    """

    def __init__(self, tgraph: TorchGraph, region: Region, crown: CrownConfig | None = None,
                 alpha: AlphaConfig | None = None, deadline: Deadline | None = None) -> None:
        """The ladder of ``region``'s proof box; ``deadline`` bounds every CROWN pass it runs
        (they raise :class:`~verifier.deadline.DeadlineExceeded` once it has passed)."""
        self.tgraph, self.deadline = tgraph, deadline
        self.lower, self.upper = proof_box(tgraph.graph, region, tgraph.place.device)
        self.crown_config, self.alpha_config = crown, alpha
        with torch.no_grad():
            self.y_lower, self.y_upper = interval_bounds(tgraph, self.lower, self.upper)
        self._crown: Crown | None = None
        self._encoding: Encoding | None = None

    def crown(self) -> Crown:
        """CROWN over the box (computed on first use; the graph must have one input)."""
        if self._crown is None:
            self._crown = self._new_crown(None)
        return self._crown

    def tighten(self, prior: Mapping[str, tuple[Tensor, Tensor]]) -> Crown:
        """Replaces the CROWN rung by CROWN over the box with ``prior`` bounds (value -> bounds,
        batch 1, each a certified bound on the box) intersected into its intermediate bounds;
        the alpha rung then starts from it. Returns the new CROWN."""
        self._crown = self._new_crown(prior)
        self._encoding = None
        return self._crown

    def _new_crown(self, prior: Mapping[str, tuple[Tensor, Tensor]] | None) -> Crown:
        shape = self.tgraph.graph.inputs[0].shape
        with torch.no_grad():
            return Crown(self.tgraph, [self.lower.reshape(1, *shape)], [self.upper.reshape(1, *shape)],
                         self.crown_config, deadline=self.deadline, prior=prior)

    def interval_refutes(self, clause: Clause) -> bool:
        """True when the interval bounds show that some row of the clause certainly fails."""
        return bool(clause_refuted(clause, self.y_lower, self.y_upper).all())

    def rows(self, clause: Clause, rung: Rung, deadline: Deadline | None = None, sdp: SdpConfig | None = None,
             seed: int = 0, stop_above: float | None = None, alpha: AlphaConfig | None = None,
             record: dict[str, Tensor] | None = None) -> Tensor:
        """Certified lower bounds ``(rows,)`` of ``C_r y - d_r`` at ``rung``: intervals, CROWN,
        alpha-CROWN (options ``alpha``, default the ladder's; until ``deadline``, stopping once
        a row is positive; ``record``: its slopes, as :func:`crown_rows` takes) or the low-rank SDP
        (options ``sdp``, until ``deadline``; rows after one above ``stop_above`` are skipped,
        ``-inf``).

        Raises:
            SdpUnsupported: the SDP rung on a network it cannot express.
        """
        if rung is Rung.INTERVAL:
            return clause_row_lower(clause, self.y_lower, self.y_upper)[0]
        if rung is Rung.CROWN:
            return crown_rows(self.crown(), clause)[0]
        if rung is Rung.ALPHA:
            return crown_rows(self.crown(), clause, True, deadline, alpha or self.alpha_config, record)[0]
        return self.sdp_rows(clause, deadline, sdp, seed, stop_above).lower

    def joint_alpha_rows(self, clauses: list[Clause], deadline: Deadline | None = None,
                         alpha: AlphaConfig | None = None) -> list[Tensor]:
        """Per clause, alpha-CROWN's certified lower bounds ``(rows,)`` of ``C_r y - d_r`` from
        one run over all ``clauses`` (:func:`verifier.bounds.objective.joint_alpha_rows`), with
        options ``alpha`` (default: the ladder's)."""
        options = alpha or self.alpha_config
        return [rows[0] for rows in joint_alpha_rows(self.crown(), clauses, deadline, options)]

    def sdp_rows(self, clause: Clause, deadline: Deadline | None = None, sdp: SdpConfig | None = None,
                 seed: int = 0, stop_above: float | None = None) -> SdpRows:
        """The SDP rung with the solver's records per row (see :meth:`rows`).

        Raises:
            SdpUnsupported: a network the SDP bound cannot express.
        """
        from verifier.sdp import sdp_clause_rows
        from verifier.sdp.bound import encode_for_sdp

        table = self.crown().table
        if self._encoding is None:
            self._encoding = encode_for_sdp(table)
        return sdp_clause_rows(table, clause, sdp or SdpConfig(), deadline, seed, self._encoding, stop_above)

    def output_bounds(self, rung: Rung) -> tuple[Tensor, Tensor]:
        """Certified bounds ``(1, m)`` of the flattened outputs: intervals, intersected with
        CROWN's (every rung above intervals) and with alpha-CROWN's per output (``ALPHA``)."""
        y_lo, y_hi = self.y_lower, self.y_upper
        if rung is Rung.INTERVAL:
            return y_lo, y_hi
        with torch.no_grad():
            c_lo, c_hi = self.crown().output_bounds()
        y_lo, y_hi = torch.maximum(y_lo, c_lo), torch.minimum(y_hi, c_hi)
        if rung is Rung.ALPHA:
            m = self.tgraph.graph.output_size
            eye = torch.eye(m, dtype=torch.float64)
            both = alpha_lower_bound(self.crown(), torch.cat([eye, -eye]))
            y_lo, y_hi = torch.maximum(y_lo, both[:, :m]), torch.minimum(y_hi, -both[:, m:])
        return y_lo, y_hi
