"""Assembling a run's proof log into a certificate file (format: :mod:`verify_check.certificate`).

:class:`Recorder` follows a run: it hands each input-split search, and each clause's ReLU-split
search, a :class:`ProofLog`, notes how each region was proven and, for an ``unsat`` answer,
writes the file. A region is certified when it was proven by interval or CROWN bounds on its
whole box (a tree of one node: the checker bounds the root itself), by input-split branch and
bound over the clauses those left open, by alpha-CROWN at the root, or by ReLU-split branch and
bound (beta-CROWN) on the clauses the root left open; the last two carry the root's
intermediate bounds as claims (:mod:`verifier.certificate.claims`), with the trees of the
searches that tightened them on deep networks. Any other proof (SDP bounds, neuron splitting,
the exact engines, leaves handed to the MILP engine) is written as uncertified with its reason,
and ``verify-check`` then answers ``incomplete``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata
from pathlib import Path

import numpy as np

from verifier.certificate.claims import RootProof, claim_arrays, root_log
from verifier.certificate.log import ProofLog
from verifier.spec.types import Clause, Region


class ProvenBy(Enum):
    """How a region was proven, as far as the certificate is concerned."""

    ROOT_BOUNDS = "interval or CROWN bounds on the whole box"
    ROOT_ALPHA = "alpha-CROWN bounds on the whole box"
    ROOT_SDP = "low-rank SDP bounds on the whole box"
    INPUT_SPLIT = "input-split branch and bound"
    RELU_SPLIT = "ReLU-split branch and bound (beta-CROWN, or the MILP engine it hands small regions to)"
    NEURON_SPLIT = "branch and bound on Sigmoid/Tanh neurons"
    EXACT = "the MILP or SMT engine"


@dataclass
class _Entry:
    proven_by: ProvenBy | None = None
    after_crown: frozenset[int] | None = None  # ids of the clauses CROWN left open
    log: ProofLog | None = None
    root: RootProof | None = None  # alpha-CROWN's proof at the root, with its claims
    clause_logs: dict[int, ProofLog] = field(default_factory=dict)  # ReLU-split trees by clause index


def _reason(entry: _Entry) -> str:
    return entry.proven_by.value if entry.proven_by is not None else "not proven"


def _version() -> str:
    try:
        return f"verifier {metadata.version('verifier')}"
    except metadata.PackageNotFoundError:
        return "verifier (not installed)"


class Recorder:
    """Collects what a run's certificate needs, region by region (see the module docstring)."""

    def __init__(self, regions: Sequence[Region]) -> None:
        self.regions = tuple(regions)
        self.entries = [_Entry() for _ in self.regions]

    def crown_done(self, index: int, still_open: Sequence[Clause]) -> None:
        """Notes the clauses interval and CROWN bounds left open on region ``index``'s box."""
        self.entries[index].after_crown = frozenset(id(c) for c in still_open)

    def log_for(self, index: int, clauses: Sequence[Clause], inputs: int) -> ProofLog:
        """A new proof log for an input-split search of region ``index`` over ``clauses``."""
        region = self.regions[index]
        position = {id(c): i for i, c in enumerate(region.clauses)}
        log = ProofLog(inputs, tuple(position[id(c)] for c in clauses), tuple(c.num_rows for c in clauses))
        entry = self.entries[index]
        if entry.after_crown is not None and entry.after_crown != frozenset(id(c) for c in clauses):
            entry.proven_by = ProvenBy.ROOT_ALPHA  # some clauses were refuted by alpha/SDP at the root
        entry.log = log
        return log

    def clause_log(self, index: int, clause: Clause) -> ProofLog:
        """A new proof log for the ReLU-split search of ``clause`` in region ``index``."""
        region = self.regions[index]
        k = next(i for i, c in enumerate(region.clauses) if c is clause)
        log = ProofLog(int(region.lower.size), (k,), (clause.num_rows,))
        self.entries[index].clause_logs[k] = log
        return log

    def proven(self, index: int, how: ProvenBy) -> None:
        """Notes that region ``index`` was proven ``how`` (an earlier uncertifiable step wins)."""
        entry = self.entries[index]
        if entry.proven_by is None:
            entry.proven_by = how
        if how is ProvenBy.ROOT_BOUNDS:
            entry.log = ProofLog(int(self.regions[index].lower.size), (), ())
            entry.log.root()

    def root_proof(self, index: int, proof: RootProof | None) -> None:
        """Notes region ``index``'s root proof by alpha-CROWN (certified when it holds the
        slopes of every clause that CROWN left open)."""
        self.entries[index].root = proof

    def write(self, path: str | Path, model: str | Path, spec: str | Path, outside: str | None = None
              ) -> dict[str, object]:
        """Writes the certificate of an ``unsat`` run; returns its statistics (bytes, nodes,
        regions certified, seconds). ``outside``: the model's op that ``verify-check`` does not
        read (:meth:`verifier.problem.Problem.unchecked_op`), if any: then every region is
        written as uncertified, with it as the reason."""
        began = time.monotonic()
        marks: list[dict[str, object]] = []
        arrays: dict[str, np.ndarray] = {}
        nodes = 0
        for i, (region, entry) in enumerate(zip(self.regions, self.entries, strict=True)):
            trees, why = self._trees_of(region, entry)
            if outside is not None and why is None:
                trees, why = [], f"{_reason(entry)} ({outside})"
            mark: dict[str, object] = {"certified": why is None, "reason": why or _reason(entry),
                                       "nodes": sum(log.count for _, log in trees)}
            if len(trees) > 1:
                mark["trees"] = [clauses for clauses, _ in trees]
            for t, (_, log) in enumerate(trees):
                arrays.update(self._region_arrays(f"r{i}_" if t == 0 else f"r{i}_t{t}_", region, log))
            if trees and entry.root is not None and entry.proven_by in (ProvenBy.ROOT_ALPHA, ProvenBy.RELU_SPLIT):
                arrays.update(claim_arrays(f"r{i}_", entry.root.record, entry.root.bounds, entry.root.relus))
            marks.append(mark)
            nodes += int(mark["nodes"])  # type: ignore[call-overload]
        header = {"format": "verifier-certificate", "version": 1, "float_model": "float32", "tool": _version(),
                  "model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
                  "spec_sha256": hashlib.sha256(Path(spec).read_bytes()).hexdigest(), "regions": marks}
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        return {"path": str(path), "bytes": Path(path).stat().st_size, "nodes": nodes,
                "regions_certified": sum(1 for m in marks if m["certified"]),
                "seconds": round(time.monotonic() - began, 6)}

    def _trees_of(self, region: Region, entry: _Entry) -> tuple[list[tuple[list[int], ProofLog]], str | None]:
        """The region's trees (the clauses each refutes, its log) and why the region is not
        certified (None: it is): by intervals, CROWN or input splitting, the one log; by
        alpha-CROWN at the root or ReLU splitting, a one-node tree with the root's row slopes
        for the clauses not searched (every one CROWN left open needs its slopes recorded) and
        one tree per searched clause (none may have leaves the exact engine decided)."""
        everything = list(range(len(region.clauses)))
        how = entry.proven_by
        if how in (ProvenBy.ROOT_BOUNDS, ProvenBy.INPUT_SPLIT) and entry.log is not None:
            why = entry.log.incomplete
            return ([(everything, entry.log)], None) if why is None else ([], f"{how.value}: {why}")
        if how not in (ProvenBy.ROOT_ALPHA, ProvenBy.RELU_SPLIT):
            return [], _reason(entry)
        if entry.root is None:  # alpha-CROWN before input splits
            return [], f"{how.value} (no root proof recorded)"
        foreign = entry.root.record.foreign({node for node, _ in entry.root.relus})
        if foreign:
            return [], f"{how.value} (alpha weights of {foreign[0]}, not ReLU slopes, are not in the format)"
        searched = sorted(entry.clause_logs) if how is ProvenBy.RELU_SPLIT else []
        rest = [k for k in everything if k not in searched]
        left = [k for k in rest if entry.after_crown is None or id(region.clauses[k]) in entry.after_crown]
        root = root_log(entry.root, left, [c.num_rows for c in region.clauses], int(region.lower.size))
        if root is None:
            return [], f"{how.value} (slopes not recorded)"
        trees = [(rest, root)] + [([k], entry.clause_logs[k]) for k in searched]
        missing = [log.incomplete for _, log in trees if log.incomplete]
        return (trees, None) if not missing else ([], f"{how.value}: {missing[0]}")

    def _region_arrays(self, prefix: str, region: Region, log: ProofLog) -> dict[str, np.ndarray]:
        """A tree's arrays (names prefixed), slopes spread over all its region's rows."""
        counts = [c.num_rows for c in region.clauses]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        return log.arrays(prefix, int(offsets[-1]), tuple(int(offsets[c]) for c in log.clauses))
