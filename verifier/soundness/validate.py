"""``verify soundness validate``: checks a generated benchmark's planted counterexamples.

For every line of ``counterexamples.jsonl``: the point, run through onnxruntime on the
exported ONNX file, must lie in the property's box and violate it (the strict re-check of
:func:`verifier.witness.check_witness`); and our own falsifier (sampling + PGD at its default
budget, :func:`verifier.attack.falsify_region`) is run on the property to measure how often it
finds *some* counterexample: the lower that rate, the better hidden the planted ones are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from verifier.errors import InputError
from verifier.spec.types import Region
from verifier.witness import OnnxOracle


@dataclass(frozen=True)
class PlantedCheck:
    """The validation of one planted instance: whether onnxruntime confirms the planted point,
    why not when it does not, and whether our default PGD found a counterexample."""

    onnx: str
    vnnlib: str
    architecture: str
    confirmed: bool
    reason: str
    found_by_pgd: bool


def check_planted_point(oracle: OnnxOracle, region: Region, x: np.ndarray) -> tuple[bool, str]:
    """Whether ``x`` is a counterexample of ``region`` exactly as written: every value a float32
    number inside the box (no snapping), and onnxruntime's output satisfying some clause
    (:func:`verifier.witness.check_witness`, with its rounding margin)."""
    from verifier.witness import check_witness

    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size != region.lower.size:
        return False, f"{x.size} values, the property has {region.lower.size} inputs"
    if not np.array_equal(x.astype(np.float32).astype(np.float64), x):
        return False, "not float32 values"
    if not (np.all(x >= region.lower) and np.all(x <= region.upper)):
        return False, "outside the property's box"
    check = check_witness(oracle, region, x)
    return check.valid, check.reason


def read_counterexamples(folder: Path) -> list[dict[str, object]]:
    """The lines of ``folder/counterexamples.jsonl``.

    Raises:
        InputError: a missing file or a malformed line (named by its number).
    """
    path = folder / "counterexamples.jsonl"
    if not path.is_file():
        raise InputError(f"{path}: no such file (is {folder} a generated soundness benchmark?)")
    lines = []
    from verifier.bench.instances import read_utf8

    for number, text in enumerate(read_utf8(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            if not isinstance(line, dict) or not {"onnx", "vnnlib", "x"} <= set(line):
                raise ValueError("needs onnx, vnnlib and x")
        except ValueError as exc:
            raise InputError(f"{path}:{number}: {exc}") from None
        lines.append(line)
    return lines


def _architectures(folder: Path) -> dict[tuple[str, str], str]:
    import csv

    path = folder / "info.csv"
    if not path.is_file():
        return {}
    from verifier.bench.instances import read_utf8

    try:
        rows = list(csv.DictReader(read_utf8(path).splitlines()))
        return {(r["onnx"], r["vnnlib"]): f"{r['architecture']} {r['activation']}" for r in rows}
    except (KeyError, csv.Error) as exc:
        raise InputError(f"{path}: not an info.csv of a soundness benchmark ({exc})") from None


def validate(folder: Path, seed: int = 0, on_done: Callable[[PlantedCheck], None] | None = None) -> list[PlantedCheck]:
    """Validates every planted counterexample of the benchmark in ``folder`` (see the module
    docstring); ``on_done`` is called after each one."""
    from verifier.attack import falsify_region
    from verifier.config import AttackConfig
    from verifier.deadline import Deadline
    from verifier.graph.torch_graph import TorchGraph
    from verifier.problem import load_problem
    from verifier.witness import check_witness

    names = _architectures(folder)
    checks = []
    for line in read_counterexamples(folder):
        onnx_rel, vnnlib_rel = str(line["onnx"]), str(line["vnnlib"])
        problem = load_problem(folder / onnx_rel, folder / vnnlib_rel)
        oracle = OnnxOracle(folder / onnx_rel)
        region = problem.spec.regions[0]
        confirmed, reason = check_planted_point(oracle, region, np.asarray(line["x"], dtype=np.float64))
        tgraph = TorchGraph(problem.graph, "cpu", torch.float32)

        def confirm(x: np.ndarray, oracle: OnnxOracle = oracle, region: Region = region) -> bool:
            return check_witness(oracle, region, x).valid

        found, _ = falsify_region(tgraph, region, AttackConfig(), Deadline.after(None), confirm, seed)
        result = PlantedCheck(onnx_rel, vnnlib_rel, names.get((onnx_rel, vnnlib_rel), "?"), confirmed, reason,
                              found is not None)
        checks.append(result)
        if on_done is not None:
            on_done(result)
    return checks


def validation_table(checks: list[PlantedCheck]) -> str:
    """Markdown: per architecture, planted instances, confirmed by onnxruntime, and found by
    our default PGD (count and rate), then the totals."""
    groups: dict[str, list[PlantedCheck]] = defaultdict(list)
    for check in checks:
        groups[check.architecture].append(check)
        groups["**all**"].append(check)
    lines = ["| architecture | planted | confirmed by onnxruntime | found by our PGD | PGD rate |",
             "|---|---|---|---|---|"]
    for name in sorted(groups, key=lambda n: (n == "**all**", n)):
        group = groups[name]
        found = sum(c.found_by_pgd for c in group)
        lines.append(f"| {name} | {len(group)} | {sum(c.confirmed for c in group)} | {found} "
                     f"| {100.0 * found / len(group):.0f} % |")
    return "\n".join(lines)
