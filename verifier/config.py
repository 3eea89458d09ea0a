"""Configuration: frozen dataclasses per concern, composed into :class:`VerifierConfig`.

Configurations are passed explicitly; presets are functions returning new objects. Nothing
here is global or mutated during a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from verifier.schedule_config import AlphaConfig as AlphaConfig  # re-exported
from verifier.schedule_config import ScheduleConfig as ScheduleConfig
from verifier.schedule_config import StepBudget as StepBudget
from verifier.search_config import InputBranching as InputBranching  # re-exported (the whole configuration)
from verifier.search_config import InputSplitConfig as InputSplitConfig
from verifier.search_config import IntermediateMethod as IntermediateMethod
from verifier.search_config import NeuronSplitConfig as NeuronSplitConfig
from verifier.search_config import ReluBranching as ReluBranching
from verifier.search_config import ReluSplitConfig as ReluSplitConfig
from verifier.search_config import TightenConfig as TightenConfig
from verifier.search_config import coerce_modes

if TYPE_CHECKING:  # torch is imported where a device or dtype is asked for: the command line
    import torch  # reads this module (its choices) before any costly import

class Dtype(StrEnum):
    """A floating-point precision of a stage (see :class:`DeviceConfig`)."""

    FLOAT32 = "float32"
    FLOAT64 = "float64"


class BabMode(StrEnum):
    """Branch and bound after the incomplete methods (see :attr:`VerifierConfig.bab`)."""

    AUTO = "auto"
    INPUT = "input"
    RELU = "relu"
    NONE = "none"


class Method(StrEnum):
    """What a run does (see :attr:`VerifierConfig.method`)."""

    AUTO = "auto"
    MILP = "milp"
    SMT = "smt"
    SDP = "sdp"


class ReluMode(StrEnum):
    """Lower slope of unstable ReLU-family neurons: CROWN's area-minimising choice, 0 or 1."""

    ADAPTIVE = "adaptive"
    ZERO = "zero"
    ONE = "one"


class MilpSolver(StrEnum):
    """The MILP solver behind pulp (see :class:`MilpConfig`)."""

    HIGHS = "highs"
    CBC = "cbc"


class BoundMethod(StrEnum):
    """The bound methods of ``verify bounds``."""

    IBP = "ibp"
    CROWN = "crown"
    ALPHA_CROWN = "alpha-crown"
    SDP = "sdp"


