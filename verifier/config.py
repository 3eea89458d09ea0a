"""Configuration: frozen dataclasses per concern, composed into :class:`VerifierConfig`.

Configurations are passed explicitly; presets are functions returning new objects. Nothing
here is global or mutated during a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # torch is imported where a device or dtype is asked for: the command line
    import torch  # reads this module (its choices) before any costly import

Dtype = Literal["float32", "float64"]
BabMode = Literal["auto", "input", "relu", "none"]
"""Branch and bound after the incomplete methods (see :attr:`VerifierConfig.bab`)."""
Method = Literal["auto", "milp", "smt", "sdp"]
"""What a run does (see :attr:`VerifierConfig.method`)."""
ReluMode = Literal["adaptive", "zero", "one"]
"""Lower slope of unstable ReLU-family neurons: CROWN's area-minimising choice, 0 or 1."""
InputBranching = Literal["strong", "smear"]
IntermediateMethod = Literal["backward", "forward"]
"""How CROWN bounds the inputs of relaxed nodes: backward passes per unstable neuron, or
forward-mode linear forms over the graph input (:mod:`verifier.bounds.forward`)."""
ReluBranching = Literal["fsb", "babsr"]
MilpSolver = Literal["highs", "cbc"]
BoundMethod = Literal["ibp", "crown", "alpha-crown", "sdp"]
"""The bound methods of ``verify bounds``."""

BAB_MODES: tuple[str, ...] = get_args(BabMode)
METHODS: tuple[str, ...] = get_args(Method)
BOUND_METHODS: tuple[str, ...] = get_args(BoundMethod)
MILP_SOLVERS: tuple[str, ...] = get_args(MilpSolver)


def _check(value: str, mode: object, what: str) -> None:
    """Raises ValueError when ``value`` is not one of the Literal ``mode``'s choices."""
    if value not in get_args(mode):
        raise ValueError(f"unknown {what} {value!r}; use one of {get_args(mode)}")


def _torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


@dataclass(frozen=True)
class DeviceConfig:
    """Where tensors live and in which precision each stage computes.

    Attributes:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        attack_dtype: precision of falsification (the model's own precision is usual).
        bounds_dtype: precision of bound computation; float64 keeps rounding of the bound
            arithmetic far below the float32 evaluation error that the bounds must cover.
    """

    device: str = "cpu"
    attack_dtype: Dtype = "float32"
    bounds_dtype: Dtype = "float64"

    def __post_init__(self) -> None:
        for name in (self.attack_dtype, self.bounds_dtype):
            _check(name, Dtype, "dtype")

    @property
    def torch_device(self) -> torch.device:
        """The device as a torch object."""
        import torch

        return torch.device(self.device)

    @property
    def attack_torch_dtype(self) -> torch.dtype:
        """The attacks' precision as a torch dtype."""
        return _torch_dtype(self.attack_dtype)

    @property
    def bounds_torch_dtype(self) -> torch.dtype:
        """The bound computation's precision as a torch dtype."""
        return _torch_dtype(self.bounds_dtype)


@dataclass(frozen=True)
class AttackConfig:
    """Falsification budget: rounds of random sampling, each followed by PGD from its best points.

    Round ``r`` draws ``samples * growth**r`` uniform points from the box (counterexamples of
    some properties live in tiny pockets that only dense sampling hits), then runs ``steps``
    steps of signed-gradient PGD from the ``restarts`` points with the smallest margin.

    Attributes:
        samples: points drawn in the first round.
        growth: factor by which each round draws more points than the previous one.
        rounds: number of rounds; the attack also stops at the deadline.
        restarts: PGD starting points per round (the best sampled points).
        steps: PGD steps per round.
        step_fraction: initial PGD step as a fraction of each input's box width; it decays
            geometrically to 1/100 of that over a round.
        max_batch: largest batch evaluated at once.
        batch_memory: bytes of activations one batch may take; the batch shrinks on large
            models to stay within it (never below 16 points).
        time_limit: seconds of falsification per region at most (large models cannot afford
            the full sampling schedule); the run's deadline applies as well.
    """

    samples: int = 4096
    growth: int = 4
    rounds: int = 5
    restarts: int = 256
    steps: int = 100
    step_fraction: float = 0.02
    max_batch: int = 65536
    batch_memory: int = 256 * 2**20
    time_limit: float = 10.0


