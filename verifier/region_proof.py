"""Certified bounds of one input region for the pipeline: :class:`RegionProof` climbs the
region's bound ladder (intervals, CROWN, alpha-CROWN, the low-rank SDP) until every clause is
refuted or the rungs run out."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from torch import Tensor

from verifier.attack.guides import distinct_points, row_corners
from verifier.bab.relu_domains import splittable_layers
from verifier.bounds.crown import Crown
from verifier.bounds.value_alpha import value_alpha_bounds
from verifier.certificate.claims import RootProof, RootRecord
from verifier.config import AlphaConfig, CrownConfig, SdpConfig, StepBudget
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.ladder import Ladder, Rung
from verifier.spec.types import Clause, Region


class RegionProof:
    """Certified bounds of one region, climbing its :class:`~verifier.ladder.Ladder`: intervals,
    then CROWN on the clauses that intervals leave open (at once, or when :meth:`climb_crown`
    is called); :meth:`optimise` adds alpha-CROWN and
    :meth:`sdp` the low-rank SDP on the clauses still open.

    A clause is refuted when some row ``C_r y - d_r`` has a positive certified lower bound;
    the region is proven when every clause is refuted. :attr:`crown` is None when intervals
    decided every clause, a clause has no rows or the graph has several inputs. ``deadline``
    (the run's) bounds every CROWN pass of its ladder: once it has passed, they raise
    :class:`~verifier.deadline.DeadlineExceeded`.
    """

    def __init__(self, tgraph: TorchGraph, region: Region, crown: CrownConfig | None = None,
                 alpha: AlphaConfig | None = None, deadline: Deadline | None = None,
                 defer_crown: bool = False) -> None:
        """Interval bounds of the region's clauses, then (unless ``defer_crown``: later, by
        :meth:`climb_crown`) CROWN on the clauses they leave open."""
        self.ladder = Ladder(tgraph, region, crown, alpha, deadline)
        self.lower, self.upper = self.ladder.lower, self.ladder.upper
        self.crown: Crown | None = None
        self.open = [c for c in region.clauses if not self.ladder.interval_refutes(c)]
        self.clause_index = {id(c): i for i, c in enumerate(region.clauses)}
        self.record: RootRecord | None = None  # set (before ALPHA) to record the root's proof for a certificate
        self._crown_climbed = False
        self._guides: list[Tensor] = []
        if not defer_crown:
            self.climb_crown()

    def climb_crown(self) -> bool:
        """CROWN on the clauses intervals left open (once; later calls only answer); returns
        :attr:`proven`. Left out when a clause has no rows or the graph has several inputs."""
        if self._crown_climbed:
            return self.proven
        self._crown_climbed = True
        trivial = any(c.num_rows == 0 for c in self.open)
        if self.open and not trivial and len(self.ladder.tgraph.graph.inputs) == 1:
            self.crown = self.ladder.crown()
            self.open = self._still_open(Rung.CROWN)
        return self.proven

    def _still_open(self, rung: Rung, deadline: Deadline | None = None, alpha: AlphaConfig | None = None
                    ) -> list[Clause]:
        """The open clauses that ``rung`` does not refute (each bounded once; an expired
        ``deadline`` leaves the rest as they are), keeping each one's row corners as guides."""
        still_open = []
        for clause in self.open:
            if deadline is not None and deadline.expired():
                still_open.append(clause)
                continue
            final_only = not (alpha or self.ladder.alpha_config or AlphaConfig()).intermediate  # final-row slopes only
            slopes: dict[str, Tensor] | None = {} if self.record is not None and rung is Rung.ALPHA and final_only \
                else None
            if not bool((self.ladder.rows(clause, rung, deadline, alpha=alpha, record=slopes) > 0).any()):
                still_open.append(clause)
                if self.crown is not None:
                    self._guides.append(row_corners(self.crown, self.lower, self.upper))
            elif self.record is not None and (rung is Rung.CROWN or slopes is not None):
                self.record.add_rows(self.clause_index[id(clause)], slopes or {})  # CROWN's rows: a checker's own
        return still_open

    def take_guides(self) -> Tensor | None:
        """The input corners of the linear bounds of the clauses left open since the last call
        (distinct, ``(P, n)``; None when there are none): attack starting points, not bounds."""
        guides, self._guides = distinct_points(self._guides), []
        return guides

    def root_proof(self) -> RootProof | None:
        """The root's proof data for a certificate (None: nothing was recorded, or no CROWN)."""
        if self.record is None or self.crown is None:
            return None
        relus = [(layer.node, layer.value) for layer in splittable_layers(self.ladder.tgraph)]
        bounds = {value: tuple(b.detach().reshape(-1).cpu().double().numpy() for b in self.crown.bounds[value])
                  for _, value in relus}
        return RootProof(self.record, bounds, relus)  # type: ignore[arg-type]

    def close_stage(self) -> None:
        """Ends the recorded root proof's current stage of claims at the bounds found so far,
        before they are tightened again (:meth:`~verifier.certificate.claims.RootRecord.
        close_stage`); nothing without a record."""
        proof = self.root_proof()
        if proof is not None:
            proof.record.close_stage(proof.bounds)

    @property
    def proven(self) -> bool:
        """True when every clause of the region is refuted."""
        return not self.open

    def sdp(self, config: SdpConfig, deadline: Deadline, seed: int, stats: dict[str, Any]) -> bool:
        """Runs the low-rank SDP bound (:mod:`verifier.sdp`) on the open clauses until
        ``deadline``; returns :attr:`proven`. A clause is refuted only by a *certified* SDP row
        bound above zero (see :mod:`verifier.sdp.certificate`). A network the SDP cannot
        express leaves the clauses open and records why in ``stats["sdp_error"]``."""
        from verifier.sdp import SdpUnsupported

        if self.crown is None or not self.open:
            return self.proven
        record = stats.setdefault("sdp", {"clauses": 0, "refuted": 0, "rows": 0, "seconds": 0.0, "best_rows": []})
        began = time.monotonic()
        try:
            still_open = []
            for clause in self.open:
                if deadline.expired():
                    still_open.append(clause)
                    continue
                rows = self.ladder.sdp_rows(clause, deadline, config, seed, stop_above=0.0)
                record["clauses"] += 1
                record["rows"] += sum(result is not None for result in rows.results)
                best = float(rows.lower.max())
                record["best_rows"].append(best if np.isfinite(best) else None)
                if best > 0:
                    record["refuted"] += 1
                else:
                    still_open.append(clause)
            self.open = still_open
        except SdpUnsupported as exc:
            stats["sdp_error"] = str(exc)
        record["seconds"] += time.monotonic() - began
        return self.proven

    def tighten(self, prior: Mapping[str, tuple[Tensor, Tensor]], deadline: Deadline | None = None) -> bool:
        """CROWN again with the certified intermediate bounds ``prior`` (e.g. from
        :func:`verifier.bab.tighten.tighten_bounds`), then alpha-CROWN on the open clauses
        until ``deadline``; returns :attr:`proven`."""
        self.tighten_crown(prior)
        return self.optimise(deadline)

    def tighten_crown(self, prior: Mapping[str, tuple[Tensor, Tensor]]) -> bool:
        """CROWN again with the certified intermediate bounds ``prior``; the clauses it refutes
        are closed (cheap: one pass, no optimisation). Returns :attr:`proven`."""
        if self.crown is None:
            return self.proven
        self.crown = self.ladder.tighten(prior)
        self.open = self._still_open(Rung.CROWN)
        return self.proven

    def optimise(self, deadline: Deadline | None = None, budget: StepBudget | None = None,
                 stats: dict[str, Any] | None = None) -> bool:
        """Runs alpha-CROWN on the open clauses (stopping at ``deadline``), one clause after
        another; with the ``budget``'s ``value_alpha`` options, first on the intermediate
        bounds themselves (:meth:`_value_rounds`); with its ``joint_alpha`` options
        (``joint``), then all clauses in one run
        (:meth:`Ladder.joint_alpha_rows`: the intermediate slopes optimised once, for all
        clauses, cheap), then clause by clause with those options on the clauses it leaves open
        (each clause's own slopes, from the intermediate bounds the joint run tightened).
        Returns :attr:`proven`."""
        if self.crown is None:
            return self.proven
        joint = None if budget is None else budget.joint_alpha
        if budget is not None and budget.value_alpha is not None and self._value_rounds(budget, deadline, stats):
            return True
        if joint is not None and len(self.open) > 1:
            rows = self.ladder.joint_alpha_rows(self.open, deadline, joint)
            self.open = [c for c, r in zip(self.open, rows, strict=True) if not bool((r > 0).any())]
        self.open = self._still_open(Rung.ALPHA, deadline, joint)
        return self.proven

    def _value_rounds(self, budget: StepBudget, deadline: Deadline | None, stats: dict[str, Any] | None) -> bool:
        """Rounds of :meth:`optimise_values`, the first with ``budget.value_alpha``'s steps and
        each later one with twice the last one's, each followed by alpha-CROWN on the final rows
        of the open clauses (cheap), until the region is proven or the next round would not end
        within ``budget.value_alpha_share`` of the time to ``deadline`` (one round without a
        deadline). An instance the first rounds prove does not wait for the long ones; the
        bounds of every round start from the last one's (without a finite deadline, one round:
        the doubling rounds would not end). Returns :attr:`proven`."""
        assert budget.value_alpha is not None
        share = None if deadline is None or not math.isfinite(deadline.remaining()) else \
            deadline.sooner(budget.value_alpha_share * deadline.remaining())  # no deadline: one round
        final_rows = replace(budget.joint_alpha or AlphaConfig(), intermediate=False,
                             plane_weights=budget.value_alpha.plane_weights)
        steps, last = budget.value_alpha.iterations, 0.0
        while not self.proven:
            if share is not None and (share.expired() or 2 * last > share.remaining()):
                break
            began = time.monotonic()
            if self.optimise_values(replace(budget.value_alpha, iterations=steps), share, stats):
                break
            self.open = self._still_open(Rung.ALPHA, share, final_rows)
            last, steps = time.monotonic() - began, 2 * steps
            if share is None:
                break
        return self.proven

    def optimise_values(self, config: AlphaConfig, deadline: Deadline | None = None,
                        stats: dict[str, Any] | None = None) -> bool:
        """alpha-CROWN on every refined intermediate value's own bounds, value by value
        (:func:`verifier.bounds.value_alpha.value_alpha_bounds`, options ``config``, until
        ``deadline``), then CROWN again from them (:meth:`tighten_crown`); its figures are
        added to ``stats["value_alpha"]``. Returns :attr:`proven`."""
        if self.crown is None or self.proven:
            return self.proven
        self.close_stage()  # a certificate's claims: one stage per round
        prior, record = value_alpha_bounds(self.crown, config, deadline, self.record)
        if stats is not None:
            stats.setdefault("value_alpha", []).append(record.as_dict())
        return self.tighten_crown(prior)


def region_refuted(tgraph: TorchGraph, region: Region, deadline: Deadline | None = None,
                   optimise: bool = False) -> bool:
    """True when certified bounds refute every clause of ``region`` (no counterexample there).

    Interval bounds, then CROWN, and with ``optimise`` alpha-CROWN (see :class:`RegionProof`).
    """
    proof = RegionProof(tgraph, region)
    return proof.proven or (optimise and proof.optimise(deadline))