BAB_MODES: tuple[str, ...] = tuple(m.value for m in BabMode)
METHODS: tuple[str, ...] = tuple(m.value for m in Method)
BOUND_METHODS: tuple[str, ...] = tuple(m.value for m in BoundMethod)
MILP_SOLVERS: tuple[str, ...] = tuple(m.value for m in MilpSolver)


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
    attack_dtype: Dtype = Dtype.FLOAT32
    bounds_dtype: Dtype = Dtype.FLOAT64

    def __post_init__(self) -> None:
        coerce_modes(self, {"attack_dtype": (Dtype, "dtype"), "bounds_dtype": (Dtype, "dtype")})

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

    Round ``r`` draws ``samples * growth**r`` uniform points from the box (some counterexamples
    live in tiny pockets only dense sampling hits), then runs ``steps`` steps of the PGD
    portfolio from the ``restarts`` points with the smallest margin.

    Attributes:
        samples, growth: points drawn in the first round; factor of more points per round.
        rounds: number of rounds; the attack also stops at the deadline.
        restarts: PGD starting points per round (the best sampled points).
        steps: PGD steps per round.
        step_fractions: initial PGD steps as fractions of each input's box width, a portfolio
            (restarts ranked by sampled margin); each step shrinks by ``0.01 ** (1 / 100)`` per
            PGD step (to 1/100 of its start after 100 steps, or at the end of a longer round).
            Large steps cross the box to the corners where image classifiers' counterexamples
            lie (0.02 alone missed MNIST fc and marabou-cifar10 ones that 0.5 finds in 0.1 s),
            small ones stay inside the thin pockets of control networks (reach_prob_density's
            robot); ``benchmarks/bench_attack.py`` measures them.
        adam_rates: Adam steps (learning rate this fraction of each box width) on the clause's
            summed row violations, each pushed a little past its bound: where a counterexample
            must satisfy several rows at once in a thin slab (robot_0 of reach_prob_density),
            signed steps chase one row at a time. Restart ``i`` takes member ``i % (k + a + w)``
            of ``step_fractions + adam_rates + walk_rates``.
        walk_rates: gradient-free members (``verifier.attack.pgd._Walk``): a random local
            search on the margin, noise of this fraction of each box width, for networks whose
            gradients vanish or mislead; it shares PGD's batched forward passes.
        max_batch, batch_memory: largest batch evaluated at once; bytes of activations one
            batch may take (the batch shrinks on large models, never below 16 points).
        time_limit: seconds of falsification per region at most; the deadline applies too.
    """

    samples: int = 4096
    growth: int = 4
    rounds: int = 5
    restarts: int = 256
    steps: int = 100
    step_fractions: tuple[float, ...] = (0.5, 0.02)
    adam_rates: tuple[float, ...] = (0.01,)
    walk_rates: tuple[float, ...] = (0.1,)
    max_batch: int = 65536
    batch_memory: int = 256 * 2**20
    time_limit: float = 10.0

    def __post_init__(self) -> None:
        members = self.step_fractions + self.adam_rates + self.walk_rates
        if not self.step_fractions or not all(0 < f <= 1 for f in members):
            raise ValueError(f"attack step fractions must be in (0, 1], got {self.step_fractions!r}, "
                             f"{self.adam_rates!r}, {self.walk_rates!r}")


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

    solver: MilpSolver = MilpSolver.HIGHS
    time_limit: float = 60.0
    threads: int = 1
    margin: float = 1e-6
    tolerance: float = 1e-9

    def __post_init__(self) -> None:
        coerce_modes(self, {"solver": (MilpSolver, "MILP solver")})
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
        chunk_elements: most entries of one such pass's coefficients on a value (both signs of
            every row, times the batch, times the graph's largest value); fewer rows per pass
            on large networks, so that memory stays bounded and the deadline, checked between
            nodes, is seen often enough (a 512-row pass through a 25,088-element convolution
            took over a second). Forward mode is used only where one form's coefficients on that
            value take at most 8 times as many entries.
        real_arithmetic: bound the network in exact real arithmetic, without the float-error
            terms. NOT sound for the float32 model: only for comparing with references and
            other tools that bound the real-valued network.
        fast_paths: hand-written backward rules for common affine ops (``Linear``) instead of
            the generic vector-Jacobian product (same result; tested against it).
        intermediate_method: ``backward`` (CROWN passes per refined neuron), ``forward``
            (linear forms over the graph input, :mod:`verifier.bounds.forward`: cheap for
            few input elements, looser with depth) or ``hybrid`` (both, intersected: the
            forms bound every value, then backward passes refine the inputs of relaxed nodes
            within ``refine_seconds``). The forms need one graph input with finite boxes and
            forms that fit ``chunk_elements``; otherwise they are left out.
        refine_seconds: wall-clock seconds the backward refinement of one :meth:`compute` may
            take (None: no limit). Rows are refined most unstable first (largest
            ``min(-l, u)``), a node's first pass always runs, and a node stops once its
            measured seconds per row say that the rest would overrun; the rows left keep
            their interval (and forms') bounds, which are just as certified.
        windows: keep refining rows on 2-D feature maps as windows through convolutions,
            batch normalisation and elementwise relaxations (:mod:`verifier.bounds.windows`;
            the same bounds as dense rows, at the cost of the receptive fields).
        per_domain_rows: refine the inputs of ReLU-like nodes with each batch element's own
            unstable positions (rows padded to the largest count in the batch) instead of the
            union over the batch: cheaper for large batches of small boxes (input splitting),
            where each box has few unstable neurons. Not used while alpha slopes are set
            (their shapes follow the union rows).
        form_end_inputs: when the boxes have at most this many free input positions, the
            values that are affine functions of the input (the layers before the first
            relaxed node) get exact forward forms, and refining passes end there instead of
            walking on to the inputs (the same bound; :func:`verifier.bounds.forward.lower_bound_through`).
            0 turns it off.
    """

    relu_mode: ReluMode = ReluMode.ADAPTIVE
    intermediate: bool = True
    max_rows: int = 256
    chunk_elements: int = 2**22
    refine_seconds: float | None = None
    real_arithmetic: bool = False
    fast_paths: bool = True
    per_domain_rows: bool = False
    windows: bool = True
    intermediate_method: IntermediateMethod = IntermediateMethod.BACKWARD
    form_end_inputs: int = 64

    def __post_init__(self) -> None:
        coerce_modes(self, {"relu_mode": (ReluMode, "ReLU relaxation mode"),
                            "intermediate_method": (IntermediateMethod, "intermediate bound method")})


