"""Tightness of the low-rank SDP bound against CROWN, alpha-CROWN, the LP relaxation and the
exact MILP optimum, and what ``verify --method sdp`` proves that alpha-CROWN alone cannot.

Usage:
    python3 benchmarks/bench_sdp.py [--suite benchmarks/sdp] [--filter REGEX] [--device cpu]
        [--verify-timeout S] [--sdp-time 600] [--milp-time 300] [--no-verify]
        [--csv benchmarks/results/sdp_bounds.csv] [--table benchmarks/results/sdp_bounds.md]

For every instance (one input region) and every clause of its property, the lower bound of
the clause (the largest of its rows' bounds: the clause is refuted when it is positive) by

- ``crown``: CROWN;
- ``alpha``: alpha-CROWN (its default budget, no early stop), on its own copy of the bounds;
- ``lp``: the LP relaxation of the MILP encoding (HiGHS, every binary in ``[0, 1]``);
- ``sdp``: the certified low-rank SDP bound (``SdpConfig()`` defaults);
- ``milp``: the exact optimum of the encoding (HiGHS; its dual bound is also recorded).

CROWN, LP, SDP and MILP share CROWN's intermediate bounds, so the comparison is between
relaxations of one and the same program. The LP and MILP figures rest on the solver's
tolerances (comparison figures, see :func:`verifier.exact.milp_row_minimum`); the CROWN,
alpha and SDP figures are certified. An instance's figure per method is the smallest over
its clauses (the property holds when it is positive). ``gap closed`` is
``(sdp - alpha) / (milp - alpha)`` on instances where alpha is below the optimum.

Then, unless ``--no-verify``: ``verify --bab none`` (bounds, attacks and alpha-CROWN, no
branch and bound) and ``verify --method sdp`` (the same, then the SDP) on each instance, with
their verdicts and times. A row where a certified bound exceeds the MILP optimum by more than
``1e-5`` is flagged ``VIOLATION`` (it would be a soundness bug) and the exit code is 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from verifier.api import verify
from verifier.bench.instances import Instance, select_instances
from verifier.bounds.alpha import alpha_lower_bound
from verifier.bounds.crown import Crown
from verifier.bounds.objective import spec_rows
from verifier.config import DeviceConfig, VerifierConfig
from verifier.exact import MilpConfig, milp_row_minimum
from verifier.graph.torch_graph import TorchGraph
from verifier.problem import load_problem, proof_box
from verifier.sdp import sdp_clause_rows
from verifier.sdp.bound import encode_for_sdp
from verifier.spec.types import Clause

ROOT = Path(__file__).resolve().parent
METHODS = ("crown", "alpha", "lp", "sdp", "milp")
TOLERANCE = 1e-5  # a certified bound above the MILP optimum by more than this is flagged


@dataclass
class ClauseFigures:
    """One clause's bound and seconds per method (and the MILP's dual bound and status)."""

    bound: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    milp_dual: float = -math.inf
    milp_status: str = ""


def _timed(fn):  # type: ignore[no-untyped-def]
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def _crown(tgraph: TorchGraph, lower: torch.Tensor, upper: torch.Tensor) -> Crown:
    shape = tgraph.graph.inputs[0].shape
    with torch.no_grad():
        return Crown(tgraph, [lower.reshape(1, *shape)], [upper.reshape(1, *shape)])


def clause_figures(tgraph: TorchGraph, lower: torch.Tensor, upper: torch.Tensor, clause: Clause,
                   config: VerifierConfig, milp_time: float) -> ClauseFigures:
    """Every method's bound of one clause over the box ``[lower, upper]``."""
    out = ClauseFigures()
    crown, crown_seconds = _timed(lambda: _crown(tgraph, lower, upper))
    c = torch.as_tensor(clause.C)
    d = torch.as_tensor(clause.d)
    with torch.no_grad():
        rows, seconds = _timed(lambda: spec_rows(crown.lower_bound(c), d)[0])
    out.bound["crown"], out.seconds["crown"] = float(rows.max()), crown_seconds + seconds
    alpha_crown = _crown(tgraph, lower, upper)  # alpha-CROWN moves the slopes of its own copy
    rows, seconds = _timed(lambda: spec_rows(alpha_lower_bound(alpha_crown, c), d)[0])
    out.bound["alpha"], out.seconds["alpha"] = float(rows.max()), crown_seconds + seconds
    milp = MilpConfig(time_limit=milp_time)
    for method, relax in (("lp", True), ("milp", False)):
        start = time.monotonic()
        best, dual, status = -math.inf, -math.inf, "optimal"
        for r in range(clause.num_rows):
            found = milp_row_minimum(crown.table, np.asarray(clause.C[r], dtype=np.float64), float(clause.d[r]), milp,
                                     relax=relax)
            value = found.lower if relax else (found.value if found.value is not None else math.inf)
            best, dual = max(best, value), max(dual, found.lower)
            if found.status != "optimal":
                status = found.status
        out.bound[method], out.seconds[method] = best, time.monotonic() - start
        if not relax:
            out.milp_dual, out.milp_status = dual, status
    start = time.monotonic()
    sdp = sdp_clause_rows(crown.table, clause, config.sdp, seed=config.seed, encoding=encode_for_sdp(crown.table))
    out.bound["sdp"], out.seconds["sdp"] = float(sdp.lower.max()), time.monotonic() - start
    return out


