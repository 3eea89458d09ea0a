"""Options of alpha-CROWN and of the pipeline's schedule: how a run shares its time between the
steps before and between branch and bound (re-exported by :mod:`verifier.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlphaConfig:
    """Options of the slope optimisation.

    Attributes:
        iterations: Adam steps at most.
        learning_rate: Adam step size on the slopes (times the mean width of the search range
            for free slopes).
        lr_decay: the step size is multiplied by this after every step.
        patience: stop after this many steps without improving the summed bound by ``1e-6``
            relative,
        free_patience: or this many when some op has free slopes (Sigmoid, Tanh...): their
            bounds often fall for a dozen steps before they rise (random Sigmoid MLPs: patience
            8 kept CROWN's bound where 20 closed a quarter of its gap to sampled minima).
        stop_above: stop early once, in every batch element, some row's bound exceeds this
            value (0 for the rows of a spec clause: one positive row refutes the clause);
            None to never stop early.
        intermediate: also optimise the slopes used for intermediate bounds (each pass
            recomputes them, so a pass costs a full CROWN run).
        max_intermediate: cap on the number of intermediate slope entries; pairs (node,
            intermediate value) beyond it keep CROWN's slopes.
        plane_weights: also optimise multi-input rules' plane weights (MaxPool's lower plane,
            Mul's McCormick weights); off, they keep CROWN's planes (as a proof certificate,
            which records ReLU-like slopes only, needs: ``VerifierConfig.for_certificates``).
    """

    iterations: int = 40
    learning_rate: float = 0.1
    lr_decay: float = 1.0
    patience: int = 8
    free_patience: int = 20
    stop_above: float | None = None
    intermediate: bool = True
    max_intermediate: int = 4_000_000
    plane_weights: bool = True


@dataclass(frozen=True)
class StepBudget:
    """The time of the steps before and between branch and bound, for one kind of search.

    Attributes:
        quick_rounds: sampling/PGD rounds of the quick attack, before the costlier bounds.
        quick_steps: PGD steps per round of the quick attack (None: the attack's ``steps``).
        alpha_seconds: alpha-CROWN time per region (0: no alpha-CROWN step),
        alpha_share: or this share of the time left when that is more.
        joint_alpha: options of one alpha-CROWN run on all open clauses of a region together
            (the intermediate slopes optimised once for all;
            :meth:`verifier.region_proof.RegionProof.optimise`); None: clause by clause with
            the run's options (each clause's own slopes, tighter, at a run's cost each).
        value_alpha: options of alpha-CROWN on the intermediate bounds themselves, value by
            value, before the run(s) on the clauses (:mod:`verifier.bounds.value_alpha`), in
            rounds: the first with its ``iterations`` steps per value, each later one with
            twice as many (the bounds improve with every step: eran's Sigmoid idx 1211 needs
            60, idx 9629 15); None: not run.
        value_alpha_share: the share of the alpha-CROWN time those rounds may take.
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
    joint_alpha: AlphaConfig | None = None
    value_alpha: AlphaConfig | None = None
    value_alpha_share: float = 0.7
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
        smooth: budgets of regions of networks without ReLU-like neurons (Sigmoid, Tanh...;
            searched by :mod:`verifier.bab.neuron_split`): alpha-CROWN gets half the time, most
            of it on the intermediate bounds themselves (value by value: on eran's 6x200
            Sigmoid network these bounds, not the final slopes, hold the rows back), the rest
            on the final rows of all open clauses at once (nine one-row clauses there: one
            run, not nine), then the search.
        mixed: budgets of regions of networks with both ReLU-like neurons and smooth ones (searched
            by ReLU splits, then general ones): ``relu``'s, with a share of the time for
            alpha-CROWN on the intermediate bounds, value by value (the smooth neurons'
            relaxations depend on their whole interval).
        sdp_share: the SDP bound before branch and bound gets at most this share of the time
            left.
        probe_steps: PGD steps of the probe attack, the attack's first round run before
            CROWN (:func:`verifier.pipeline.pipeline`); the quick attack goes on from the next round.
        refine_share: the backward refinement of the first CROWN bounds of a region gets at
            most this share of the time left (:attr:`CrownConfig.refine_seconds`): on a large
            network the rest goes to the attacks and the search instead of one bound pass.
    """

    input: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=1, quick_steps=10, alpha_seconds=0.0, first_search_seconds=1.0, first_search_share=0.05,
        attack_per_search=0.25))
    relu: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=3, alpha_seconds=1.0, alpha_share=0.05, first_search_seconds=5.0, first_search_share=0.8))
    smooth: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=3, alpha_seconds=1.0, alpha_share=0.5, value_alpha=AlphaConfig(iterations=15, learning_rate=0.2),
        joint_alpha=AlphaConfig(iterations=1000, intermediate=False),
        first_search_seconds=5.0, first_search_share=0.8))
    mixed: StepBudget = field(default_factory=lambda: StepBudget(
        quick_rounds=3, alpha_seconds=1.0, alpha_share=0.3, value_alpha=AlphaConfig(iterations=15, learning_rate=0.2),
        first_search_seconds=5.0, first_search_share=0.8))
    sdp_share: float = 0.5
    probe_steps: int = 10
    refine_share: float = 0.2

    def budget(self, input_split: bool, relu_like: bool, smooth: bool) -> StepBudget:
        """The budgets of a region: ``input`` when it is searched by input splitting, else
        ``mixed`` for a network with ReLU-like (``relu_like``) and smooth neurons (``smooth``:
        an elementwise relaxed op that is not ReLU-like), ``relu`` with ReLU-like ones only,
        ``smooth`` without ReLU-like ones."""
        if input_split:
            return self.input
        if relu_like:
            return self.mixed if smooth else self.relu
        return self.smooth
