"""Falsification alone on the shared benchmarks' known-sat instances: counterexamples found and the
time to the first one, per attack configuration, side by side on the same instances.

    python benchmarks/bench_attack.py [--root ../shared/benchmarks] [--sample 8] [--seed 0]
        [--time-limit 10] [--portfolios 0.02 0.5,0.02] [--out benchmarks/results/attack_step.md]

For each benchmark folder of ``--root`` it draws ``--sample`` instances whose ``expected.csv``
answer is ``sat`` (0: all), and runs :func:`verifier.attack.pgd.falsify_region` on each region of
the spec in turn, for at most ``--time-limit`` seconds per instance in all, once per portfolio of
PGD initial steps in ``--portfolios`` (``AttackConfig.step_fractions``, fractions of each input's
box width, comma-separated; the restarts take them in turn), optionally followed by ``/`` and the
Adam members' rates (``AttackConfig.adam_rates``; ``0.5,0.02/`` has none, a name without ``/``
keeps the default).
A point counts only when onnxruntime confirms it (:func:`verifier.witness.check_witness`), as
in the pipeline. One thread, this process; model loading is not timed.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from report import emit, header  # benchmarks/report.py

from verifier.attack.pgd import falsify_region
from verifier.config import AttackConfig
from verifier.deadline import Deadline
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import load_problem
from verifier.spec.types import Region
from verifier.witness import OnnxOracle, check_witness

HERE = Path(__file__).resolve().parent


def sat_instances(root: Path, sample: int, seed: int) -> list[tuple[str, Path, Path]]:
    """``(benchmark, onnx, vnnlib)`` of the sampled known-sat instances of every benchmark."""
    chosen = []
    for folder in sorted(p for p in root.iterdir() if (p / "expected.csv").exists()):
        rows = [r for r in csv.DictReader((folder / "expected.csv").open()) if r["expected"].strip() == "sat"]
        if sample and len(rows) > sample:
            rows = random.Random(f"{seed}:{folder.name}").sample(rows, sample)
        chosen += [(folder.name, folder / r["onnx"].strip(), folder / r["vnnlib"].strip()) for r in rows]
    return chosen


def time_to_counterexample(onnx: Path, vnnlib: Path, config: AttackConfig, seconds: float) -> float | None:
    """Seconds until a confirmed counterexample (None: none within ``seconds``)."""
    problem = load_problem(onnx, vnnlib)
    graph = TorchGraph(problem.graph, torch.device("cpu"), torch.float32)
    oracle = OnnxOracle(onnx)
    deadline = Deadline.after(seconds)
    start = time.monotonic()
    for region in problem.spec.regions:
        def confirm(x: np.ndarray, region: Region = region) -> bool:
            return check_witness(oracle, region, x).valid

        found, _ = falsify_region(graph, region, replace(config, time_limit=seconds), deadline, confirm, 0)
        if found is not None:
            return time.monotonic() - start
        if deadline.expired():
            break
    return None


def _portfolio(name: str) -> AttackConfig:
    """The attack options a ``--portfolios`` entry names (``signed fractions[/adam rates]``)."""
    signed, slash, adam = name.partition("/")
    fractions = tuple(float(f) for f in signed.split(","))
    if not slash:
        return AttackConfig(step_fractions=fractions)
    return AttackConfig(step_fractions=fractions, adam_rates=tuple(float(f) for f in adam.split(",") if f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "benchmarks")
    parser.add_argument("--sample", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--portfolios", nargs="+", default=["0.02", "0.5,0.02"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    instances = sat_instances(args.root, args.sample, args.seed)
    portfolios = {name: _portfolio(name) for name in args.portfolios}
    results: dict[tuple[str, str], list[float | None]] = {}
    for bench, onnx, vnnlib in instances:
        for name, config in portfolios.items():
            got = time_to_counterexample(onnx, vnnlib, config, args.time_limit)
            results.setdefault((bench, name), []).append(got)
            print(f"{bench} {onnx.name} {vnnlib.name} steps {name}: "
                  + ("not found" if got is None else f"{got:.2f} s"), flush=True)
    columns = " | ".join(f"steps {n}: found | steps {n}: seconds" for n in portfolios)
    lines = header("Falsification on known-sat instances, per portfolio of PGD initial steps")
    lines += ["Seconds: the sum of the times to a confirmed counterexample, a miss counting the limit.", "",
              f"| benchmark | instances | {columns} |", "|---|---|" + "---|---|" * len(portfolios)]
    for bench in [*sorted({b for b, _, _ in instances}), "**all**"]:
        cells = []
        for name in portfolios:
            times = [t for (b, n), ts in results.items() if n == name and bench in (b, "**all**") for t in ts]
            found = [t for t in times if t is not None]
            cells.append(f"{len(found)} | {sum(found) + args.time_limit * (len(times) - len(found)):.1f}")
        count = len([1 for b, _, _ in instances if bench in (b, "**all**")])
        lines.append(f"| {bench} | {count} | " + " | ".join(cells) + " |")
    emit(lines, args.out)


if __name__ == "__main__":
    main()