@dataclass(frozen=True)
class VerifierConfig:
    """Everything a verification run needs besides the model, spec and timeout.

    Attributes:
        bab: branch and bound after the incomplete methods: ``input`` (split the input box),
            ``relu`` (split unstable ReLUs), ``none``, or ``auto`` (input splitting when the
            region has at most ``input_split_max_dims`` input dimensions wider than
            ``input_split_min_width`` times the widest, else ReLU splitting; dist_shift's
            properties free 8 latent inputs and give 173 fixed pixels intervals 1e-16 wide:
            ReLU splitting could not finish past their Sigmoid, input splitting proves them in
            seconds).
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
        device, attack, input_split, relu_split, neuron_split, sdp: the options of each part
            (``neuron_split``: the search of networks with no ReLU-like neuron, on their
            Sigmoid, Tanh... neurons).
        tighten: intermediate-bound tightening before ReLU-split search (deep networks).
        crown, alpha: CROWN and alpha-CROWN in the pipeline's bound steps (branch and bound
            derives its own from ``input_split`` and ``relu_split``); CROWN is ``hybrid``: the
            forward-mode forms, where they fit, bound what the time-limited backward
            refinement leaves.
        schedule: the time shares of the pipeline's steps.
        milp, smt: the exact engines (``--method milp|smt`` and the fallback of ReLU
            splitting); their time limit is capped by the run's deadline.
    """

    device: DeviceConfig = field(default_factory=DeviceConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    input_split: InputSplitConfig = field(default_factory=InputSplitConfig)
    relu_split: ReluSplitConfig = field(default_factory=ReluSplitConfig)
    neuron_split: NeuronSplitConfig = field(default_factory=NeuronSplitConfig)
    tighten: TightenConfig = field(default_factory=TightenConfig)
    sdp: SdpConfig = field(default_factory=SdpConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    crown: CrownConfig = field(default_factory=lambda: CrownConfig(intermediate_method=IntermediateMethod.HYBRID))
    alpha: AlphaConfig = field(default_factory=AlphaConfig)
    milp: MilpConfig = field(default_factory=lambda: MilpConfig(time_limit=math.inf))
    smt: SmtConfig = field(default_factory=lambda: SmtConfig(time_limit=math.inf))
    bab: BabMode = BabMode.AUTO
    input_split_max_dims: int = 16
    input_split_min_width: float = 1e-6
    milp_max_unstable: int = 32
    method: Method = Method.AUTO
    sdp_before_bab: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        coerce_modes(self, {"bab": (BabMode, "branch-and-bound mode"), "method": (Method, "method")})

    def for_certificates(self) -> VerifierConfig:
        """This configuration as a run writing a proof certificate uses it: alpha-CROWN's
        slopes are chosen for the final rows only (those a certificate records), and regions
        searched by ReLU splitting get their intermediate bounds from alpha-CROWN value by value
        instead (each bound with its own recorded slopes: the certificate's claims), as much
        as the joint run gets on MNIST fc (``benchmarks/certificates.py``); multi-input rules
        (MaxPool) keep CROWN's planes, whose weights the format does not hold; ReLU-split
        domains count as refuted only with ``CERTIFICATE_MARGIN`` to spare (an independent
        checker's rounding allowances are larger than the verifier's)."""
        per_value = self.schedule.mixed.value_alpha or AlphaConfig(iterations=15, learning_rate=0.2)
        per_value = replace(per_value, plane_weights=False)
        relu = replace(self.schedule.relu, value_alpha=per_value, joint_alpha=None)  # as networks with smooth neurons
        split = replace(self.relu_split, refute_margin=CERTIFICATE_MARGIN)
        tighten = replace(self.tighten, search=replace(self.tighten.search, refute_margin=CERTIFICATE_MARGIN))
        return replace(self, alpha=replace(self.alpha, intermediate=False, plane_weights=False),
                       schedule=replace(self.schedule, relu=relu), relu_split=split, tighten=tighten)


CERTIFICATE_MARGIN = 1e-4
"""The room a certified ReLU-split refutation leaves (:attr:`ReluSplitConfig.refute_margin`)."""

GPU_BATCH = 1024  # domains per search round on a GPU (CPU: the search configs' defaults)
GPU_BATCH_MEMORY = 16 << 30  # bytes one ReLU-split round may use on a GPU
GPU_QUEUE_MEMORY = 48 << 30  # bytes the ReLU-split store may take on a GPU (up to GPU_MAX_DOMAINS)
GPU_MAX_DOMAINS = 4_000_000


def default_config(device: str = "cpu", seed: int = 0) -> VerifierConfig:
    """The default configuration on ``device`` with random seed ``seed``.

    On a CUDA device the searches bound ``GPU_BATCH`` domains per round (ReLU splitting within
    ``GPU_BATCH_MEMORY`` bytes, and keeping up to ``GPU_MAX_DOMAINS`` domains in
    ``GPU_QUEUE_MEMORY`` bytes): a GPU bounds a thousand domains in about the time of a few
    dozen (``benchmarks/results/gpu/README.md``); on the CPU the smaller default batches keep
    each round short between deadline checks.
    """
    if not device.startswith("cuda"):
        return VerifierConfig(device=DeviceConfig(device=device), seed=seed)
    return VerifierConfig(device=DeviceConfig(device=device), seed=seed,
                          input_split=InputSplitConfig(batch=GPU_BATCH, batch_elements=2**26),
                          relu_split=ReluSplitConfig(batch=GPU_BATCH, batch_memory=GPU_BATCH_MEMORY,
                                                     max_domains=GPU_MAX_DOMAINS, queue_memory=GPU_QUEUE_MEMORY))
