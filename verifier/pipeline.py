"""The pipeline's steps and their order: :func:`pipeline` is the whole verification pipeline in
one function (:mod:`verifier.api` runs its steps on the regions still open)."""

from __future__ import annotations

import enum

from verifier.bab import InputSplitSearch, ReluSplitSearch
from verifier.bab.neuron_split import NeuronSplitSearch
from verifier.certificate.writer import ProvenBy
from verifier.config import Method, VerifierConfig
from verifier.result import Status


class Step(enum.Enum):
    """The pipeline's steps, in the order :func:`pipeline` lists them."""

    BOUNDS = "bounds"
    PROBE_ATTACK = "probe attack"
    CROWN = "crown"
    QUICK_ATTACK = "quick attack"
    ALPHA = "alpha"
    SDP = "sdp"
    FIRST_SEARCH = "first search"
    ATTACK = "attack"
    SEARCH = "search"
    EXACT = "exact"


def pipeline(config: VerifierConfig) -> tuple[Step, ...]:
    """The steps of a run, cheapest first; each runs on the regions still open.

    1. ``BOUNDS``: interval bounds of the clauses (:class:`RegionProof`);
    2. ``PROBE_ATTACK``: the attack's first round, with ``schedule.probe_steps`` PGD steps:
       before CROWN, whose one pass on a large network costs seconds;
    3. ``CROWN``: CROWN on the clauses intervals leave open;
    4. ``QUICK_ATTACK``: the next sampling/PGD rounds, up to the region's :class:`StepBudget`;
    5. ``ALPHA``: alpha-CROWN on the clauses still open (its budget's ``alpha_seconds``);
    6. ``SDP`` (``--method sdp`` or ``sdp_before_bab``): the certified low-rank SDP bound;
    7. ``FIRST_SEARCH``: a first slice of branch and bound (its budget's ``first_search_*``);
    8. ``ATTACK``: the remaining attack rounds, which find counterexamples in tiny pockets;
    9. ``SEARCH``: branch and bound for the rest of the time, resuming the first slice (ReLU
       splitting hands a region with few unstable neurons to the exact engine); with an
       ``attack_per_search`` budget, in doubling slices with attack rounds between them.

    ``--method milp|smt`` is ``BOUNDS``, ``CROWN`` then ``EXACT`` (the engine alone on the open clauses);
    ``--method sdp`` stops after the SDP and the attack (an incomplete method).
    """
    if config.method in (Method.MILP, Method.SMT):
        return (Step.BOUNDS, Step.CROWN, Step.EXACT)
    first = (Step.BOUNDS, Step.PROBE_ATTACK, Step.CROWN, Step.QUICK_ATTACK, Step.ALPHA)
    if config.method is Method.SDP:
        return (*first, Step.SDP, Step.ATTACK)
    sdp = (Step.SDP,) if config.sdp_before_bab else ()
    return (*first, *sdp, Step.FIRST_SEARCH, Step.ATTACK, Step.SEARCH)


def proven_by(step: Step, search: object, tightened: bool = False) -> ProvenBy:
    """How a region that ``step`` proved was proven, for its certificate (``search``: the
    region's branch-and-bound search, if one ran; ``tightened``: proven at the root by CROWN
    and alpha-CROWN from intermediate bounds tightened by search, before any search)."""
    if tightened and search is None:
        return ProvenBy.ROOT_ALPHA
    if step in (Step.BOUNDS, Step.CROWN):
        return ProvenBy.ROOT_BOUNDS
    if step is Step.ALPHA:
        return ProvenBy.ROOT_ALPHA
    if step is Step.SDP:
        return ProvenBy.ROOT_SDP
    if isinstance(search, InputSplitSearch) and search.final is Status.UNSAT:
        return ProvenBy.INPUT_SPLIT
    searches = {ReluSplitSearch: ProvenBy.RELU_SPLIT, NeuronSplitSearch: ProvenBy.NEURON_SPLIT}
    return searches.get(type(search), ProvenBy.EXACT)
