"""Markdown summary of results: the score table, the wrong answers, invalid witnesses and errors."""

from __future__ import annotations

from collections.abc import Sequence

from verifier.bench.results import ResultRow
from verifier.bench.score import rescore, score_table


def markdown_report(rows: Sequence[ResultRow], sources: Sequence[str] = ()) -> str:
    """The report text (see the module docstring)."""
    lines = ["# Benchmark report", ""]
    if sources:
        lines += ["Results: " + ", ".join(f"`{s}`" for s in sources), ""]
    lines += ["## Scores (10 per correct answer, -150 per wrong one)", "", score_table(rows), ""]
    verdicts = rescore(rows)
    wrong = [(r, v) for r, v in zip(rows, verdicts, strict=True) if v == "no"]
    lines += ["## Wrong answers", ""]
    if wrong:
        lines += ["| tool | benchmark | onnx | vnnlib | status | expected | note |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r.tool} | {r.benchmark} | {r.onnx} | {r.vnnlib} | {r.status} | {r.expected} | {r.note} |"
                  for r, _ in wrong]
    else:
        lines.append("None.")
    errors = [r for r in rows if r.status == "error"]
    lines += ["", "## Errors", ""]
    if errors:
        lines += ["| tool | benchmark | onnx | vnnlib | note |", "|---|---|---|---|---|"]
        lines += [f"| {r.tool} | {r.benchmark} | {r.onnx} | {r.vnnlib} | {r.note} |" for r in errors]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
