"""Which runs answered ``unknown`` with time left, and why: from the JSON-lines results that
``verify bench --results FILE.csv`` writes beside its CSV (``FILE.jsonl``).

    python benchmarks/time_left.py RESULTS.jsonl [MORE.jsonl ...] [--share 0.1] [--out REPORT.md]

Per benchmark: runs of our verifier, ``unknown`` answers, those with more than ``--share`` of
their timeout left, and of those the ones whose statistics say the branch-and-bound search
ran out of domains to split undecided (``"search_exhausted": true``). Every other early
``unknown`` is listed with the steps its seconds went to: the verifier gave up with time
left, which the issue tracker counts as a defect.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def _rows(paths: list[Path]) -> list[dict]:
    """The verifier's rows of the files, the last row per instance (a resumed run repeats none)."""
    latest: dict[tuple[str, str, str], dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if row and row.get("tool") == "verifier":
                latest[(row["benchmark"], row["onnx"], row["vnnlib"])] = row
    return list(latest.values())


def _early(row: dict, share: float) -> bool:
    timeout = float(row.get("timeout") or 0)
    return row["status"] == "unknown" and timeout > 0 and float(row["time"]) < (1 - share) * timeout


def report(paths: list[Path], share: float) -> list[str]:
    """The Markdown lines: one table row per benchmark, then the early unknowns not exhausted."""
    rows = _rows(paths)
    per: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        per[row["benchmark"]].append(row)
    lines = [f"Results: {', '.join(str(p) for p in paths)}; early means more than {share:.0%} of the timeout left.",
             "", "| benchmark | runs | unknown | early unknown | of which search exhausted |", "|---|---|---|---|---|"]
    others = []
    for bench, group in sorted(per.items()):
        early = [r for r in group if _early(r, share)]
        exhausted = [r for r in early if (r.get("stats") or {}).get("search_exhausted")]
        unknown = sum(r["status"] == "unknown" for r in group)
        lines.append(f"| {bench} | {len(group)} | {unknown} | {len(early)} | {len(exhausted)} |")
        others += [r for r in early if r not in exhausted]
    lines += ["", f"Early unknowns without an exhausted search: {len(others)}."]
    for row in others:
        seconds = (row.get("stats") or {}).get("seconds", {})
        spent = ", ".join(f"{k} {v:.1f}" for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])[:4])
        lines.append(f"- {row['benchmark']} {row['onnx']} {row['vnnlib']}: {row['time']:.1f} of "
                     f"{row['timeout']:.0f} s ({spent})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = "\n".join(["# Unknown answers with time left", "", *report(args.results, args.share)]) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
