"""The verification pipeline: ``verify(model, spec) -> Result``.

1. load the model and the property (bad input raises an InputError subclass);
2. for each input region: falsify quickly (sampling, then PGD; every hit re-checked by
   onnxruntime on the original file) and try to refute every clause with interval bounds;
3. ``sat`` as soon as one region has a confirmed counterexample; ``unsat`` when every clause of
   every region is refuted; otherwise ``unknown`` (or ``timeout`` if time ran out first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verifier.attack import AttackProgress, falsify_region
from verifier.bab import InputSplitSearch, ReluSplitSearch
from verifier.bab.neuron_split import Candidates, NeuronSplitSearch, smooth_layers
from verifier.bab.relu_split import count_unstable, splittable_layers
from verifier.bounds.crown import refines_every_position
from verifier.bounds.settle import settled_problem
from verifier.certificate.claims import RootRecord
from verifier.certificate.writer import ProvenBy, Recorder
from verifier.config import (
    AttackConfig,
    BabMode,
    CrownConfig,
    InputBranching,
    IntermediateMethod,
    Method,
    StepBudget,
    VerifierConfig,
)
from verifier.deadline import Deadline, DeadlineExceeded
from verifier.graph.torch_graph import TorchGraph
from verifier.graph.torch_graph import numerical_hygiene as numerical_hygiene  # re-exported: the CLI uses it here
from verifier.ops.base import Op
from verifier.pipeline import Step, pipeline, proven_by
from verifier.problem import Problem, load_problem
from verifier.progress import Progress, ProgressEvent
from verifier.region_proof import RegionProof as RegionProof  # re-exported: the tests and tools use it here
from verifier.region_proof import region_refuted as region_refuted
from verifier.result import Counterexample, Result, Status
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness

_LATEST_STATS = frozenset({"batch", "lowest_open_bound", "lowest_bound"})  # search statistics that are not summed


class _Run:
    """One verification run: the problem, the bound models, the oracle and the statistics."""

    def __init__(self, problem: Problem, config: VerifierConfig, deadline: Deadline,
                 ops: Mapping[str, Op] | None = None, reporter: Progress | None = None, certify: bool = False) -> None:
        dev = config.device
        self.reporter = reporter
        self.config, self.schedule, self.deadline = config, config.schedule, deadline
        self.attack_graph = TorchGraph(problem.graph, dev.torch_device, dev.attack_torch_dtype, ops,
                                       straight_through=True)  # gradients through Sign, Floor... (attacks only)
        self.bounds_graph = TorchGraph(problem.graph, dev.torch_device, dev.bounds_torch_dtype, ops)
        self.problem = settled_problem(problem, self.bounds_graph)
        self.oracle = OnnxOracle(problem.oracle_model)
        self.stats: dict[str, Any] = {"regions": len(problem.spec.regions), "regions_proven": 0,
                                      "attack_evaluations": 0, "pgd_steps": 0, "candidates_checked": 0,
                                      "seconds": {}}
        self.found: Counterexample | None = None
        self.proofs: dict[int, RegionProof] = {}
        self.bab_exhausted: set[int] = set()  # regions whose branch and bound gave up
        self.tightened: set[int] = set()  # regions proven at the root from bounds tightened by search
        self.searches: dict[int, InputSplitSearch | ReluSplitSearch | NeuronSplitSearch] = {}  # per region, resumed
        self.streams: dict[int, torch.Generator] = {}
        self.searched: dict[int, float] = {}  # seconds of branch and bound per region so far
        self.progress: dict[int, AttackProgress] = {}  # per region, where a later attack resumes
        self.nested = 0.0  # seconds of steps run inside another step (recorded under their own name)
        self.recorder = Recorder(self.problem.spec.regions) if certify else None  # the proof certificate's

    def decide(self) -> Status:
        """Runs the :func:`pipeline`'s steps one after another on the regions still open: SAT
        as soon as one region has a confirmed counterexample, UNSAT once every region is
        proven, else TIMEOUT or UNKNOWN at the end. A TIMEOUT names the step that met the
        deadline in ``stats["stopped_in"]``."""
        open_regions = list(range(len(self.problem.spec.regions)))
        for step in pipeline(self.config):
            still_open: list[int] = []
            for index in open_regions:
                if self.deadline.expired():
                    self.stats["stopped_in"] = step.value
                    return Status.TIMEOUT
                if self.reporter is not None:
                    self.reporter.show(ProgressEvent(step.value))
                began, nested = time.monotonic(), self.nested
                try:
                    status = self.run_step(step, index, self.problem.spec.regions[index])
                except DeadlineExceeded:  # a stage stopped inside a bound pass: the run is over
                    status = Status.TIMEOUT
                self.record_seconds(step, time.monotonic() - began - (self.nested - nested))
                if status is Status.TIMEOUT:
                    self.stats["stopped_in"] = step.value
                if status in (Status.SAT, Status.TIMEOUT):
                    return status
                if status is Status.UNSAT:
                    self.stats["regions_proven"] += 1
                    self.note_proof(step, index)
                else:
                    still_open.append(index)
            open_regions = still_open
            if not open_regions:
                return Status.UNSAT
        if self.deadline.expired():
            self.stats["stopped_in"] = "end"
            return Status.TIMEOUT
        return Status.UNKNOWN

    def note_proof(self, step: Step, index: int) -> None:
        """Tells the certificate's recorder how region ``index`` was proven (in ``step``)."""
        if self.recorder is None:
            return
        how = proven_by(step, self.searches.get(index), index in self.tightened)
        if how in (ProvenBy.ROOT_ALPHA, ProvenBy.RELU_SPLIT):
            self.recorder.root_proof(index, self.proofs[index].root_proof())
        self.recorder.proven(index, how)

    def record_seconds(self, step: Step, seconds: float) -> None:
        """Adds ``seconds`` to the step's entry of ``stats["seconds"]``."""
        record = self.stats["seconds"]
        record[step.value] = round(record.get(step.value, 0.0) + seconds, 6)

    def run_step(self, step: Step, index: int, region: Region) -> Status:
        """One step on one region: SAT (confirmed), UNSAT (region proven), TIMEOUT (the whole
        run must stop) or UNKNOWN (still open)."""
        if step is Step.BOUNDS:
            self.proofs[index] = RegionProof(self.bounds_graph, region, self.root_crown(), self.config.alpha,
                                             self.deadline, defer_crown=True)
            self.proofs[index].record = None if self.recorder is None else RootRecord()
        proof = self.proofs[index]
        if step in (Step.BOUNDS, Step.CROWN, Step.ALPHA, Step.SDP):
            proven = self.bound_step(step, proof)
            if step is Step.CROWN and self.recorder is not None:
                self.recorder.crown_done(index, proof.open)
            return Status.UNSAT if proven else Status.UNKNOWN
        if step in (Step.PROBE_ATTACK, Step.QUICK_ATTACK, Step.ATTACK):
            return Status.SAT if self.falsify(index, region, step) else Status.UNKNOWN
        if step is Step.EXACT:
            return self.exact(index, region, proof, self.deadline, self.config.method)
        return self.search_step(index, region, proof, first=step is Step.FIRST_SEARCH)

    # ---------------------------------------------------------------- bounds
    def root_crown(self) -> CrownConfig:
        """The CROWN options of a region's first bounds: the configured ones, with the
        refinement limited to ``schedule.refine_share`` of the time left."""
        left = self.deadline.remaining()
        if not math.isfinite(left):
            return self.config.crown
        return replace(self.config.crown, refine_seconds=self.config.schedule.refine_share * left)

    def bound_step(self, step: Step, proof: RegionProof) -> bool:
        """A certified-bound step (``BOUNDS``: done when the proof was made; ``ALPHA``:
        alpha-CROWN for :meth:`alpha_seconds`; ``SDP``: the low-rank SDP on the clauses still
        open, for the rest of the time with ``--method sdp``, else ``schedule.sdp_share`` of
        it); True when the region is proven."""
        if proof.proven or step is Step.BOUNDS:
            return proof.proven
        if step is Step.CROWN:
            return proof.climb_crown()
        if step is Step.ALPHA:
            seconds = self.alpha_seconds(proof)
            return seconds > 0 and proof.optimise(self.deadline.sooner(seconds), self.budget(proof), self.stats)
        deadline = self.deadline if self.config.method is Method.SDP else \
            self.deadline.sooner(self.schedule.sdp_share * self.deadline.remaining())
        return proof.sdp(self.config.sdp, deadline, self.config.seed, self.stats)

    def budget(self, proof: RegionProof) -> StepBudget:
        """The step budgets of a region (:meth:`ScheduleConfig.budget`): by input splitting when
        the full pipeline searches it so, else by the network's ReLU-like and smooth neurons."""
        searched_by_input = self.config.method is Method.AUTO and self.bab_mode(proof) is BabMode.INPUT
        graph = self.bounds_graph
        return self.schedule.budget(searched_by_input, bool(splittable_layers(graph)), refines_every_position(graph))

    def alpha_seconds(self, proof: RegionProof) -> float:
        """alpha-CROWN time for a region: its budget's ``alpha_seconds``, or its share of the
        time left when that is more (the root domain of ReLU splitting keeps the intermediate
        bounds alpha-CROWN tightens)."""
        budget = self.budget(proof)
        return max(budget.alpha_seconds, budget.alpha_share * self.deadline.remaining())

    # ---------------------------------------------------------------- attacks
    def confirmer(self, index: int, region: Region) -> Callable[[np.ndarray], bool]:
        """The onnxruntime re-check of a candidate in region ``index``; records a confirmed one."""
        def confirm(x: np.ndarray) -> bool:
            check = check_witness(self.oracle, region, x)
            if check.valid and check.x is not None and check.y is not None and check.clause is not None:
                self.found = Counterexample(check.x, check.y, index, check.clause)
            return check.valid

        return confirm

    def falsify(self, index: int, region: Region, step: Step, seconds: float | None = None) -> bool:
        """The attack rounds of ``step`` on one region, from the first one not completed: the
        probe's first round, the quick attack's first rounds, or the rest of them (``ATTACK``;
        for at most ``seconds`` when given), first from the corners of the region's linear
        bounds computed since the last attack; records a confirmed counterexample."""
        budget = self.budget(self.proofs[index])
        quick = step is not Step.ATTACK
        rounds = min(self.config.attack.rounds, 1 if step is Step.PROBE_ATTACK else budget.quick_rounds)
        steps = self.config.attack.steps if budget.quick_steps is None else budget.quick_steps
        if step is Step.PROBE_ATTACK:
            steps = min(steps, self.schedule.probe_steps)
        attack = replace(self.config.attack, rounds=rounds, steps=steps) if quick else self.later_attack(index, seconds)
        if index not in self.streams:  # one random stream per region, continued across calls
            self.streams[index] = torch.Generator().manual_seed(self.config.seed * 1000003 + index)
        progress = self.progress.setdefault(index, AttackProgress(round=0 if quick else rounds))
        guides = self.proofs[index].take_guides()  # the corners of the bounds since the last attack
        _, stats = falsify_region(self.attack_graph, region, attack, self.deadline, self.confirmer(index, region),
                                  self.streams[index], progress, guides)
        self.stats["attack_evaluations"] += stats.evaluated
        self.stats["pgd_steps"] += stats.pgd_steps
        self.stats["candidates_checked"] += stats.candidates_checked
        return self.found is not None

    def later_attack(self, index: int, seconds: float | None = None) -> AttackConfig:
        """The attack budget after the first search slice: the configured one, its time limit
        capped at ``seconds`` or, by default, ``attack_per_search`` times the seconds that
        slice searched."""
        per_search = self.budget(self.proofs[index]).attack_per_search
        if per_search is None:
            return self.config.attack
        if seconds is None:
            seconds = per_search * self.searched.get(index, 0.0)
        return replace(self.config.attack, time_limit=min(self.config.attack.time_limit, seconds))

    # ---------------------------------------------------------------- search
    def bab_mode(self, proof: RegionProof) -> BabMode:
        """The branch-and-bound mode for a region: the configured one, or for ``auto`` input
        splitting on few free input dimensions and ReLU splitting otherwise. A dimension
        narrower than ``input_split_min_width`` times the widest is not counted (a fixed pixel
        written as an interval one rounding step wide)."""
        if self.config.bab is not BabMode.AUTO:
            return self.config.bab
        width = (proof.upper - proof.lower).reshape(-1)
        widest = float(width.max()) if width.numel() else 0.0
        dims = int((width > self.config.input_split_min_width * widest).sum())
        return BabMode.INPUT if dims <= self.config.input_split_max_dims else BabMode.RELU

    def search_step(self, index: int, region: Region, proof: RegionProof, first: bool) -> Status:
        """Branch and bound in two parts: a first slice (at least a few seconds, or a share of
        the time left), so that the later attack rounds keep time; then, after them, the rest
        of the time, resuming the first slice's search. A search that gave up (UNKNOWN) is not
        repeated; a first slice that ran out is UNKNOWN (the run goes on)."""
        if index in self.bab_exhausted:
            return Status.UNKNOWN
        deadline = self.deadline
        budget = self.budget(proof)
        if first:
            share = budget.first_search_share * deadline.remaining()
            deadline = deadline.sooner(max(budget.first_search_seconds, share))
        elif budget.attack_per_search is not None:
            return self.interleaved_search(index, region, proof, budget.attack_per_search)
        return self.timed_search(index, region, proof, deadline, first)

    def interleaved_search(self, index: int, region: Region, proof: RegionProof, per_search: float) -> Status:
        """The rest of the search in slices that double (the first as long as the search so
        far), each followed, while attack rounds remain, by attack rounds for at most
        ``per_search`` times its seconds (recorded as attack time)."""
        slice_seconds = max(self.searched.get(index, 0.0), 1.0)
        while True:
            status = self.timed_search(index, region, proof, self.deadline.sooner(slice_seconds), False)
            if status is not Status.UNKNOWN or self.deadline.expired() or index in self.bab_exhausted:
                return Status.TIMEOUT if self.deadline.expired() and status is Status.UNKNOWN else status
            progress = self.progress.get(index)
            if progress is None or progress.round < self.config.attack.rounds:
                began = time.monotonic()
                found = self.falsify(index, region, Step.ATTACK, seconds=per_search * slice_seconds)
                self.nested += time.monotonic() - began
                self.record_seconds(Step.ATTACK, time.monotonic() - began)
                if found:
                    return Status.SAT
            slice_seconds *= 2

    def timed_search(self, index: int, region: Region, proof: RegionProof, deadline: Deadline, first: bool) -> Status:
        """Branch and bound until ``deadline``, its time added to :attr:`searched`; a search
        that gave up is not repeated; a slice shorter than the run that ran out is UNKNOWN
        (the run goes on). A search given the run's deadline that stopped short of it (its
        next round would have overrun) is TIMEOUT: out of time, not out of ideas."""
        began = time.monotonic()
        status = self.branch_and_bound(index, region, proof, deadline, first)
        self.searched[index] = self.searched.get(index, 0.0) + time.monotonic() - began
        if status is Status.UNKNOWN:
            self.bab_exhausted.add(index)
        if status is Status.TIMEOUT and deadline.earlier_than(self.deadline) and not self.deadline.expired():
            return Status.UNKNOWN
        return status

    def branch_and_bound(self, index: int, region: Region, proof: RegionProof, deadline: Deadline,
                         first: bool = True) -> Status:
        """Branch and bound on one region's open clauses (the mode the configuration picks)
        until ``deadline``; UNKNOWN when no mode applies or the search gives up. In ReLU-split
        mode, a region with few unstable neurons whose first slice of search did not decide it
        goes to the MILP engine instead (and back to the search if MILP cannot decide)."""
        mode = self.bab_mode(proof)
        unstable = count_unstable(proof.crown.bounds, self.bounds_graph) if proof.crown is not None else 0
        self.stats["bab_mode"] = mode.value
        if mode is BabMode.RELU and proof.crown is not None and not first and unstable <= self.config.milp_max_unstable:
            status = self.exact(index, region, proof, deadline, Method.MILP)
            if status is not Status.UNKNOWN:
                return status
        if mode is BabMode.RELU and index not in self.searches and self.tighten(index, region, proof, deadline):
            return Status.UNSAT
        search = self.searches.get(index) or self.new_search(mode, index, region, proof, self.confirmer(index, region))
        if search is None:
            return Status.UNKNOWN if mode is BabMode.NONE else self.exact_fallback(index, region, proof, deadline)
        self.searches[index] = search  # the first slice's domains are kept for the later ones
        status = self.run_search(search, deadline)
        if status is Status.UNKNOWN and isinstance(search, ReluSplitSearch):  # ReLU splits ran out
            mixed = self.neuron_search(region, proof, self.confirmer(index, region))
            if mixed is not None:  # smooth neurons too: split both kinds (from the root)
                self.stats["bab_bounds"] = "relu split, then neuron split"
                self.stats.pop("search_exhausted", None)
                self.searches[index] = mixed
                status = self.run_search(mixed, deadline)
        return status

    def run_search(self, search: InputSplitSearch | ReluSplitSearch | NeuronSplitSearch, deadline: Deadline
                   ) -> Status:
        """Runs (or resumes) ``search`` until ``deadline``, adding its statistics to the run's."""
        outcome = search.run(deadline)
        totals = self.stats.setdefault("bab", {})
        for key, value in outcome.stats.as_dict().items():
            additive = key not in _LATEST_STATS
            totals[key] = totals.get(key, 0) + value if additive else value
        if outcome.status is Status.UNKNOWN:  # the search ran out of domains to split, undecided
            self.stats["search_exhausted"] = True
        return outcome.status

    def tighten(self, index: int, region: Region, proof: RegionProof, deadline: Deadline) -> bool:
        """Before a region's ReLU-split search, on deep networks: tighter intermediate bounds by
        search on the cut network (:mod:`verifier.bab.tighten`, at most ``tighten.time_share``
        of the time left), then CROWN and alpha-CROWN again from them; True when that proves
        the region (the search then starts from the tightened root)."""
        config = self.config.tighten
        if proof.crown is None or config.layers <= 0 or len(splittable_layers(self.bounds_graph)) < config.min_layers:
            return False
        from verifier.bab.tighten import tighten_bounds

        limit = deadline.sooner(config.time_share * deadline.remaining())
        proof.close_stage()  # the tightened bounds are a stage of their own in a certificate
        bounds, stats = tighten_bounds(self.bounds_graph, proof.crown, limit, config, proof.tighten_crown,
                                       proof.record)
        self.stats.setdefault("tighten", []).append(stats.as_dict())
        if not stats.layers:
            return False
        began = time.monotonic()
        proven = proof.tighten(bounds, deadline.sooner(self.alpha_seconds(proof)))
        self.stats["tighten"][-1]["alpha_seconds"] = time.monotonic() - began
        if proven:
            self.tightened.add(index)
        return proven

    def new_search(self, mode: BabMode, index: int, region: Region, proof: RegionProof,
                   confirm: Callable[[np.ndarray], bool]
                   ) -> InputSplitSearch | ReluSplitSearch | NeuronSplitSearch | None:
        """The branch-and-bound search of ``mode`` on region ``index``'s open clauses (None: none
        applies).
        Input splitting bounds its boxes in forward mode when the region's first CROWN bounds
        ran out of their time share (a backward pass per box would cost as much again), and in
        forward mode with smear branching when backward refinement would pass through every
        position of some relaxed op in every box (``InputSplitConfig.forward_when_refined_everywhere``).
        ReLU splitting on a network without ReLU-like neurons splits its Sigmoid, Tanh... neurons
        instead (:mod:`verifier.bab.neuron_split`; on a network with both, that search takes
        over when the ReLU splits run out: :meth:`branch_and_bound`)."""
        if mode is BabMode.INPUT:
            config = self.config.input_split
            forward = IntermediateMethod.FORWARD
            if config.forward_when_refined_everywhere and refines_every_position(self.bounds_graph):
                config = replace(config, intermediate_method=forward, scoring_method=forward,
                                 branching=InputBranching.SMEAR)
                self.stats["bab_bounds"] = "forward, smear"
            elif proof.crown is not None and proof.crown.refinement_cut:
                config = replace(config, intermediate_method=forward, scoring_method=forward)
                self.stats["bab_bounds"] = "forward"
            log = None
            if self.recorder is not None:  # clipped boxes are not certified (checkers rebuild other lines)
                log = self.recorder.log_for(index, proof.open, int(proof.lower.numel()))
                config = replace(config, clip_domains=False)
            return InputSplitSearch(self.bounds_graph, self.attack_graph, region, proof.open, proof.lower,
                                    proof.upper, confirm, config, self.reporter, log)
        if mode is not BabMode.RELU or proof.crown is None:
            return None
        if splittable_layers(self.bounds_graph):
            logs = None if self.recorder is None else partial(self.recorder.clause_log, index)
            return ReluSplitSearch(self.bounds_graph, self.attack_graph, region, proof.open, proof.crown,
                                   confirm, self.config.relu_split, self.reporter, logs)
        return self.neuron_search(region, proof, confirm)

    def neuron_search(self, region: Region, proof: RegionProof, confirm: Callable[[np.ndarray], bool]
                      ) -> NeuronSplitSearch | None:
        """The search splitting Sigmoid, Tanh... and ReLU-like neurons (None: no smooth neuron)."""
        if proof.crown is None or not smooth_layers(self.bounds_graph):
            return None
        self.stats["bab_bounds"] = "neuron split"
        return NeuronSplitSearch(self.bounds_graph, proof.lower, proof.upper, proof.open, proof.crown,
                                 self.config.neuron_split, Candidates(self.attack_graph, region, confirm))

    # ---------------------------------------------------------------- exact
    def exact_fallback(self, index: int, region: Region, proof: RegionProof, deadline: Deadline) -> Status:
        """Where no search mode applies (``--bab`` not ``none``, but no ReLU-like nor smooth
        neuron to split, e.g. a Sign network, and input splitting not chosen): the MILP engine on the open clauses until
        ``deadline``. Cut by that deadline it is TIMEOUT (a later, longer slice runs it again);
        a network it cannot encode is UNKNOWN (``stats["exact_error"]`` says why)."""
        status = self.exact(index, region, proof, deadline, Method.MILP)
        if status is Status.UNKNOWN and "exact_error" not in self.stats and deadline.expired():
            return Status.TIMEOUT
        return status

    def exact(self, index: int, region: Region, proof: RegionProof, deadline: Deadline, method: Method) -> Status:
        """The exact engine (``milp`` or ``smt``) on the region's open clauses until ``deadline``:
        SAT (confirmed by onnxruntime), UNSAT, or UNKNOWN (undecided in time, not encodable)."""
        from verifier.exact import ExactUnsupported, exact_check

        if proof.crown is None:
            self.stats["exact_error"] = "the exact engines need one graph input and a clause with rows"
            return Status.UNKNOWN
        try:
            engine = self.config.milp if method is Method.MILP else self.config.smt
            outcome = exact_check(proof.crown.table, proof.open, engine, deadline)
        except ExactUnsupported as exc:
            self.stats["exact_error"] = str(exc)
            return Status.UNKNOWN
        self.stats.setdefault("exact", []).append(outcome.stats)
        if outcome.status is Status.SAT and outcome.x is not None and self.confirmer(index, region)(outcome.x):
            return Status.SAT
        return Status.UNSAT if outcome.status is Status.UNSAT else Status.UNKNOWN