@dataclass(frozen=True)
class InputSplitConfig:
    """Options of input-split branch and bound (:mod:`verifier.bab.input_split`).

    Attributes:
        batch: domains popped per round (each gives two children, bounded together).
        max_domains: the stack's size limit; beyond it the search gives up (``unknown``).
        pgd_every: run PGD inside the worst domains every this many rounds (0: never).
        pgd_domains: domains PGD starts in.
        pgd_steps: PGD steps per start.
        candidates_per_round: most points sent to the onnxruntime re-check per round.
        inherit_bounds: children start from their parent's intermediate bounds (CROWN then
            refines only the neurons still unstable under them: cheaper passes; with smear
            branching the search needed more domains on ACAS Xu, with strong branching fewer).
        per_domain_rows: CROWN refines each box's own unstable neurons, not the union over
            the batch (see :class:`verifier.bounds.crown.CrownConfig`).
        branching: how a box's split dimension is chosen: ``strong`` (both halves along every
            dimension are bounded in full and each box keeps the pair with the best summed
            hardness: ``2n`` bounds per box instead of 2, for far fewer boxes on low-dimensional
            inputs) or ``smear`` (the largest ``|a_j| * width_j`` of the hardest row's input
            coefficients; cheap, but it can keep splitting the dimensions that the linear
            bound is steep in while the looseness comes from the others).
        clip_domains: after bounding, shrink each box to the part where CROWN's linear lower
            bounds of its open clauses' rows can still be <= 0 (:mod:`verifier.bab.clip`); the
            rest of the box is refuted by those same bounds.
        intermediate_method: how CROWN bounds the intermediate values of the boxes kept
            (:data:`IntermediateMethod`).
        scoring_method: the same for the ``2n`` halves strong branching scores; when it differs
            from ``intermediate_method``, only the two halves kept per box (all of them where
            every dimension ties) are bounded again with that one. Forward-mode scoring
            costs about a third of a backward pass per half on ACAS Xu and the search needs
            about as many boxes (``benchmarks/acasxu_side_by_side.py``).
        stall_progress: a box whose hardness did not improve on its parent's by this share
            has stalled for one more generation.
        alpha_after_stall: boxes stalled this many generations are set aside and bounded
            again, in batches of ``alpha_batch``, by alpha-CROWN (``alpha_iterations`` steps
            on the output rows' slopes); their children keep the better row bounds as a
            floor (0: never). After one generation, not two: on ACAS Xu 3_3 prop_2, a
            near-violation (margin 0.0027), the search then needs 29k full bounds instead of
            65k, 64 s instead of 176 s.
        alpha_min_batch: when nothing else is queued, fewer boxes set aside than this are
            split again without alpha-CROWN: a pass costs about as much for a few boxes as for
            a full batch (small searches, such as ACAS Xu 1_1 prop_4, lost 2 s to such passes).
    """

    batch: int = 32
    max_domains: int = 2_000_000
    pgd_every: int = 10
    pgd_domains: int = 64
    pgd_steps: int = 20
    candidates_per_round: int = 4
    inherit_bounds: bool = True
    per_domain_rows: bool = True
    branching: InputBranching = "strong"
    clip_domains: bool = True
    stall_progress: float = 0.1
    alpha_after_stall: int = 1
    alpha_iterations: int = 20
    alpha_batch: int = 256
    alpha_min_batch: int = 64
    intermediate_method: IntermediateMethod = "backward"
    scoring_method: IntermediateMethod = "forward"

    def __post_init__(self) -> None:
        _check(self.branching, InputBranching, "branching")
        _check(self.scoring_method, IntermediateMethod, "intermediate bound method")
        _check(self.intermediate_method, IntermediateMethod, "intermediate bound method")


