"""The long fuzzing campaign of the ``verify`` command line.

    python benchmarks/fuzz_campaign.py --cases 10000 --seed 1 --jobs 2 --out benchmarks/results/fuzz/

Draws cases from the same hypothesis strategies as the CI slice (``tests/fuzz/cases.py``),
category by category in fixed shares, and runs them on ``--jobs`` fork servers in parallel
(``tests/fuzz/runner.py``: one interpreter per job imports the verifier once and forks a
child per case). Every case is checked against the documented contract and every ``sat`` /
``unsat`` verdict by the z3/onnxruntime oracles (``tests/fuzz/oracle.py``).

Writes to ``--out``: ``summary.json`` (counts by category, distinct failures), ``summary.md``
(the table this prints), ``cases.csv`` (one row per case) and ``failures/CATEGORY/NAME/``
(spec, model, ``command.txt``, stdout, stderr, ``record.json``) for every failing case.
Times are the wall time of the forked child, fork to exit: Python and torch start-up are not
included (they are, in the few ``e2e-subprocess`` cases).
"""

from __future__ import annotations

import argparse
import csv
import json
import queue
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

from tests.fuzz.cases import CATEGORIES, Case  # noqa: E402
from tests.fuzz.harness import Harness, Record  # noqa: E402

SHARES = {
    "vnnlib-grammar-acas": 0.10, "vnnlib-grammar-tiny": 0.16, "vnnlib-numeric-edge": 0.12,
    "vnnlib-invalid": 0.12, "vnnlib-mutate-real": 0.20, "vnnlib-comments": 0.03, "vnnlib-deep-nesting": 0.03,
    "onnx-mutate-acas": 0.08, "onnx-mutate-tiny": 0.08, "cli-values": 0.06, "sigint": 0.02,
}
"""Fractions of ``--cases`` per category (``e2e-subprocess`` gets ``--subprocess-cases``)."""
_DONE = object()


def plan(cases: int, subprocess_cases: int) -> dict[str, int]:
    """Cases per category."""
    counts = {name: max(1, round(cases * share)) for name, share in SHARES.items()}
    counts["e2e-subprocess"] = subprocess_cases
    return counts


def generate(counts: dict[str, int], seed: int, sink: queue.Queue[Any]) -> None:
    """Draws the planned number of cases of every category into ``sink`` (rounds of
    hypothesis generation until the count is reached, a fresh seed each round)."""
    for name, wanted in counts.items():
        produced = 0
        for attempt in range(50):
            if produced >= wanted:
                break
            produced += _draw_round(name, wanted - produced, seed * 1000 + attempt, sink)


def _draw_round(name: str, count: int, seed: int, sink: queue.Queue[Any]) -> int:
    """One hypothesis run putting at most ``count`` cases of category ``name`` into ``sink``
    (hypothesis stops early on categories with few distinct cases)."""
    produced = 0

    @settings(max_examples=count, database=None, deadline=None, derandomize=False,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis_seed(seed)
    @given(case=CATEGORIES[name])
    def draw(case: Case) -> None:
        nonlocal produced
        if produced < count:
            sink.put(case)
            produced += 1

    draw()
    return produced


class Campaign:
    """Worker threads, one harness (fork server) each, and the records they produce."""

    def __init__(self, out: Path, jobs: int, seed: int) -> None:
        """Starts ``jobs`` harnesses (their fork servers boot in the background)."""
        self.out = out
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=4 * jobs)
        self.scratch = tempfile.TemporaryDirectory(prefix="fuzz-campaign-")
        self.harnesses = [Harness(Path(self.scratch.name) / f"job{j}", out / "failures", seed * 100_000 + j, f"j{j}-")
                          for j in range(jobs)]
        self.threads = [threading.Thread(target=self.work, args=(h,), daemon=True) for h in self.harnesses]
        self.started = time.monotonic()
        self.total = 0

    def work(self, harness: Harness) -> None:
        """Runs cases from the queue until the end marker."""
        while (case := self.queue.get()) is not _DONE:
            try:
                record = harness.run(case)
            except Exception as exc:  # the harness itself failed: record it, keep going
                record = Record(case.category, case.label, case.expect.value, "fork", None, None, 0.0, None, False,
                                "error", f"harness: {type(exc).__name__}: {exc}", [f"harness error: {exc}"])
            with self.lock:
                self.records.append(record)
                self.progress()

    def progress(self) -> None:
        """A line every 100 cases: done, rate and time left."""
        done = len(self.records)
        if done % 100 and done != self.total:
            return
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed else 0.0
        left = (self.total - done) / rate if rate else float("inf")
        failing = sum(bool(r.violations) for r in self.records)
        print(f"  {done}/{self.total} cases, {rate:.2f}/s, {failing} failing, ~{left / 60:.1f} min left",
              file=sys.stderr, flush=True)

    def run(self, counts: dict[str, int], seed: int) -> float:
        """Generates and runs every case; returns the wall time."""
        self.total = sum(counts.values())
        for thread in self.threads:
            thread.start()
        try:
            generate(counts, seed, self.queue)
        finally:
            for _ in self.threads:
                self.queue.put(_DONE)
            for thread in self.threads:
                thread.join()
            for harness in self.harnesses:
                harness.close()
            self.scratch.cleanup()
        return time.monotonic() - self.started


