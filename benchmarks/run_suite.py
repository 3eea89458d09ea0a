"""Runs every instance of a VNN-COMP-style benchmark folder through the ``verify`` CLI.

Usage:
    python benchmarks/run_suite.py benchmarks/acasxu --timeout 10 --jobs 2 --results out/acasxu.csv

Each instance runs in its own process (``python -m verifier.cli MODEL SPEC --timeout T --json``);
the verdict is compared with expected.csv. Prints counts by verdict, disagreements, solved
known-sat instances and the total wall time, and writes one CSV row per instance.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(folder: Path, onnx_rel: str, spec_rel: str, timeout: float, threads: int,
            extra: list[str] | None = None) -> dict[str, object]:
    """Runs one instance with ``threads`` torch threads (``extra``: more CLI options); returns
    its status, time and exit code."""
    start = time.monotonic()
    cmd = [sys.executable, "-m", "verifier.cli", str(folder / onnx_rel), str(folder / spec_rel),
           "--timeout", str(timeout), "--json", *(extra or [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60, env=env)
    wall = time.monotonic() - start
    try:
        payload = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        payload = {"status": "error", "time": wall, "error": proc.stderr[-500:]}
    return {"onnx": onnx_rel, "vnnlib": spec_rel, "status": payload["status"], "time": payload.get("time", wall),
            "wall": round(wall, 3), "exit": proc.returncode, "error": payload.get("error")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--timeout", type=float, default=None, help="per instance (default: instances.csv)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--bab", default=None, help="passed to verify --bab (e.g. none: incomplete methods only)")
    args = parser.parse_args()
    with (args.folder / "instances.csv").open() as handle:
        rows = [r for r in csv.reader(handle) if r][: args.limit]
    expected = {}
    with (args.folder / "expected.csv").open() as handle:
        for row in csv.DictReader(handle):
            expected[(row["onnx"].strip(), row["vnnlib"].strip())] = row["expected"].strip()
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, args.folder, r[0].strip(), r[1].strip(),
                               args.timeout if args.timeout is not None else float(r[2]), threads,
                               ["--bab", args.bab] if args.bab else None) for r in rows]
        results = []
        for i, fut in enumerate(futures):
            res = fut.result()
            res["expected"] = expected.get((res["onnx"], res["vnnlib"]), "unknown")
            results.append(res)
            print(f"[{i + 1}/{len(rows)}] {res['onnx']} {res['vnnlib']}: {res['status']} "
                  f"(expected {res['expected']}, {res['time']:.2f} s)", flush=True)
    total = time.monotonic() - start
    wrong = [r for r in results if r["status"] in ("sat", "unsat") and r["expected"] in ("sat", "unsat")
             and r["status"] != r["expected"]]
    counts = Counter(str(r["status"]) for r in results)
    known_sat = sum(1 for r in results if r["expected"] == "sat")
    found_sat = sum(1 for r in results if r["expected"] == "sat" and r["status"] == "sat")
    print(f"verdicts: {dict(sorted(counts.items()))}")
    print(f"disagreements with expected.csv: {len(wrong)} {[(r['onnx'], r['vnnlib']) for r in wrong]}")
    print(f"known-sat instances found sat: {found_sat}/{known_sat}")
    solved = [r for r in results if r["status"] in ("sat", "unsat")]
    print(f"solved: {len(solved)}/{len(results)}; sum of solved times: {sum(float(r['time']) for r in solved):.1f} s")
    print(f"sum of per-instance times: {sum(float(r['time']) for r in results):.1f} s; wall: {total:.1f} s "
          f"with {args.jobs} job(s)")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
    return 1 if wrong or counts.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
