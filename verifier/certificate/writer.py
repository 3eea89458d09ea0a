"""Assembling a run's proof log into a certificate file (format: :mod:`verify_check.certificate`).

:class:`Recorder` follows a run: it hands each input-split search a :class:`ProofLog`, notes
how each region was proven and, for an ``unsat`` answer, writes the file. A region is
certified when it was proven by interval or CROWN bounds on its whole box (a tree of one node:
the checker bounds the root itself) or by input-split branch and bound over the clauses those
left open; any other proof (alpha-CROWN or SDP bounds at the root, ReLU or neuron splitting,
the exact engines) is written as uncertified with its reason, and ``verify-check`` then
answers ``incomplete``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import metadata
from pathlib import Path

import numpy as np

from verifier.certificate.log import ProofLog
from verifier.spec.types import Clause, Region


class ProvenBy(Enum):
    """How a region was proven, as far as the certificate is concerned."""

    ROOT_BOUNDS = "interval or CROWN bounds on the whole box"
    ROOT_ALPHA = "alpha-CROWN or SDP bounds on the whole box"
    INPUT_SPLIT = "input-split branch and bound"
    RELU_SPLIT = "ReLU-split branch and bound (beta-CROWN, or the MILP engine it hands small regions to)"
    NEURON_SPLIT = "branch and bound on Sigmoid/Tanh neurons"
    EXACT = "the MILP or SMT engine, or bounds tightened by search on the cut network"


@dataclass
class _Entry:
    proven_by: ProvenBy | None = None
    after_crown: frozenset[int] | None = None  # ids of the clauses CROWN left open
    log: ProofLog | None = None


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

    def proven(self, index: int, how: ProvenBy) -> None:
        """Notes that region ``index`` was proven ``how`` (an earlier uncertifiable step wins)."""
        entry = self.entries[index]
        if entry.proven_by is None:
            entry.proven_by = how
        if how is ProvenBy.ROOT_BOUNDS:
            entry.log = ProofLog(int(self.regions[index].lower.size), (), ())
            entry.log.root()

    def write(self, path: str | Path, model: str | Path, spec: str | Path) -> dict[str, object]:
        """Writes the certificate of an ``unsat`` run; returns its statistics (bytes, nodes,
        regions certified, seconds)."""
        began = time.monotonic()
        marks: list[dict[str, object]] = []
        arrays: dict[str, np.ndarray] = {}
        nodes = 0
        for i, (region, entry) in enumerate(zip(self.regions, self.entries, strict=True)):
            certified = entry.proven_by in (ProvenBy.ROOT_BOUNDS, ProvenBy.INPUT_SPLIT) and entry.log is not None
            how = entry.proven_by.value if entry.proven_by is not None else "not proven"
            marks.append({"certified": certified, "reason": how, "nodes": entry.log.count if entry.log else 0})
            if certified and entry.log is not None:
                arrays.update(self._region_arrays(i, region, entry.log))
                nodes += entry.log.count
        header = {"format": "verifier-certificate", "version": 1, "float_model": "float32", "tool": _version(),
                  "model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
                  "spec_sha256": hashlib.sha256(Path(spec).read_bytes()).hexdigest(), "regions": marks}
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        return {"path": str(path), "bytes": Path(path).stat().st_size, "nodes": nodes,
                "regions_certified": sum(1 for m in marks if m["certified"]),
                "seconds": round(time.monotonic() - began, 6)}

    def _region_arrays(self, index: int, region: Region, log: ProofLog) -> dict[str, np.ndarray]:
        """The region's arrays, slopes spread over all its clauses' rows."""
        counts = [c.num_rows for c in region.clauses]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        return log.arrays(f"r{index}_", int(offsets[-1]), tuple(int(offsets[c]) for c in log.clauses))