@dataclass(frozen=True)
class ReluSplitConfig:
    """Options of ReLU-split branch and bound with beta-CROWN (:mod:`verifier.bab.relu_split`).

    Attributes:
        batch: most domains popped per round (each gives two children, bounded together);
            fewer when ``batch_memory`` cannot hold them.
        batch_memory: bytes one round's bounding may use (slopes, multipliers, optimiser state
            and backward coefficients of every child); sets the batch on large networks.
        max_domains: the store's size limit; beyond it the search gives up (``unknown``).
        iterations: Adam steps on the slopes (alpha) and split multipliers (beta) per round.
        root_iterations: Adam steps on the root domain.
        learning_rate_alpha, learning_rate_beta: Adam step sizes.
        branching: ``fsb`` (filtered smart branching: the ``candidates`` best neurons by the
            BaBSR score are each tried, with one CROWN pass on both children, and the one
            whose worse child is best is split) or ``babsr`` (the best BaBSR score alone).
        candidates: neurons tried per domain by ``fsb``.
        candidates_per_round: most points sent to the onnxruntime re-check per round.
        pgd_every: run PGD from the worst domains' candidate points every this many rounds.
        pgd_steps: PGD steps per start.
        refine_intermediate: recompute the intermediate bounds of every domain with CROWN
            (starting from its stored ones, so the splits' clamps tighten later layers); else
            they only tighten through interval propagation. Off by default: on MNIST 256x4 a
            domain cost 48 ms instead of 3.3 ms, and the bound progressed less in the same time.
    """

    batch: int = 64
    batch_memory: int = 1 << 30
    max_domains: int = 200_000
    iterations: int = 20
    root_iterations: int = 60
    learning_rate_alpha: float = 0.1
    learning_rate_beta: float = 0.05
    branching: ReluBranching = "fsb"
    candidates: int = 4
    candidates_per_round: int = 4
    pgd_every: int = 10
    pgd_steps: int = 20
    refine_intermediate: bool = False

    def __post_init__(self) -> None:
        _check(self.branching, ReluBranching, "ReLU branching heuristic")


@dataclass(frozen=True)
class SdpConfig:
    """Budgets of the low-rank SDP bound (:mod:`verifier.sdp`).

    Attributes:
        rank: columns of ``V`` at the start.
        max_rank: the most columns the rank escape may add up to.
        outer_iterations: multiplier updates at most.
        inner_iterations: L-BFGS iterations per multiplier update.
        sigma, sigma_growth, sigma_max: the penalty, its growth when the largest violation
            did not shrink to a quarter, and its cap.
        polish_steps, polish_rate: Adam steps (and their size) of the dual polish.
        polish_smooth_share: the share of those steps that ascend the smooth surrogate (every
            negative eigenvalue penalised) before the certificate's own ``lambda_min`` term.
        certify_every: polish steps between certificates.
        escape_tolerance: a Lanczos eigenvalue below ``-escape_tolerance`` grows the rank.
        pgd_starts, pgd_steps: the attack that gives the starting point.
        time_limit: seconds per bound at most (the caller's deadline applies as well).
        gap_tolerance: stop once the certified bound is within this of the primal value.
    """

    rank: int = 8
    max_rank: int = 24
    outer_iterations: int = 20
    inner_iterations: int = 200
    sigma: float = 10.0
    sigma_growth: float = 2.0
    sigma_max: float = 1e5
    polish_steps: int = 3000
    polish_rate: float = 1e-2
    polish_smooth_share: float = 0.5
    certify_every: int = 250
    escape_tolerance: float = 1e-6
    pgd_starts: int = 32
    pgd_steps: int = 60
    time_limit: float = 30.0
    gap_tolerance: float = 1e-4


@dataclass(frozen=True)
class StepBudget:
    """The time of the steps before and between branch and bound, for one kind of search.

    Attributes:
        quick_rounds: sampling/PGD rounds of the quick attack, before the costlier bounds.
        quick_steps: PGD steps per round of the quick attack (None: the attack's ``steps``).
        alpha_seconds: alpha-CROWN time per region (0: no alpha-CROWN step),
        alpha_share: or this share of the time left when that is more.
        first_search_seconds: the first branch-and-bound slice runs at least this long,
        first_search_share: or this share of the time left; the remaining attack rounds
            run after it, then the search resumes.
        attack_per_search: the remaining attack rounds get at most this many seconds per
            second the first slice searched, and the rest of the search runs in slices that
            double, each followed by attack rounds for this many seconds per second it searched
            (None: one attack step with only the attack's own ``time_limit``, then the search),
            so that neither a proof nor a counterexample waits much longer than the other.
    """

    quick_rounds: int = 3
    quick_steps: int | None = None
    alpha_seconds: float = 1.0
    alpha_share: float = 0.0
    first_search_seconds: float = 5.0
    first_search_share: float = 0.3
    attack_per_search: float | None = None


