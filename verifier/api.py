"""The verification pipeline: ``verify(model, spec) -> Result``.

1. load the model and the property (bad input raises an InputError subclass);
2. for each input region: falsify quickly (sampling, then PGD; every hit re-checked by
   onnxruntime on the original file) and try to refute every clause with interval bounds;
3. ``sat`` as soon as one region has a confirmed counterexample; ``unsat`` when every clause of
   every region is refuted; otherwise ``unknown`` (or ``timeout`` if time ran out first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verifier.attack import falsify_region
from verifier.bab import InputSplitSearch, ReluSplitSearch
from verifier.bab.relu_split import count_unstable
from verifier.bounds.crown import Crown
from verifier.bounds.interval import interval_bounds
from verifier.bounds.objective import clause_refuted, crown_rows
from verifier.bounds.settle import settle_region
from verifier.config import AttackConfig, SdpConfig, VerifierConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.ops.base import Op
from verifier.problem import Problem, load_problem, proof_box
from verifier.result import Counterexample, Result, Status
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness


class RegionProof:
    """Certified bounds of one region, computed once: intervals, then CROWN on the clauses that
    intervals leave open; :meth:`optimise` adds alpha-CROWN on the clauses still open.

    A clause is refuted when some row ``C_r y - d_r`` has a positive certified lower bound;
    the region is proven when every clause is refuted.
    """

    def __init__(self, tgraph: TorchGraph, region: Region) -> None:
        lower, upper = proof_box(tgraph.graph, region, tgraph.place.device)
        self.lower, self.upper = lower, upper
        self.crown: Crown | None = None
        with torch.no_grad():
            y_lo, y_hi = interval_bounds(tgraph, lower, upper)
            self.open = [c for c in region.clauses if not bool(clause_refuted(c, y_lo, y_hi).all())]
            trivial = any(c.num_rows == 0 for c in self.open)
            if self.open and not trivial and len(tgraph.graph.inputs) == 1:
                shape = tgraph.graph.inputs[0].shape
                self.crown = Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])
                self.open = [c for c in self.open if not bool((crown_rows(self.crown, c) > 0).any())]

    @property
    def proven(self) -> bool:
        """True when every clause of the region is refuted."""
        return not self.open

    def sdp(self, config: SdpConfig, deadline: Deadline, seed: int, stats: dict[str, Any]) -> bool:
        """Runs the low-rank SDP bound (:mod:`verifier.sdp`) on the open clauses until
        ``deadline``; returns :attr:`proven`. A clause is refuted only by a *certified* SDP row
        bound above zero (see :mod:`verifier.sdp.certificate`). A network the SDP cannot
        express leaves the clauses open and records why in ``stats["sdp_error"]``."""
        from verifier.sdp import SdpUnsupported, sdp_clause_rows
        from verifier.sdp.bound import encode_for_sdp

        if self.crown is None or not self.open:
            return self.proven
        record = stats.setdefault("sdp", {"clauses": 0, "refuted": 0, "rows": 0, "seconds": 0.0, "best_rows": []})
        began = time.monotonic()
        try:
            encoding = encode_for_sdp(self.crown.table)
            still_open = []
            for clause in self.open:
                if deadline.expired():
                    still_open.append(clause)
                    continue
                rows = sdp_clause_rows(self.crown.table, clause, config, deadline, seed, encoding, stop_above=0.0)
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

    def optimise(self, deadline: Deadline | None = None) -> bool:
        """Runs alpha-CROWN on the open clauses (stopping at ``deadline``); returns :attr:`proven`."""
        if self.crown is None:
            return self.proven
        still_open = []
        for clause in self.open:
            expired = deadline is not None and deadline.expired()
            if expired or not bool((crown_rows(self.crown, clause, optimise=True, deadline=deadline) > 0).any()):
                still_open.append(clause)
        self.open = still_open
        return self.proven


def region_refuted(tgraph: TorchGraph, region: Region, deadline: Deadline | None = None,
                   optimise: bool = False) -> bool:
    """True when certified bounds refute every clause of ``region`` (no counterexample there).

    Interval bounds, then CROWN, and with ``optimise`` alpha-CROWN (see :class:`RegionProof`).
    """
    proof = RegionProof(tgraph, region)
    return proof.proven or (optimise and proof.optimise(deadline))


_QUICK_ROUNDS = 3  # sampling/PGD rounds tried before the costlier bound computations
_ALPHA_SECONDS = 1.0  # alpha-CROWN time per region in the pipeline (more belongs to BaB)
_LATEST_STATS = frozenset({"batch", "lowest_open_bound"})  # search statistics that are not summed
_ALPHA_SHARE_RELU = 0.05  # before ReLU splitting: this share of the time left, if more
_SDP_SHARE = 0.5  # before branch and bound: the SDP bound gets at most this share of the time left
_FIRST_BAB_SECONDS = 5.0  # the first branch-and-bound slice: at least this long,
_FIRST_BAB_SHARE = 0.3  # or this share of the time left
_FIRST_BAB_SHARE_RELU = 0.8  # for ReLU splitting: dense sampling in hundreds of input dimensions
# rarely finds what the quick attack missed, so the later attack rounds wait longer


class _Run:
    """One verification run: the problem, the bound models, the oracle and the statistics."""

    def __init__(self, problem: Problem, config: VerifierConfig, deadline: Deadline,
                 ops: Mapping[str, Op] | None = None) -> None:
        dev = config.device
        self.config, self.deadline = config, deadline
        self.attack_graph = TorchGraph(problem.graph, dev.torch_device, dev.attack_torch_dtype, ops)
        self.bounds_graph = TorchGraph(problem.graph, dev.torch_device, dev.bounds_torch_dtype, ops)
        self.problem = settled_problem(problem, self.bounds_graph)
        self.oracle = OnnxOracle(problem.oracle_model)
        self.stats: dict[str, Any] = {"regions": len(problem.spec.regions), "regions_proven": 0,
                                      "attack_evaluations": 0, "pgd_steps": 0, "candidates_checked": 0}
        self.found: Counterexample | None = None
        self.bab_exhausted: set[int] = set()  # regions whose branch and bound gave up
        self.searches: dict[int, InputSplitSearch | ReluSplitSearch] = {}  # per region, resumed
        self.streams: dict[int, torch.Generator] = {}

    def confirmer(self, index: int, region: Region) -> Callable[[np.ndarray], bool]:
        """The onnxruntime re-check of a candidate in region ``index``; records a confirmed one."""
        def confirm(x: np.ndarray) -> bool:
            check = check_witness(self.oracle, region, x)
            if check.valid and check.x is not None and check.y is not None and check.clause is not None:
                self.found = Counterexample(check.x, check.y, index, check.clause)
            return check.valid

        return confirm

    def falsify(self, index: int, region: Region, attack: AttackConfig, first_round: int = 0) -> bool:
        """Runs falsification on one region; records a confirmed counterexample."""
        confirm = self.confirmer(index, region)
        if index not in self.streams:  # one random stream per region, continued across calls
            self.streams[index] = torch.Generator().manual_seed(self.config.seed * 1000003 + index)
        _, stats = falsify_region(self.attack_graph, region, attack, self.deadline, confirm,
                                  self.streams[index], first_round)
        self.stats["attack_evaluations"] += stats.evaluated
        self.stats["pgd_steps"] += stats.pgd_steps
        self.stats["candidates_checked"] += stats.candidates_checked
        return self.found is not None

    def bab_mode(self, proof: RegionProof) -> str:
        """The branch-and-bound mode for a region: the configured one, or for ``auto`` input
        splitting on few free input dimensions and ReLU splitting otherwise."""
        if self.config.bab != "auto":
            return self.config.bab
        dims = int((proof.upper > proof.lower).sum())
        return "input" if dims <= self.config.input_split_max_dims else "relu"

    def alpha_seconds(self, proof: RegionProof) -> float:
        """alpha-CROWN time for a region: a second, or for ReLU splitting (whose root domain
        keeps the intermediate bounds alpha-CROWN tightens) a share of the time left."""
        if self.bab_mode(proof) == "relu":
            return max(_ALPHA_SECONDS, _ALPHA_SHARE_RELU * self.deadline.remaining())
        return _ALPHA_SECONDS

    def branch_and_bound(self, index: int, region: Region, proof: RegionProof, deadline: Deadline,
                         first: bool = True) -> Status:
        """Branch and bound on one region's open clauses (the mode the configuration picks)
        until ``deadline``; UNKNOWN when no mode applies or the search gives up. In ReLU-split
        mode, a region with few unstable neurons whose first slice of search did not decide it
        goes to the MILP engine instead (and back to the search if MILP cannot decide)."""
        mode = self.bab_mode(proof)
        unstable = count_unstable(proof.crown.bounds, self.bounds_graph) if proof.crown is not None else 0
        self.stats["bab_mode"] = mode
        if mode == "relu" and proof.crown is not None and not first and unstable <= self.config.milp_max_unstable:
            status = self.exact_fallback(index, region, proof, deadline)
            if status is not Status.UNKNOWN:
                return status
        search = self.searches.get(index)  # the first slice's domains are kept for the later ones
        if search is None:
            confirm = self.confirmer(index, region)
            if mode == "input":
                search = InputSplitSearch(self.bounds_graph, self.attack_graph, region, proof.open, proof.lower,
                                          proof.upper, confirm, self.config.input_split)
            elif mode == "relu" and proof.crown is not None:
                search = ReluSplitSearch(self.bounds_graph, self.attack_graph, region, proof.open, proof.crown,
                                         confirm, self.config.relu_split)
            else:
                return Status.UNKNOWN
            self.searches[index] = search
        outcome = search.run(deadline)
        totals = self.stats.setdefault("bab", {})
        for key, value in outcome.stats.as_dict().items():
            additive = key not in _LATEST_STATS
            totals[key] = totals.get(key, 0) + value if additive else value
        return Status(outcome.status)

    def exact_fallback(self, index: int, region: Region, proof: RegionProof, deadline: Deadline) -> Status:
        """MILP on a region with few unstable neurons (a small mixed-integer program): SAT
        (confirmed by onnxruntime), UNSAT, or UNKNOWN (undecided in time, or not encodable)."""
        from verifier.exact import ExactUnsupported, MilpConfig, milp_check

        assert proof.crown is not None
        try:
            outcome = milp_check(proof.crown.table, proof.open, MilpConfig(time_limit=deadline.remaining()), deadline)
        except ExactUnsupported as exc:
            self.stats["exact_error"] = str(exc)
            return Status.UNKNOWN
        self.stats.setdefault("exact", []).append(outcome.stats)
        if outcome.status == "sat" and outcome.x is not None and self.confirmer(index, region)(outcome.x):
            return Status.SAT
        return Status.UNSAT if outcome.status == "unsat" else Status.UNKNOWN

    def decide_exactly(self, method: str) -> Status:
        """``--method milp|smt``: per region, intervals and CROWN, then the exact engine on the
        clauses left open; a candidate counts only once onnxruntime confirms it."""
        from verifier.exact import ExactUnsupported, MilpConfig, SmtConfig, milp_check, smt_check

        status = Status.UNSAT
        for index, region in enumerate(self.problem.spec.regions):
            if self.deadline.expired():
                return Status.TIMEOUT
            proof = RegionProof(self.bounds_graph, region)
            if proof.proven:
                self.stats["regions_proven"] += 1
                continue
            if proof.crown is None:
                self.stats["exact_error"] = "the exact engines need one graph input and a clause with rows"
                status = Status.UNKNOWN
                continue
            limit = max(0.0, self.deadline.remaining())
            try:
                if method == "milp":
                    outcome = milp_check(proof.crown.table, proof.open, MilpConfig(time_limit=min(limit, 1e6)), self.deadline)
                else:
                    outcome = smt_check(proof.crown.table, proof.open, SmtConfig(time_limit=min(limit, 1e6)), self.deadline)
            except ExactUnsupported as exc:
                self.stats["exact_error"] = str(exc)
                status = Status.UNKNOWN
                continue
            self.stats.setdefault("exact", []).append(outcome.stats)
            if outcome.status == "sat" and outcome.x is not None and self.confirmer(index, region)(outcome.x):
                return Status.SAT
            if outcome.status == "unsat":
                self.stats["regions_proven"] += 1
            else:
                status = Status.TIMEOUT if self.deadline.expired() else Status.UNKNOWN
        return status

    def bab_step(self, index: int, region: Region, proof: RegionProof, first: bool) -> Status:
        """Branch and bound in two parts: a first slice (at least a few seconds, or a share of
        the time left), so that the later attack rounds, which find counterexamples hidden in
        tiny pockets, keep time; then, after them, the rest of the time, resuming the first
        slice's search where it stopped. A search that gave up (UNKNOWN) is not repeated; a
        slice that ran out is reported as UNKNOWN."""
        if index in self.bab_exhausted:
            return Status.UNKNOWN
        deadline = self.deadline
        if first:
            share = _FIRST_BAB_SHARE_RELU if self.bab_mode(proof) == "relu" else _FIRST_BAB_SHARE
            deadline = deadline.sooner(max(_FIRST_BAB_SECONDS, share * deadline.remaining()))
        status = self.branch_and_bound(index, region, proof, deadline, first)
        if status is Status.UNKNOWN:
            self.bab_exhausted.add(index)
        if status is Status.TIMEOUT and first and not self.deadline.expired():
            return Status.UNKNOWN
        return status

    def steps(self) -> tuple[str, ...]:
        """The pipeline's steps: see :meth:`decide`."""
        if self.config.method == "sdp":
            return ("bounds", "quick attack", "alpha", "sdp", "attack")
        if self.config.sdp_before_bab:
            return ("bounds", "quick attack", "alpha", "sdp", "first bab", "attack", "bab")
        return ("bounds", "quick attack", "alpha", "first bab", "attack", "bab")

    def bound_step(self, step: str, proof: RegionProof) -> bool:
        """One certified-bound step on a region (``bounds``: already done when the proof was
        made; ``alpha``: alpha-CROWN for :meth:`alpha_seconds`; ``sdp``: the low-rank SDP on
        the clauses still open, for the rest of the time with ``--method sdp``, else for
        :data:`_SDP_SHARE` of it); True when the region is proven."""
        if proof.proven or step == "bounds":
            return proof.proven
        if step == "alpha":
            return proof.optimise(self.deadline.sooner(self.alpha_seconds(proof)))
        deadline = self.deadline if self.config.method == "sdp" else \
            self.deadline.sooner(_SDP_SHARE * self.deadline.remaining())
        return proof.sdp(self.config.sdp, deadline, self.config.seed, self.stats)

    def decide(self) -> Status:
        """The pipeline, cheapest steps first: intervals and CROWN, a quick attack, alpha-CROWN
        (a time budget per region), a first slice of branch and bound, the remaining attack
        rounds, then branch and bound for the rest of the time, on the regions still open.

        With ``sdp_before_bab`` the low-rank SDP bound runs on the clauses alpha-CROWN left
        open before the branch and bound starts; ``--method sdp`` stops after the SDP and the
        remaining attack rounds (an incomplete method: ``unknown`` when neither decides)."""
        regions = self.problem.spec.regions
        quick = replace(self.config.attack, rounds=min(self.config.attack.rounds, _QUICK_ROUNDS))
        open_regions = list(range(len(regions)))
        proofs: dict[int, RegionProof] = {}
        for step in self.steps():
            still_open: list[int] = []
            for index in open_regions:
                if self.deadline.expired():
                    return Status.TIMEOUT
                region = regions[index]
                if step == "bounds":
                    proofs[index] = RegionProof(self.bounds_graph, region)
                if step in ("first bab", "bab"):
                    status = self.bab_step(index, region, proofs[index], first=step == "first bab")
                    if status in (Status.SAT, Status.TIMEOUT):
                        return status
                    if status is Status.UNSAT:
                        self.stats["regions_proven"] += 1
                        continue
                elif step in ("bounds", "alpha", "sdp"):
                    if self.bound_step(step, proofs[index]):
                        self.stats["regions_proven"] += 1
                        continue
                elif self.falsify(index, region, quick if step == "quick attack" else self.config.attack,
                                  first_round=0 if step == "quick attack" else quick.rounds):
                    return Status.SAT
                still_open.append(index)
            open_regions = still_open
            if not open_regions:
                return Status.UNSAT
        return Status.TIMEOUT if self.deadline.expired() else Status.UNKNOWN