# --------------------------------------------------------------------------- summaries

COLUMNS = ("total", "exit 0", "exit 10", "exit 20", "exit 30", "exit 2", "exit 3", "exit 4", "other exit",
           "tracebacks", "verdicts on bad input", "past timeout+1s", "hung (killed)", "oracle checked",
           "oracle failures", "no oracle", "oracle errors", "failing cases", "mean s")


def category_counts(records: list[Record]) -> dict[str, Any]:
    """The counts of one category (see :data:`COLUMNS`)."""
    codes = Counter(r.code for r in records)
    verdict = {"sat", "unsat", "unknown", "timeout"}

    def having(text: str) -> int:
        return sum(any(text in v for v in r.violations) for r in records)

    return {
        "total": len(records),
        **{f"exit {c}": codes.get(c, 0) for c in (0, 10, 20, 30, 2, 3, 4)},
        "other exit": sum(n for c, n in codes.items() if c not in (0, 10, 20, 30, 2, 3, 4)),
        "tracebacks": having("traceback printed"),
        "verdicts on bad input": sum(r.expect == "bad" and r.verdict in verdict for r in records),
        "past timeout+1s": having("past --timeout"),
        "hung (killed)": sum(r.killed for r in records),
        "oracle checked": sum(r.oracle == "checked" for r in records),
        "oracle failures": sum(r.oracle == "failed" for r in records),
        "no oracle": sum(r.oracle == "none" for r in records),
        "oracle errors": sum(r.oracle == "error" for r in records),
        "failing cases": sum(bool(r.violations) for r in records),
        "mean s": round(sum(r.wall for r in records) / max(1, len(records)), 3),
    }


def _signature(record: Record, violation: str) -> str:
    """A failure with its numbers blanked, plus the last stderr line (the error's kind)."""
    text = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", violation)
    text = re.sub(r"x=\[.*", "x=[...]", text)
    lines = [line for line in record.stderr_tail.splitlines() if line.strip()]
    last = re.sub(r"\d+", "N", lines[-1])[:160] if lines else ""
    return f"{text} | {last}"


def distinct_failures(records: list[Record]) -> list[dict[str, Any]]:
    """Failures grouped by category and signature, with a count and an example."""
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        for violation in record.violations:
            groups[(record.category, _signature(record, violation))].append(record)
    out = []
    for (category, signature), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        example = members[0]
        out.append({"category": category, "signature": signature, "count": len(members),
                    "example": example.saved, "label": example.label, "exit": example.code,
                    "violations": example.violations, "stderr_tail": example.stderr_tail[-300:]})
    return out


def markdown(table: dict[str, dict[str, Any]], wall: float, total: int) -> str:
    """The counts as a markdown table, and the speed."""
    lines = ["| category | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, counts in table.items():
        lines.append(f"| {name} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
    lines.append(f"\n{total} cases in {wall:.0f} s: {total / wall:.2f} cases/s "
                 f"({wall / max(1, total):.3f} s per case of wall time).")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, records: list[Record], wall: float, args: argparse.Namespace) -> str:
    """summary.json, summary.md, cases.csv; returns the markdown."""
    by_category: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_category[record.category].append(record)
    table = {name: category_counts(rs) for name, rs in sorted(by_category.items())}
    table["all"] = category_counts(records)
    text = markdown(table, wall, len(records))
    failures = distinct_failures(records)
    summary = {"cases": len(records), "seed": args.seed, "jobs": args.jobs, "wall_s": round(wall, 1),
               "cases_per_s": round(len(records) / wall, 3), "by_category": table, "distinct_failures": failures}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(text + "\n## Distinct failures\n\n" + "\n".join(
        f"- **{f['category']}** ×{f['count']}: `{f['signature']}` (e.g. `{f['example']}`)" for f in failures) + "\n")
    with (out / "cases.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["category", "label", "expect", "mode", "code", "signal", "wall", "verdict", "killed",
                         "oracle", "violations", "saved"])
        for r in records:
            writer.writerow([r.category, r.label, r.expect, r.mode, r.code, r.signal, r.wall, r.verdict, r.killed,
                             r.oracle, " | ".join(r.violations), r.saved])
    return text


def main(argv: list[str] | None = None) -> int:
    """Runs the campaign; exit 0 when no case failed, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="number of generated cases (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="generation seed (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel fork servers (default 2)")
    parser.add_argument("--subprocess-cases", type=int, default=6,
                        help="extra cases run as real 'python -m verifier.cli' processes (default 6)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz", help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = plan(args.cases, args.subprocess_cases)
    print(f"fuzz campaign: {sum(counts.values())} cases, seed {args.seed}, {args.jobs} jobs -> {args.out}",
          file=sys.stderr, flush=True)
    campaign = Campaign(args.out, args.jobs, args.seed)
    try:
        wall = campaign.run(counts, args.seed)
    except KeyboardInterrupt:
        wall = time.monotonic() - campaign.started
        print("interrupted: summarising the cases run so far", file=sys.stderr)
    print(write_outputs(args.out, campaign.records, wall, args))
    return 1 if any(r.violations for r in campaign.records) else 0


if __name__ == "__main__":
    sys.exit(main())