def verify_problem(problem: Problem, timeout: float | None = None, config: VerifierConfig | None = None,
                   ops: Mapping[str, Op] | None = None, progress: Progress | None = None,
                   certificate: tuple[Path, Path] | None = None) -> Result:
    """Verifies an already loaded problem; see :func:`verify`. ``ops`` replaces the registry's
    op for some op types in every analysis of this run (experiments, and the soundness
    checker's deliberately faulty builds: :mod:`verifier.soundness.faults`); the answers are
    only as sound as the replacements. ``progress`` receives the steps entered and the search
    rounds' state (``verify --progress``). ``certificate``: (the file to write, the property
    file) for an ``unsat`` answer's proof certificate (:mod:`verifier.certificate`;
    ``stats["certificate"]`` describes it)."""
    start = time.monotonic()
    config = config or VerifierConfig()
    config = config if certificate is None else config.for_certificates()
    deadline = Deadline.after(timeout)
    numerical_hygiene(config.seed)
    run = _Run(problem, config, deadline, ops, progress, certify=certificate is not None)
    run.stats["seconds"]["setup"] = round(time.monotonic() - start, 6)
    status = run.decide()
    if status is Status.UNSAT and problem.composition is not None and problem.composition.truncated:
        status = Status.UNKNOWN  # proven on a finite part of an unbounded input space only
        run.stats["unbounded_inputs"] = True
    if status is Status.UNSAT and certificate is not None and run.recorder is not None:
        run.stats["certificate"] = run.recorder.write(certificate[0], problem.model_path, certificate[1],
                                                          problem.unchecked_op())
    if status is Status.SAT:
        return Result(status, time.monotonic() - start, run.found, run.stats)
    return Result(status, time.monotonic() - start, None, run.stats)


def verify(model: str | Path, spec: str | Path, timeout: float | None = None,
           config: VerifierConfig | None = None, certificate: str | Path | None = None) -> Result:
    """Decides whether some input in the property's region violates it.

    Args:
        model: path of the ONNX model.
        spec: path of the VNN-LIB property (it states the violation).
        timeout: wall-clock limit in seconds (None: no limit).
        config: device, precision and budgets; defaults to :class:`VerifierConfig()`.
        certificate: where to write the proof certificate of an ``unsat`` answer (None: none).

    Returns:
        a :class:`Result`; ``sat`` carries a counterexample re-checked with onnxruntime,
        ``unsat`` is only returned with a proof valid for the float model.

    Raises:
        InputError: (ModelError, SpecError, MismatchError) for bad or mismatched input.
    """
    start = time.monotonic()
    problem = load_problem(model, spec)
    remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
    result = verify_problem(problem, remaining, config,
                            certificate=None if certificate is None else (Path(certificate), Path(spec)))
    return Result(result.status, time.monotonic() - start, result.counterexample, result.stats)
