"""Replays recorded rounds of an ACAS Xu input-split search: torch calls and time per bound pass.

Whole-run timings on a shared VM drift by 10-30 % between runs, more than a change to the
bound engine is worth; this script measures such a change on fixed work instead. It records
the bounder's calls (boxes, priors, parent rows) from rounds of a real search, then replays
them, counting the torch calls made (deterministic) and timing the replay (median and best of
``--repeats``). To compare two commits, record once and replay the same file in each
checkout, alternating:

    python benchmarks/bench_search_rounds.py --record /tmp/rounds.pt     # records, then replays
    python benchmarks/bench_search_rounds.py --replay /tmp/rounds.pt     # in the other checkout

One thread; ``--network 3_3 --prop prop_2`` (a near-violation: the hardest search) by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from verifier.allocator import keep_freed_memory  # noqa: E402
from verifier.api import verify_problem  # noqa: E402
from verifier.bab import input_split  # noqa: E402
from verifier.config import default_config  # noqa: E402
from verifier.graph.torch_graph import TorchGraph  # noqa: E402
from verifier.problem import load_problem  # noqa: E402


class _Count(TorchFunctionMode):
    """Counts torch function calls (tensor methods included)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _record(problem, first: int, count: int, seconds: float) -> list[tuple]:
    """Runs the search, keeping the bounder calls ``first`` to ``first + count``."""
    calls: list[tuple] = []
    seen = [0]
    original = input_split._Bounder.__call__

    def hook(self, lower, upper, open_, prior, rows, scoring=False):  # type: ignore[no-untyped-def]
        if first <= seen[0] < first + count:
            calls.append((lower.clone(), upper.clone(), open_.clone(),
                          {k: (v[0].clone(), v[1].clone()) for k, v in prior.items()}, rows.clone(), scoring))
        seen[0] += 1
        return original(self, lower, upper, open_, prior, rows, scoring)

    input_split._Bounder.__call__ = hook
    try:
        verify_problem(problem, seconds, default_config("cpu", 0))
    finally:
        input_split._Bounder.__call__ = original
    return calls


def _measure(run: Callable[[], None], repeats: int) -> tuple[int, float, float]:
    """Torch calls of one run, then the median and best time of ``repeats`` runs."""
    with torch.no_grad():
        run()
        with _Count() as counter:
            run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return counter.calls, statistics.median(times), min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="3_3")
    parser.add_argument("--prop", default="prop_2")
    parser.add_argument("--record", type=Path, help="record the calls to this file first")
    parser.add_argument("--replay", type=Path, help="replay the calls recorded in this file")
    parser.add_argument("--first", type=int, default=40, help="first recorded call (default 40)")
    parser.add_argument("--count", type=int, default=40, help="calls recorded (default 40)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()  # as the command lines do
    acas = ROOT / "benchmarks" / "acasxu"
    problem = load_problem(acas / f"onnx/ACASXU_run2a_{args.network}_batch_2000.onnx",
                           acas / f"vnnlib/{args.prop}.vnnlib")
    path = args.record or args.replay
    if path is None:
        parser.error("give --record FILE or --replay FILE")
    if args.record:
        torch.save(_record(problem, args.first, args.count, 60.0), args.record)
    calls = torch.load(path, weights_only=False)
    region = problem.spec.regions[0]
    lower = torch.as_tensor(region.lower, dtype=torch.float64).reshape(-1)
    upper = torch.as_tensor(region.upper, dtype=torch.float64).reshape(-1)
    bounder = input_split._Bounder(TorchGraph(problem.graph, "cpu", torch.float64), region.clauses, upper - lower,
                                   default_config("cpu", 0).input_split)
    for scoring, label in ((True, "scoring (forward-mode) passes"), (False, "full (backward) passes")):
        chosen = [c for c in calls if c[5] == scoring]
        boxes = sum(int(c[0].shape[0]) for c in chosen)

        def run(chosen: list[tuple] = chosen) -> None:
            for lower_, upper_, open_, prior, rows, scoring_ in chosen:
                bounder(lower_, upper_, open_, prior, rows, scoring_)

        torch_calls, median, best = _measure(run, args.repeats)
        print(f"{label}: {len(chosen)} calls, {boxes} boxes: {torch_calls} torch calls, "
              f"median {median * 1000:.0f} ms, best {best * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