@dataclass
class InstanceFigures:
    """An instance's clauses, and the verdicts of the two pipelines."""

    instance: Instance
    clauses: list[ClauseFigures]
    verdicts: dict[str, tuple[str, float]] = field(default_factory=dict)

    def bound(self, method: str) -> float:
        """The instance's bound: the smallest clause bound (positive: the property holds)."""
        return min(c.bound[method] for c in self.clauses)

    def seconds(self, method: str) -> float:
        return sum(c.seconds[method] for c in self.clauses)

    def gap_closed(self) -> float | None:
        alpha, sdp, exact = self.bound("alpha"), self.bound("sdp"), self.bound("milp")
        if not (math.isfinite(exact) and exact > alpha + 1e-6):
            return None
        return (sdp - alpha) / (exact - alpha)

    def violations(self) -> list[str]:
        """Certified bounds above the exact optimum (soundness bugs), per clause."""
        bad = []
        for index, clause in enumerate(self.clauses):
            for method in ("crown", "alpha", "sdp"):
                if clause.bound[method] > clause.bound["milp"] + TOLERANCE:
                    bad.append(f"clause {index}: {method} {clause.bound[method]:.6g} > milp {clause.bound['milp']:.6g}")
        return bad


def measure(instance: Instance, config: VerifierConfig, table_config: VerifierConfig, milp_time: float,
            verify_timeout: float | None) -> InstanceFigures:
    """The figures of one instance under ``table_config`` (and, with ``verify_timeout``, the two
    pipelines' verdicts under ``config``)."""
    problem = load_problem(instance.path(instance.onnx), instance.path(instance.vnnlib))
    dev = config.device
    tgraph = TorchGraph(problem.graph, dev.torch_device, dev.bounds_torch_dtype)
    figures = []
    for region in problem.spec.regions:
        lower, upper = proof_box(problem.graph, region, dev.torch_device)
        figures += [clause_figures(tgraph, lower, upper, clause, table_config, milp_time)
                    for clause in region.clauses]
    out = InstanceFigures(instance, figures)
    if verify_timeout is not None:
        model, spec = instance.path(instance.onnx), instance.path(instance.vnnlib)
        for name, run_config in (("alpha", replace(config, bab="none")), ("sdp", replace(config, method="sdp"))):
            result = verify(model, spec, verify_timeout, run_config)
            out.verdicts[name] = (result.status.value, result.time)
    return out


def _f(value: float) -> str:
    return f"{value:+.4f}" if math.isfinite(value) else str(value)


