"""Proof certificates on a benchmark: write overhead, size, and independent checking.

    python benchmarks/certificates.py BENCHMARK_DIR [--filter REGEX] [--timeout 60] [--jobs 2]
        [--only-expected unsat] [--keep DIR] [--no-plain] [--out REPORT.md]

For every instance (``instances.csv``, expected verdicts from ``expected.csv`` when present),
one worker process (one torch thread) runs ``verify`` twice in a row: without a certificate,
then with ``certificate=``; each ``unsat`` certificate is then checked by ``verify_check``
(the independent checker, in the same worker, its own code only). Reported per instance and
in total: both verification times and their ratio (the write overhead: the search's proof
log plus the file), certificate nodes and bytes, the checker's verdict and its time. Timing
is the in-process ``verify`` time (load included, interpreter start-up not), so the ratio is
not diluted by start-up. Results go to ``REPORT.md`` and ``REPORT.jsonl``; ``--keep DIR``
keeps the certificates there (``NET__PROP.npz``), to check them again with ``verify-check``;
``--no-plain`` skips the run without a certificate (for the share of answers certified only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _instances(root: Path, pattern: str, only: str | None) -> list[tuple[str, str, float, str]]:
    expected: dict[tuple[str, str], str] = {}
    if (root / "expected.csv").exists():
        for row in csv.DictReader((root / "expected.csv").open()):
            expected[(row["onnx"], row["vnnlib"])] = row["expected"]
    found = []
    for onnx, vnnlib, timeout in csv.reader((root / "instances.csv").open()):
        verdict = expected.get((onnx, vnnlib), "?")
        if re.search(pattern, f"{onnx} {vnnlib}") and (only is None or verdict == only):
            found.append((onnx, vnnlib, float(timeout), verdict))
    return found


def _work(task: tuple[str, str, str, float, str, str | None, bool]) -> dict:
    root, onnx, vnnlib, timeout, expected, keep, plain_run = task
    import torch

    torch.set_num_threads(1)
    from verifier.api import verify
    from verify_check.cli import check

    model, spec = os.path.join(root, onnx), os.path.join(root, vnnlib)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "proof.npz")
        proved = verify(model, spec, timeout=timeout, certificate=path)
        plain = verify(model, spec, timeout=timeout) if plain_run else proved
        row = {"onnx": onnx, "vnnlib": vnnlib, "expected": expected, "status": plain.status.value,
               "time": round(plain.time, 3), "status_certified_run": proved.status.value,
               "time_certified_run": round(proved.time, 3), "certificate": proved.stats.get("certificate")}
        if os.path.exists(path):
            began = time.monotonic()
            code, message = check(model, spec, path)
            row.update(check_code=code, check=message, check_time=round(time.monotonic() - began, 3))
            if keep:
                name = f"{Path(onnx).stem}__{Path(vnnlib).stem}.npz"
                os.replace(path, os.path.join(keep, name))
    return row


def _report(rows: list[dict], command: str, out: Path) -> str:
    unsat = [r for r in rows if r["status_certified_run"] == "unsat"]
    valid = [r for r in unsat if r.get("check_code") == 0]
    t0, t1 = sum(r["time"] for r in rows), sum(r["time_certified_run"] for r in rows)
    both = [r for r in unsat if r["status"] == "unsat"]
    u0, u1 = sum(r["time"] for r in both), sum(r["time_certified_run"] for r in both)
    sizes = sorted(r["certificate"]["bytes"] for r in unsat if r.get("certificate"))
    checks = sum(r.get("check_time", 0.0) for r in unsat)
    lines = [f"# Certificates: {out.stem}", "",
             f"Machine: {platform.node()}, {platform.machine()}, Python {platform.python_version()}; "
             "one torch thread per worker.", f"Command: `{command}`", "",
             "| instances | unsat (certified run) | certificates valid | not valid | total time plain s | "
             "total time certified s | overhead | unsat-only overhead | median bytes | max bytes | check s total |",
             "|---|---|---|---|---|---|---|---|---|---|---|",
             f"| {len(rows)} | {len(unsat)} | {len(valid)} | {len(unsat) - len(valid)} | {t0:.1f} | {t1:.1f} | "
             f"{(t1 / t0 - 1) * 100 if t0 else 0:+.1f} % | {(u1 / u0 - 1) * 100 if u0 else 0:+.1f} % | "
             f"{sizes[len(sizes) // 2] if sizes else 0} | {sizes[-1] if sizes else 0} | "
             f"{checks:.1f} (verify: {u1:.1f}) |",
             "", "| instance | status | time s | certified run s | nodes | bytes | check | check s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cert = r.get("certificate") or {}
        lines.append(f"| {r['onnx']} {r['vnnlib']} | {r['status']}/{r['status_certified_run']} | {r['time']} | "
                     f"{r['time_certified_run']} | {cert.get('nodes', '')} | {cert.get('bytes', '')} | "
                     f"{r.get('check', '')} | {r.get('check_time', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """The command line (see the module docstring). Workers use one thread for numpy too."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("--filter", default="")
    parser.add_argument("--timeout", type=float, default=None, help="cap per run (default: the instance's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only-expected", default=None, help="only instances with this expected verdict")
    parser.add_argument("--keep", type=Path, default=None, help="keep the certificates in this folder")
    parser.add_argument("--no-plain", action="store_true", help="skip the runs without a certificate")
    parser.add_argument("--out", type=Path, default=Path("certificates.md"))
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    keep = str(args.keep.resolve()) if args.keep else None
    tasks = [(str(args.benchmark), o, v, min(t, args.timeout or t), e, keep, not args.no_plain)
             for o, v, t, e in _instances(args.benchmark, args.filter, args.only_expected)]
    rows = []
    jsonl = args.out.with_suffix(".jsonl")
    with ProcessPoolExecutor(args.jobs) as pool, jsonl.open("w") as handle:
        for row in pool.map(_work, tasks):
            rows.append(row)
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            print(row["onnx"], row["vnnlib"], row["status_certified_run"], row.get("check", ""), flush=True)
    args.out.write_text(_report(rows, "python " + " ".join(sys.argv), args.out))


if __name__ == "__main__":
    main()