@dataclass(frozen=True)
class ScheduleConfig:
    """How the pipeline (:func:`verifier.api.verify_problem`) shares its time between steps.

    Attributes:
        input: budgets of regions searched by input splitting. An input-split search bounds
            thousands of boxes a second, needs no optimised root bound (it does not start from
            it) and the easy instances end in its first second; so one quick attack round, no
            alpha-CROWN and a short first slice, then the remaining attack rounds (they find
            the counterexamples that lie in small pockets) interleaved with the rest of the
            search, a quarter of the time each search slice took
            (measured on ACAS Xu: ``benchmarks/acasxu_side_by_side.py``).
        relu: budgets of regions searched by ReLU splitting (or not searched): alpha-CROWN's
            intermediate bounds are the root domain's, so it gets a share of the time; dense
            sampling in hundreds of input dimensions rarely finds what the quick attack
            missed, so the later attack rounds wait for most of the search.
        sdp_share: the SDP bound before branch and bound gets at most this share of the time
            left.
    """

    input: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=1, quick_steps=10, alpha_seconds=0.0, first_search_seconds=1.0, first_search_share=0.05,
        attack_per_search=0.25))
    relu: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=3, alpha_seconds=1.0, alpha_share=0.05, first_search_seconds=5.0, first_search_share=0.8))
    sdp_share: float = 0.5


@dataclass(frozen=True)
class MilpConfig:
    """Options of the MILP engine.

    Attributes:
        solver: ``"highs"`` (in-process, highspy) or ``"cbc"`` (pulp's bundled binary).
        time_limit: seconds for one solve (the deadline, if sooner, wins).
        threads: solver threads.
        margin: relaxation of the clause rows, relative to each row's scale (see the module
            docstring); at least 100 times ``tolerance``.
        tolerance: the solver's primal feasibility and integrality tolerances.
    """

    solver: MilpSolver = "highs"
    time_limit: float = 60.0
    threads: int = 1
    margin: float = 1e-6
    tolerance: float = 1e-9

    def __post_init__(self) -> None:
        _check(self.solver, MilpSolver, "MILP solver")
        if not self.margin >= 100 * self.tolerance > 0:
            raise ValueError(f"the margin ({self.margin}) must be at least 100 times the solver "
                             f"tolerance ({self.tolerance}), which must be positive")


@dataclass(frozen=True)
class SmtConfig:
    """Options of the SMT engine.

    Attributes:
        time_limit: seconds for the main query (the deadline, if sooner, wins).
    """

    time_limit: float = 60.0


@dataclass(frozen=True)
class CrownConfig:
    """Options of CROWN.

    Attributes:
        relu_mode: lower slope of unstable ReLUs: ``adaptive`` (CROWN), ``zero`` or ``one``.
        intermediate: bound the inputs of relaxed nodes with CROWN (else intervals only).
        max_rows: rows bounded per backward pass when refining intermediate bounds.
        real_arithmetic: bound the network in exact real arithmetic, without the float-error
            terms. NOT sound for the float32 model: only for comparing with references and
            other tools that bound the real-valued network.
        fast_paths: hand-written backward rules for common affine ops (``Linear``) instead of
            the generic vector-Jacobian product (same result; tested against it).
        intermediate_method: ``backward`` (CROWN passes per refined neuron) or ``forward``
            (linear forms over the graph input, :mod:`verifier.bounds.forward`: cheap for
            few input elements, looser with depth). The forward mode needs one graph input
            with finite boxes; otherwise backward is used.
        per_domain_rows: refine the inputs of ReLU-like nodes with each batch element's own
            unstable positions (rows padded to the largest count in the batch) instead of the
            union over the batch: cheaper for large batches of small boxes (input splitting),
            where each box has few unstable neurons. Not used while alpha slopes are set
            (their shapes follow the union rows).
    """

    relu_mode: ReluMode = "adaptive"
    intermediate: bool = True
    max_rows: int = 256
    real_arithmetic: bool = False
    fast_paths: bool = True
    per_domain_rows: bool = False
    intermediate_method: IntermediateMethod = "backward"

    def __post_init__(self) -> None:
        _check(self.intermediate_method, IntermediateMethod, "intermediate bound method")


