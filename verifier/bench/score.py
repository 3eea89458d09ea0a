"""Scoring results the VNN-COMP 2023-2025 way: 10 points per correct verdict, -150 per wrong one.

A verdict is correct when it agrees with ``expected.csv``; a ``sat`` whose witness checks out
is correct even where the expected verdict is ``unknown`` (a valid counterexample is proof).
It is wrong when it disagrees with ``expected.csv``, when a ``sat`` witness is invalid, or when
an ``unsat`` meets a valid witness from another tool in the same results (the competition's
rule when tools disagree). Anything else (unknown, timeout, error, an ``unsat`` nobody can
check) scores nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from verifier.bench.results import ResultRow

CORRECT_POINTS, WRONG_POINTS = 10, -150


def judge(status: str, expected: str, witness: str) -> str:
    """``yes``, ``no`` or empty for one answer on its own (see the module docstring;
    ``witness``: ``valid``/``invalid`` for ``sat``)."""
    if status == "sat":
        return "yes" if witness == "valid" else "no"
    if status == "unsat":
        return {"unsat": "yes", "sat": "no"}.get(expected, "")
    return ""


def rescore(rows: Sequence[ResultRow]) -> list[str]:
    """The ``correct`` value of every row with the cross-tool rule applied: an ``unsat`` on an
    instance where some tool gave a valid witness is wrong."""
    refuted = {(r.benchmark, r.onnx, r.vnnlib) for r in rows if r.status == "sat" and r.witness == "valid"}
    out = []
    for r in rows:
        verdict = judge(r.status, r.expected, r.witness)
        if r.status == "unsat" and (r.benchmark, r.onnx, r.vnnlib) in refuted:
            verdict = "no"
        out.append(verdict)
    return out


@dataclass
class Tally:
    """Per (tool, benchmark): counts by verdict, correct and wrong answers, score and times."""

    instances: int = 0
    sat: int = 0
    unsat: int = 0
    unknown: int = 0
    timeout: int = 0
    error: int = 0
    correct: int = 0
    wrong: int = 0
    solved_time: float = 0.0
    total_time: float = 0.0

    @property
    def score(self) -> int:
        return CORRECT_POINTS * self.correct + WRONG_POINTS * self.wrong

    @property
    def mean_solved_time(self) -> float:
        return self.solved_time / self.correct if self.correct else 0.0


def tally(rows: Sequence[ResultRow]) -> dict[tuple[str, str], Tally]:
    """``(tool, benchmark) -> Tally``, and ``(tool, "all")`` over every benchmark."""
    table: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for row, verdict in zip(rows, rescore(rows), strict=True):
        for key in ((row.tool, row.benchmark), (row.tool, "all")):
            t = table[key]
            t.instances += 1
            if row.status in ("sat", "unsat", "unknown", "timeout", "error"):
                setattr(t, row.status, getattr(t, row.status) + 1)
            t.correct += verdict == "yes"
            t.wrong += verdict == "no"
            t.total_time += row.time
            if verdict == "yes":
                t.solved_time += row.time
    return dict(table)


def score_table(rows: Sequence[ResultRow]) -> str:
    """A markdown table of :func:`tally`, one line per tool and benchmark, then the totals."""
    table = tally(rows)
    head = ("| tool | benchmark | instances | sat | unsat | unknown | timeout | error | correct | wrong | score "
            "| mean time solved (s) | total time (s) |")
    lines = [head, "|" + "---|" * 13]
    order = sorted(table, key=lambda k: (k[0], k[1] == "all", k[1]))
    for tool, bench in order:
        t = table[(tool, bench)]
        name = "**all**" if bench == "all" else bench
        lines.append(f"| {tool} | {name} | {t.instances} | {t.sat} | {t.unsat} | {t.unknown} | {t.timeout} | {t.error} "
                     f"| {t.correct} | {t.wrong} | {t.score} | {t.mean_solved_time:.2f} | {t.total_time:.1f} |")
    return "\n".join(lines)
