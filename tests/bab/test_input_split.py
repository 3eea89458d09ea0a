"""Input-split branch and bound: proves what CROWN alone cannot, finds planted counterexamples
without the attack's help (every one confirmed by onnxruntime), and never proves a sat case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, recording_confirm
from verifier.api import RegionProof
from verifier.bab import InputSplitSearch, input_split_search
from verifier.bab.common import BabOutcome
from verifier.config import InputSplitConfig
from verifier.deadline import Deadline
from verifier.graph.loader import load_model
from verifier.graph.torch_graph import TorchGraph
from verifier.spec import parse_vnnlib
from verifier.witness import OnnxOracle, check_witness

ACAS = ROOT / "benchmarks" / "acasxu"


def _search(net: str, prop: int, seconds: float,
            config: InputSplitConfig | None = None) -> tuple[BabOutcome, list[np.ndarray]]:
    """One input-split search of an ACAS Xu instance: its outcome and the confirmed points."""
    path = ACAS / "onnx" / f"ACASXU_run2a_{net}_batch_2000.onnx"
    graph = load_model(path)
    region = parse_vnnlib(ACAS / "vnnlib" / f"prop_{prop}.vnnlib").regions[0]
    bounds, attack = TorchGraph(graph, "cpu", torch.float64), TorchGraph(graph, "cpu", torch.float32)
    proof = RegionProof(bounds, region)
    confirm, confirmed = recording_confirm(path, region)
    outcome = input_split_search(bounds, attack, region, proof.open, proof.lower, proof.upper, confirm,
                                 Deadline.after(seconds), config)
    return outcome, confirmed


def _run(net: str, prop: int, seconds: float, config: InputSplitConfig | None = None) -> tuple[str, list[np.ndarray]]:
    outcome, confirmed = _search(net, prop, seconds, config)
    return outcome.status, confirmed


def test_proves_acasxu_instance_that_crown_leaves_open() -> None:
    path = ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_1.vnnlib").regions[0]
    assert not RegionProof(TorchGraph(load_model(path), "cpu", torch.float64), region).proven
    status, _ = _run("1_1", 1, 60)
    assert status == "unsat"


@pytest.mark.parametrize("net", ["1_2", "2_2", "3_4"])
def test_finds_confirmed_counterexamples_of_sat_instances_and_never_proves_them(net: str) -> None:
    """prop_2 on these networks is violated (expected.csv): the search alone must not say unsat;
    any sat it reports carries a point that onnxruntime confirmed."""
    status, confirmed = _run(net, 2, 20, InputSplitConfig(pgd_every=0))
    assert status in ("sat", "timeout")
    assert (status == "sat") == bool(confirmed)


def test_gives_up_with_unknown_when_the_queue_limit_is_reached() -> None:
    status, _ = _run("1_1", 4, 30, InputSplitConfig(max_domains=4, batch=2))
    assert status in ("unknown", "unsat")


def test_a_timed_out_search_resumes_where_it_stopped() -> None:
    """The first call runs out of time; the second continues with the domains left (it does
    not bound the whole box again) and proves the instance (unsat in expected.csv)."""
    path = ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    graph = load_model(path)
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_4.vnnlib").regions[0]
    bounds, attack = TorchGraph(graph, "cpu", torch.float64), TorchGraph(graph, "cpu", torch.float32)
    proof = RegionProof(bounds, region)
    oracle = OnnxOracle(path)
    search = InputSplitSearch(bounds, attack, region, proof.open, proof.lower, proof.upper,
                              lambda x: check_witness(oracle, region, x).valid)
    rounds = 0
    for _ in range(20):  # short slices until some rounds ran (the root alone can take a slice on a busy machine)
        first = search.run(Deadline.after(0.3))
        assert first.status == "timeout"
        rounds += first.stats.rounds
        if rounds:
            break
    assert rounds > 0
    second = search.run(Deadline.after(60))
    assert second.status == "unsat"
    fresh = input_split_search(bounds, attack, region, proof.open, proof.lower, proof.upper,
                               lambda x: check_witness(oracle, region, x).valid, Deadline.after(60))
    assert fresh.status == "unsat"
    assert second.stats.domains_bounded < fresh.stats.domains_bounded


def test_stalled_boxes_get_alpha_crown_and_a_flat_valley_instance_is_proven() -> None:
    """1_1 prop_5 (unsat in expected.csv) leaves many sub-boxes whose CROWN bound stops
    improving; they are set aside for batched alpha-CROWN (here even the small sets left when
    nothing else is queued). Every sat-looking point went through onnxruntime: none was
    confirmed."""
    outcome, confirmed = _search("1_1", 5, 100, InputSplitConfig(alpha_min_batch=1))
    assert outcome.status == "unsat"
    assert not confirmed
    assert outcome.stats.extra.get("alpha_bounded", 0) > 0


def test_small_sets_of_stalled_boxes_are_split_again_without_alpha_crown() -> None:
    """1_1 prop_4 (unsat in expected.csv): a small search whose stalled boxes, when nothing else
    is queued, are fewer than ``alpha_min_batch``; they are split again instead of paying an
    alpha-CROWN pass each time, and the proof still completes."""
    outcomes, confirmed = {}, []
    for min_batch in (1, 64):
        outcomes[min_batch], found = _search("1_1", 4, 100, InputSplitConfig(alpha_min_batch=min_batch))
        confirmed += found
    assert all(o.status == "unsat" for o in outcomes.values()) and not confirmed
    assert outcomes[1].stats.extra.get("alpha_bounded", 0) > 0
    assert outcomes[64].stats.extra.get("alpha_bounded", 0) == 0


def test_a_round_stopped_inside_a_bound_pass_puts_its_domains_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline passing inside a round's bound pass (raised on the 4th pass here) leaves
    every domain of that round queued again, the queue count matching the stack; the resumed
    search then proves the instance (unsat in expected.csv). Dropping the round's domains
    instead would make the count fall and could prove a sat instance."""
    import verifier.bab.input_split as input_split
    from verifier.deadline import DeadlineExceeded

    path = ACAS / "onnx" / "ACASXU_run2a_1_1_batch_2000.onnx"
    graph = load_model(path)
    region = parse_vnnlib(ACAS / "vnnlib" / "prop_4.vnnlib").regions[0]
    bounds, attack = TorchGraph(graph, "cpu", torch.float64), TorchGraph(graph, "cpu", torch.float32)
    proof = RegionProof(bounds, region)
    oracle = OnnxOracle(path)
    search = InputSplitSearch(bounds, attack, region, proof.open, proof.lower, proof.upper,
                              lambda x: check_witness(oracle, region, x).valid)
    honest_call, honest_round = input_split._Bounder.__call__, InputSplitSearch._round
    calls, before = [0], [0]

    def failing(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 4:
            raise DeadlineExceeded()
        return honest_call(self, *args, **kwargs)

    def recording(self, batch, *args):  # type: ignore[no-untyped-def]
        before[0] = self.queued + batch.size  # the queue before this round popped its batch
        return honest_round(self, batch, *args)

    monkeypatch.setattr(input_split._Bounder, "__call__", failing)
    monkeypatch.setattr(InputSplitSearch, "_round", recording)
    assert search.run(Deadline.after(60)).status == "timeout"
    assert calls[0] == 4 and search.stack is not None
    assert search.queued == before[0] == sum(d.size for d in search.stack)
    monkeypatch.setattr(input_split._Bounder, "__call__", honest_call)
    assert search.run(Deadline.after(60)).status == "unsat"
