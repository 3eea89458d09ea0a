"""Options of the two branch-and-bound searches (re-exported by :mod:`verifier.config`, which
composes them into :class:`~verifier.config.VerifierConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar


class InputBranching(StrEnum):
    """Which input dimension input-split search halves (:attr:`InputSplitConfig.branching`)."""

    STRONG = "strong"
    SMEAR = "smear"


class IntermediateMethod(StrEnum):
    """How CROWN bounds the inputs of relaxed nodes: backward passes per unstable neuron, linear
    forms over the graph input (:mod:`verifier.bounds.forward`), or forms refined backwards."""

    BACKWARD = "backward"
    FORWARD = "forward"
    HYBRID = "hybrid"


class ReluBranching(StrEnum):
    """The ReLU-split branching heuristic (:attr:`ReluSplitConfig.branching`)."""

    FSB = "fsb"
    BABSR = "babsr"


Mode = TypeVar("Mode", bound=StrEnum)


def check_mode(value: str, mode: type[Mode], what: str) -> Mode:
    """``value`` as a member of the enum ``mode`` (a member, or its string value: command lines
    and callers may pass either); raises ValueError naming ``what`` and the choices otherwise."""
    try:
        return mode(value)
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; use one of {tuple(m.value for m in mode)}") from None


def coerce_modes(config: object, modes: dict[str, tuple[type[StrEnum], str]]) -> None:
    """Replaces each field ``name`` of the frozen dataclass ``config`` by its enum member
    (``modes[name]``: the enum and what the field is, for the error message)."""
    for name, (mode, what) in modes.items():
        object.__setattr__(config, name, check_mode(getattr(config, name), mode, what))


@dataclass(frozen=True)
class InputSplitConfig:
    """Options of input-split branch and bound (:mod:`verifier.bab.input_split`).

    Attributes:
        batch: domains popped per round (each gives two children, bounded together).
        batch_elements: fewer domains per round on large networks: at most this many entries
            of ``2 (n + 1)`` vectors per child (a forward-mode form, or the rows of a pass) over
            the graph's largest value, so that a round's bound passes stay short between
            deadline checks (on a 25,088-neuron generator layer, 64 children's forms took
            1.5 s per node).
        max_domains: the stack's size limit; beyond it the search gives up (``unknown``).
        pgd_every: run PGD inside the worst domains every this many rounds (0: never).
        pgd_domains: domains PGD starts in.
        pgd_steps: PGD steps per start.
        candidates_per_round: most points sent to the onnxruntime re-check per round.
        stepped_per_round: of a round's points that violate nothing, the nearest misses that
            take linearised steps (:mod:`verifier.attack.linear_step`; only when nearer than
            any stepped from before).
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
        strong_max_dims: the largest input (elements) that strong branching is used for: it
            bounds ``2n`` halves per box, so one round on a 3,072-pixel image would bound
            196,608 boxes at once.
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
        forward_when_refined_everywhere: on graphs with a relaxed op that is not ReLU-like
            (:func:`verifier.bounds.crown.refines_every_position`: Sigmoid, Tanh...), bound the
            boxes in forward mode (``intermediate_method`` and ``scoring_method`` forward) with
            smear branching: backward refinement there costs a pass per such neuron in every
            box however small. dist_shift index3363 (8 free inputs, 784 sigmoids), one thread:
            backward and strong, 15 boxes/s, no answer in 300 s; forward and strong, 34k boxes,
            none either; forward and smear, unsat in 105 s (15k boxes).
        alpha_min_batch: when nothing else is queued, fewer boxes set aside than this are
            split again without alpha-CROWN: a pass costs about as much for a few boxes as for
            a full batch (small searches, such as ACAS Xu 1_1 prop_4, lost 2 s to such passes).
    """

    batch: int = 32
    batch_elements: int = 2**22
    max_domains: int = 2_000_000
    pgd_every: int = 10
    pgd_domains: int = 64
    pgd_steps: int = 20
    candidates_per_round: int = 4
    stepped_per_round: int = 1
    inherit_bounds: bool = True
    per_domain_rows: bool = True
    branching: InputBranching = InputBranching.STRONG
    strong_max_dims: int = 64
    clip_domains: bool = True
    stall_progress: float = 0.1
    alpha_after_stall: int = 1
    alpha_iterations: int = 20
    alpha_batch: int = 256
    alpha_min_batch: int = 64
    forward_when_refined_everywhere: bool = True
    intermediate_method: IntermediateMethod = IntermediateMethod.BACKWARD
    scoring_method: IntermediateMethod = IntermediateMethod.FORWARD

    def __post_init__(self) -> None:
        coerce_modes(self, {"branching": (InputBranching, "branching"),
                            "scoring_method": (IntermediateMethod, "intermediate bound method"),
                            "intermediate_method": (IntermediateMethod, "intermediate bound method")})


@dataclass(frozen=True)
class NeuronSplitConfig:
    """Options of the branch and bound on neurons with free slopes (Sigmoid, Tanh...;
    :mod:`verifier.bab.neuron_split`).

    Attributes:
        batch: domains split per round (each gives two children, bounded together).
        iterations: Adam steps on the children's slopes per round (from their parent's).
        root_iterations: Adam steps on the root domain.
        learning_rate: Adam step size, times the mean width of the slopes' search ranges.
        max_domains: give up (``unknown``) past this many stored domains (each holds its
            slopes for every spec row: 9 rows of a 6x200 network are 86 KB in float32).
        refine_intermediate: recompute every domain's intermediate bounds by CROWN (from its
            stored ones, so a split's narrower relaxation tightens the later layers); else
            they tighten by interval propagation only. Off: on eran's 6x200 Sigmoid network
            (idx 3789) a domain cost 170 ms instead of 28 ms, and in 40 s the lowest bound did
            not move (-1.42) where without it rose to -1.25; on a 2-10-10-2 Tanh network
            refining gained more per second.
        candidates_per_round: most of a round's domain corners (each domain's hardest row's
            linear bound minimised over the box) sent to the onnxruntime re-check.
        stepped_per_round: of a round's corners that violate nothing, the nearest misses that
            take linearised steps (:mod:`verifier.attack.linear_step`).
    """

    batch: int = 32
    iterations: int = 8
    root_iterations: int = 30
    learning_rate: float = 0.1
    max_domains: int = 20_000
    refine_intermediate: bool = False
    candidates_per_round: int = 4
    stepped_per_round: int = 1


@dataclass(frozen=True)
class ReluSplitConfig:
    """Options of ReLU-split branch and bound with beta-CROWN (:mod:`verifier.bab.relu_split`).

    Attributes:
        batch: most domains popped per round (each gives two children, bounded together);
            fewer when ``batch_memory`` cannot hold them.
        batch_memory: bytes one round's bounding may use (slopes, multipliers, optimiser state
            and backward coefficients of every child); sets the batch on large networks.
        max_domains, queue_memory: the store's cap is ``max_domains`` domains or the domains
            ``queue_memory`` bytes hold, whichever is fewer. Past the cap the search pops the
            domains nearest to refuted first, so that the store drains (on a GPU 200,000 domains
            filled up in 25 s); past twice the cap it gives up (``unknown``).
        iterations: Adam steps on the slopes (alpha) and split multipliers (beta) per round.
        root_iterations: Adam steps on the root domain.
        learning_rate_alpha, learning_rate_beta: Adam step sizes.
        branching: ``fsb`` (filtered smart branching, the default: the ``candidates`` best
            neurons by the bias-aware BaBSR score and by the upper line's intercept are each
            tried with one float32 estimating CROWN pass on both children, and the candidate
            whose better child is best is split: a split that refutes one side keeps the tree
            thin) or ``babsr`` (the best intercept score alone). Same VM, one thread, oval21
            cifar_base (BaBSR / FSB): img3568 no answer in 300 s / unsat 142 s (NeuralSAT 155 s),
            img2578 54 s / 36 s, img6767 68 s / 37 s; MNIST 256x4 prop_3_0.05 45-48 s / 40 s.
            Choosing by the *worse* child (tried before) lost to BaBSR on MNIST.
        candidates: neurons tried per domain by ``fsb`` from each of its two scores.
        candidates_per_round: most points sent to the onnxruntime re-check per round.
        stepped_per_round: of a round's points that violate nothing, the nearest misses that
            take linearised steps (:mod:`verifier.attack.linear_step`; only when nearer than
            any stepped from before).
        pgd_every: run PGD from the worst domains' candidate points every this many rounds.
        pgd_steps: PGD steps per start.
        refine_intermediate: recompute the intermediate bounds of every domain with CROWN
            (starting from its stored ones, so the splits' clamps tighten later layers); else
            they only tighten through interval propagation. Off by default: on MNIST 256x4 a
            domain cost 48 ms instead of 3.3 ms, and the bound progressed less in the same time.
        estimated_steps: run the Adam steps on float32 estimates (no rounding allowances) and
            certify only the best iterate's bound, in float64; else every step is certified.
        leaf_seconds: on a network with Sigmoid, Tanh... neurons, a leaf (every ReLU decided)
            that the exact engine cannot encode gets a neuron-split search of at most this long.
        refute_margin: a domain counts as refuted only when a row's bound exceeds this (its
            bound is recorded this much lower). 0 by default; a run that writes a certificate
            leaves this room for an independent checker's larger rounding allowances (oval21
            img7878: a leaf the search refuted came out at -5.7e-6 in ``verify-check``).
    """

    batch: int = 64
    batch_memory: int = 1 << 30
    max_domains: int = 200_000
    queue_memory: int = 8 << 30
    iterations: int = 20
    root_iterations: int = 60
    learning_rate_alpha: float = 0.1
    learning_rate_beta: float = 0.05
    branching: ReluBranching = ReluBranching.FSB
    candidates: int = 4
    candidates_per_round: int = 4
    stepped_per_round: int = 1
    pgd_every: int = 10
    pgd_steps: int = 20
    refine_intermediate: bool = False
    estimated_steps: bool = True
    leaf_seconds: float = 1.0
    refute_margin: float = 0.0

    def __post_init__(self) -> None:
        coerce_modes(self, {"branching": (ReluBranching, "ReLU branching heuristic")})


@dataclass(frozen=True)
class TightenConfig:
    """Options of intermediate-bound tightening by branch and bound on the cut network
    (:mod:`verifier.bab.tighten`), run once per region before ReLU-split search.

    Attributes:
        layers: splittable layers tightened after the first (0: none), in order; after each
            layer that gained a stable neuron, one CROWN pass from the tightened bounds narrows
            the later ones before their unstable neurons are counted.
        domains_per_bound: most domains one searched bound (one side of one neuron) may take;
            all of a layer's bounds are searched together, in shared batches
            (:mod:`verifier.bab.row_search`).
        samples: points (half uniform in the box, half random corners) whose signs choose the
            sides searched: a neuron seen with both signs is left.
        max_unstable: a layer with more unstable neurons is left as it is (convolutional layers
            have thousands: a search each would not pay; dense layers of MNIST 256x4/256x6 at
            eps 0.05 have 60-240, and tightening them took the lowest bound of 256x6 prop_0
            from -458 to -0.08 and proved it).
        time_share: most share of the time left that tightening may take.
        probe_seconds, seconds_per_stable, gap_ratio: the payoff rule, checked once per window
            of ``probe_seconds``: a layer's search stops (its open bounds keep the lowest bound
            of their domains) after a window that made fewer neurons stable than one per
            ``seconds_per_stable`` and in which the median open row's bound did not shrink to
            ``gap_ratio`` of itself. On oval21's cifar_deep img4168 the first convolutional
            layer made 29 neurons stable in 45 s and none in the next 30 s while its 5 open
            rows' bounds shrank by a fifth; on MNIST 256x6 prop_10_0.05 the last layer made
            none stable in its first 16 s while its rows' median bound fell to 0.13 of its
            first one, then 28 in the next 12 s (and the region was proved).
        min_layers: tighten only networks with at least this many splittable layers (on
            shallow ones the search itself splits the few layers cheaply).
        search: the options of the searches on the cut networks (batch, Adam steps,
            branching); eran's 9x200 idx 5520, 300 s (`benchmarks/tighten_variants.py`): 20
            steps (the default) and 8 both prove it once five layers are tightened.
    """

    layers: int = 8
    domains_per_bound: int = 1024
    samples: int = 256
    max_unstable: int = 256
    time_share: float = 0.5
    probe_seconds: float = 10.0
    seconds_per_stable: float = 3.0
    gap_ratio: float = 0.5
    min_layers: int = 4
    search: ReluSplitConfig = field(default_factory=ReluSplitConfig)