def write_csv(path: Path, rows: list[InstanceFigures]) -> None:
    """One line per clause: every method's bound and seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["onnx", "vnnlib", "expected", "clause"] + [f"{m}_bound" for m in METHODS]
                        + ["milp_dual", "milp_status"] + [f"{m}_seconds" for m in METHODS])
        for row in rows:
            for index, clause in enumerate(row.clauses):
                writer.writerow([row.instance.onnx, row.instance.vnnlib, row.instance.expected, index]
                                + [repr(clause.bound[m]) for m in METHODS]
                                + [repr(clause.milp_dual), clause.milp_status]
                                + [round(clause.seconds[m], 3) for m in METHODS])


def table(rows: list[InstanceFigures], machine: str) -> str:
    """The Markdown report: per instance bounds, gap closed, seconds and verdicts; a summary."""
    lines = [f"# Low-rank SDP against linear relaxations ({machine})", "",
             "Bounds are the smallest clause bound (positive: the property holds). Seconds are summed "
             "over the clauses. LP and MILP are HiGHS figures (not certified); the rest are certified.", "",
             "| instance | expected | CROWN | alpha | LP | SDP | MILP (exact) | gap closed | s alpha | s LP | s SDP "
             "| s MILP | verify alpha | verify sdp |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        gap = row.gap_closed()
        verdicts = [f"{row.verdicts[k][0]} ({row.verdicts[k][1]:.1f} s)" if k in row.verdicts else "-"
                    for k in ("alpha", "sdp")]
        lines.append("| " + " | ".join(
            [Path(row.instance.vnnlib).stem, row.instance.expected]
            + [_f(row.bound(m)) for m in METHODS]
            + ["-" if gap is None else f"{100 * gap:.0f} %"]
            + [f"{row.seconds(m):.1f}" for m in ("alpha", "lp", "sdp", "milp")] + verdicts) + " |")
    gaps = [g for g in (r.gap_closed() for r in rows) if g is not None]
    lines += ["", f"- instances: {len(rows)}; with alpha below the optimum: {len(gaps)}"]
    if gaps:
        lines.append(f"- gap closed by the SDP: median {100 * float(np.median(gaps)):.0f} %, at least half on "
                     f"{sum(g >= 0.5 for g in gaps)} of {len(gaps)}")
    for method in METHODS:
        lines.append(f"- positive {method} bound (proven by it alone): {sum(r.bound(method) > 0 for r in rows)}")
    if any(r.verdicts for r in rows):
        for name in ("alpha", "sdp"):
            proven = sum(r.verdicts.get(name, ("",))[0] == "unsat" for r in rows)
            lines.append(f"- `verify {'--bab none' if name == 'alpha' else '--method sdp'}` unsat: {proven}")
    bad = [f"{r.instance.vnnlib}: {v}" for r in rows for v in r.violations()]
    lines.append(f"- certified bounds above the exact optimum: {len(bad)}"
                 + "".join(f"\n  - VIOLATION {b}" for b in bad))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "sdp")
    parser.add_argument("--filter", default=None, help="regular expression on benchmark/onnx/vnnlib")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--milp-time", type=float, default=300.0, help="seconds per MILP row at most")
    parser.add_argument("--verify-timeout", type=float, default=None,
                        help="seconds per verify run (default: the instance's timeout)")
    parser.add_argument("--sdp-time", type=float, default=600.0,
                        help="seconds per SDP row at most (default 600: the iteration budgets decide, so "
                             "the bounds do not depend on the machine's load)")
    parser.add_argument("--no-verify", action="store_true", help="skip the verify runs")
    parser.add_argument("--csv", type=Path, default=ROOT / "results" / "sdp_bounds.csv")
    parser.add_argument("--table", type=Path, default=ROOT / "results" / "sdp_bounds.md")
    args = parser.parse_args(argv)
    config = VerifierConfig(device=DeviceConfig(device=args.device))
    table_config = replace(config, sdp=replace(config.sdp, time_limit=args.sdp_time))
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.device}"
    rows: list[InstanceFigures] = []
    for instance in select_instances([args.suite], pattern=args.filter):
        row = measure(instance, config, table_config, args.milp_time,
                      None if args.no_verify else args.verify_timeout or instance.timeout)
        rows.append(row)
        print(f"{instance.vnnlib}: " + " ".join(f"{m} {_f(row.bound(m))}" for m in METHODS)
              + "".join(f" | verify {k} {v[0]} {v[1]:.1f}s" for k, v in row.verdicts.items()), flush=True)
        write_csv(args.csv, rows)
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table(rows, machine))
    print(table(rows, machine))
    return 1 if any(r.violations() for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
