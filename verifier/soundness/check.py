"""``verify soundness check``: runs verifiers on a generated benchmark and reports their soundness.

The instances run through the benchmark runner (:mod:`verifier.bench`: the same tool
templates, process isolation, witness checks and resumable results file). Per tool the report
counts:

* **unsound claims**: ``unsat`` on an instance whose planted counterexample is known;
* **invalid witnesses**: ``sat`` whose assignment onnxruntime does not confirm;
* **valid counterexamples**: ``sat`` with a confirmed assignment;
* **contradicted ground truth**: a confirmed ``sat`` on an instance the generator proved
  ``unsat`` (that proof was wrong: our verifier has a bug);
* **proven**: ``unsat`` on an instance the generator proved ``unsat``;
* unknown, timeout and error answers.

A run *fails* when any tool made an unsound claim, gave an invalid witness or contradicted the
ground truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from verifier.bench.results import ResultRow
from verifier.soundness.validate import read_counterexamples


@dataclass
class SoundnessTally:
    """One tool's answers on a soundness benchmark (see the module docstring)."""

    instances: int = 0
    unsound_claims: int = 0
    invalid_witnesses: int = 0
    valid_counterexamples: int = 0
    contradicted_ground_truth: int = 0
    proven: int = 0
    unknown: int = 0
    timeout: int = 0
    error: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.unsound_claims or self.invalid_witnesses or self.contradicted_ground_truth)


def planted_keys(folder: Path) -> set[tuple[str, str]]:
    """``(onnx, vnnlib)`` of every instance of ``folder`` with a planted counterexample."""
    return {(str(line["onnx"]), str(line["vnnlib"])) for line in read_counterexamples(folder)}


def tally_soundness(rows: Sequence[ResultRow], planted: set[tuple[str, str]]) -> dict[str, SoundnessTally]:
    """Per tool, the :class:`SoundnessTally` of its result rows; ``planted`` holds the
    ``(onnx, vnnlib)`` pairs with known counterexamples."""
    table: dict[str, SoundnessTally] = defaultdict(SoundnessTally)
    for row in rows:
        t = table[row.tool]
        t.instances += 1
        known_sat = (row.onnx, row.vnnlib) in planted
        if row.status == "unsat":
            if known_sat:
                t.unsound_claims += 1
            elif row.expected == "unsat":
                t.proven += 1
        elif row.status == "sat":
            if row.witness != "valid":
                t.invalid_witnesses += 1
            elif row.expected == "unsat":
                t.contradicted_ground_truth += 1
            else:
                t.valid_counterexamples += 1
        elif row.status in ("unknown", "timeout", "error"):
            setattr(t, row.status, getattr(t, row.status) + 1)
    return dict(table)


def soundness_table(table: dict[str, SoundnessTally]) -> str:
    """The report as a markdown table, one line per tool, with a verdict column."""
    names = [f.name for f in fields(SoundnessTally)]
    head = "| tool | " + " | ".join(n.replace("_", " ") for n in names) + " | verdict |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for tool in sorted(table):
        t = table[tool]
        values = " | ".join(str(getattr(t, n)) for n in names)
        lines.append(f"| {tool} | {values} | {'UNSOUND' if t.failed else 'no soundness bug found'} |")
    return "\n".join(lines)


def unsound_rows(rows: Sequence[ResultRow], planted: set[tuple[str, str]]) -> list[ResultRow]:
    """The rows that make a run fail, for listing after the table."""
    bad = []
    for row in rows:
        if ((row.status == "unsat" and (row.onnx, row.vnnlib) in planted)
                or (row.status == "sat" and (row.witness != "valid" or row.expected == "unsat"))):
            bad.append(row)
    return bad