def settled_problem(problem: Problem, tgraph: TorchGraph) -> Problem:
    """The problem with every region's rounded-coefficient rows settled on its proof box
    (:mod:`verifier.bounds.settle`), so that every later step may use them."""
    if not any(r.unsettled for r in problem.spec.regions):
        return problem
    device = tgraph.place.device
    regions = tuple(settle_region(tgraph, r, *proof_box(problem.graph, r, device)) for r in problem.spec.regions)
    return replace(problem, spec=replace(problem.spec, regions=regions))


def numerical_hygiene(seed: int) -> None:
    """Set once per run: seeds, and no TF32 (its 10-bit mantissa would void the float-error
    bounds of float32 bound computation on GPUs)."""
    torch.manual_seed(seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def verify_problem(problem: Problem, timeout: float | None = None, config: VerifierConfig | None = None,
                   ops: Mapping[str, Op] | None = None) -> Result:
    """Verifies an already loaded problem; see :func:`verify`. ``ops`` replaces the registry's
    op for some op types in every analysis of this run (experiments, and the soundness
    checker's deliberately faulty builds: :mod:`verifier.soundness.faults`); the answers are
    only as sound as the replacements."""
    start = time.monotonic()
    config = config or VerifierConfig()
    deadline = Deadline.after(timeout)
    numerical_hygiene(config.seed)
    run = _Run(problem, config, deadline, ops)
    status = run.decide() if config.method in ("auto", "sdp") else run.decide_exactly(config.method)
    if status is Status.UNSAT and problem.composition is not None and problem.composition.truncated:
        status = Status.UNKNOWN  # proven on a finite part of an unbounded input space only
        run.stats["unbounded_inputs"] = True
    if status is Status.SAT:
        return Result(status, time.monotonic() - start, run.found, run.stats)
    return Result(status, time.monotonic() - start, None, run.stats)


def verify(model: str | Path, spec: str | Path, timeout: float | None = None,
           config: VerifierConfig | None = None) -> Result:
    """Decides whether some input in the property's region violates it.

    Args:
        model: path of the ONNX model.
        spec: path of the VNN-LIB property (it states the violation).
        timeout: wall-clock limit in seconds (None: no limit).
        config: device, precision and budgets; defaults to :class:`VerifierConfig()`.

    Returns:
        a :class:`Result`; ``sat`` carries a counterexample re-checked with onnxruntime,
        ``unsat`` is only returned with a proof valid for the float model.

    Raises:
        InputError: (ModelError, SpecError, MismatchError) for bad or mismatched input.
    """
    start = time.monotonic()
    problem = load_problem(model, spec)
    remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
    result = verify_problem(problem, remaining, config)
    return Result(result.status, time.monotonic() - start, result.counterexample, result.stats)