@dataclass(frozen=True)
class AlphaConfig:
    """Options of the slope optimisation.

    Attributes:
        iterations: Adam steps at most.
        learning_rate: Adam step size on the slopes.
        patience: stop after this many steps without improving the summed bound by ``1e-6``
            relative.
        stop_above: stop early once, in every batch element, some row's bound exceeds this
            value (0 for the rows of a spec clause: one positive row refutes the clause);
            None to never stop early.
        intermediate: also optimise the slopes used for intermediate bounds (each pass
            recomputes them, so a pass costs a full CROWN run).
        max_intermediate: cap on the number of intermediate slope entries; pairs (node,
            intermediate value) beyond it keep CROWN's slopes.
    """

    iterations: int = 40
    learning_rate: float = 0.1
    patience: int = 8
    stop_above: float | None = None
    intermediate: bool = True
    max_intermediate: int = 4_000_000


@dataclass(frozen=True)
class VerifierConfig:
    """Everything a verification run needs besides the model, spec and timeout.

    Attributes:
        bab: branch and bound after the incomplete methods: ``input`` (split the input box),
            ``relu`` (split unstable ReLUs), ``none``, or ``auto`` (input splitting when the
            region has at most ``input_split_max_dims`` non-degenerate input dimensions, else
            ReLU splitting).
        milp_max_unstable: in ReLU-split mode, a region with at most this many unstable
            neurons (after alpha-CROWN) that the first slice of search left open goes to the
            MILP engine (a small program) for the rest of the time. Not first: on MNIST 256x2
            prop_8 (31 unstable) HiGHS needed 12.5 s where the search needed under 1 s.
        method: ``auto`` (the pipeline: bounds, attacks, branch and bound), an exact engine
            alone after intervals and CROWN: ``milp`` (pulp + HiGHS) or ``smt`` (z3), or
            ``sdp``: the pipeline's bounds and attacks with the low-rank SDP bound after
            alpha-CROWN and no branch and bound (incomplete: ``unknown`` when neither decides).
        sdp_before_bab: in the ``auto`` pipeline, run the low-rank SDP bound on the clauses
            alpha-CROWN left open before branch and bound (at most half the time left).
        device, attack, input_split, relu_split, sdp: the options of each part.
        crown, alpha: CROWN and alpha-CROWN in the pipeline's bound steps (branch and bound
            derives its own from ``input_split`` and ``relu_split``).
        schedule: the time shares of the pipeline's steps.
        milp, smt: the exact engines (``--method milp|smt`` and the fallback of ReLU
            splitting); their time limit is capped by the run's deadline.
    """

    device: DeviceConfig = field(default_factory=DeviceConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    input_split: InputSplitConfig = field(default_factory=InputSplitConfig)
    relu_split: ReluSplitConfig = field(default_factory=ReluSplitConfig)
    sdp: SdpConfig = field(default_factory=SdpConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    crown: CrownConfig = field(default_factory=CrownConfig)
    alpha: AlphaConfig = field(default_factory=AlphaConfig)
    milp: MilpConfig = field(default_factory=lambda: MilpConfig(time_limit=math.inf))
    smt: SmtConfig = field(default_factory=lambda: SmtConfig(time_limit=math.inf))
    bab: BabMode = "auto"
    input_split_max_dims: int = 16
    milp_max_unstable: int = 32
    method: Method = "auto"
    sdp_before_bab: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.bab, BabMode, "branch-and-bound mode")
        _check(self.method, Method, "method")


def default_config(device: str = "cpu", seed: int = 0) -> VerifierConfig:
    """The default configuration on ``device`` with random seed ``seed``."""
    return VerifierConfig(device=DeviceConfig(device=device), seed=seed)
