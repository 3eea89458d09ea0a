"""Deadline probe: the largest network of each benchmark, run with a short ``--timeout``, must
answer by itself (not through the watchdog) within one second of the limit, with statistics.

    python benchmarks/deadline_probe.py [--root ../shared/benchmarks | --root benchmarks/deadline]
        [--timeout 10] [--out benchmarks/results/deadline_probe.md] [--filter REGEX]
    python benchmarks/deadline_probe.py --bundle benchmarks/deadline   # refresh the bundled set

For every benchmark folder under ``--root`` (or every row of ``--root``'s own
``instances.csv``, a bundle written by ``--bundle``) (the VNN-COMP layout: ``instances.csv``, and
``expected.csv`` when there is one) it takes the largest ONNX file by size and, of that
network's instances, the first whose expected verdict is not ``sat`` (a proof is what runs
longest), else the first. Each runs as a fresh ``verify --json --timeout T`` process (the
console script's function, without a shell wrapper); the table
gives the verdict, the whole-process wall time, the overshoot past ``T``, whether the watchdog
answered, and the stage times the run reported. The exit status is 1 when any run overshoots
by more than a second, is answered by the watchdog or has no statistics.

``--bundle DIR`` runs nothing: it writes the picked instances (and the generator network of
``benchmarks/make_generator.py``) to ``DIR/instances.csv``, their expected verdicts to
``DIR/expected.csv``, as a benchmark folder that
``tests/test_deadlines.py`` and ``--root DIR`` use, copying a file into ``DIR/onnx`` or
``DIR/vnnlib`` only when the repository does not hold an identical one already (then the row
names it by a relative path).
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_OVERSHOOT = 1.0


def pick_instance(folder: Path) -> tuple[Path, Path] | None:
    """The largest network of a benchmark folder and one of its instances (see the module)."""
    rows = [r for r in csv.reader((folder / "instances.csv").open()) if len(r) >= 2]
    if not rows:
        return None
    largest = max(sorted({r[0].strip() for r in rows}), key=lambda p: (folder / p).stat().st_size)
    expected: dict[tuple[str, str], str] = {}
    if (folder / "expected.csv").exists():
        expected = {(r["onnx"], r["vnnlib"]): r["expected"] for r in csv.DictReader((folder / "expected.csv").open())}
    mine = [r for r in rows if r[0].strip() == largest]
    hard = [r for r in mine if expected.get((r[0].strip(), r[1].strip()), "unknown") != "sat"]
    onnx, vnnlib = (hard or mine)[0][:2]
    return folder / onnx.strip(), folder / vnnlib.strip()


def _bundle_path(source: Path, bundle: Path, kind: str) -> str:
    """``source`` as a path relative to ``bundle``: an identical file already in the repository,
    else a copy made in ``bundle/kind``."""
    size = source.stat().st_size
    for found in sorted((ROOT / "benchmarks").rglob("*" + source.suffix)):
        if bundle not in found.parents and found.stat().st_size == size and filecmp.cmp(found, source, shallow=False):
            return os.path.relpath(found, bundle)
    (bundle / kind).mkdir(parents=True, exist_ok=True)
    shutil.copy(source, bundle / kind / source.name)
    return f"{kind}/{source.name}"


def write_bundle(root: Path, bundle: Path, timeout: float) -> None:
    """Writes the picked instance of every benchmark under ``root`` and the generator network's
    narrow property to ``bundle/instances.csv`` (see the module docstring)."""
    rows, expected = [], [["onnx", "vnnlib", "expected"]]
    for folder in sorted(p for p in root.iterdir() if (p / "instances.csv").exists()):
        picked = pick_instance(folder)
        if picked is not None:
            row = [_bundle_path(picked[0], bundle, "onnx"), _bundle_path(picked[1], bundle, "vnnlib")]
            rows.append([*row, repr(timeout)])
            expected.append([*row, _expected(folder, *picked)])
    generator = ROOT / "benchmarks" / "generator"
    row = [os.path.relpath(generator / "onnx" / "generator.onnx", bundle),
           os.path.relpath(generator / "vnnlib" / "generator_narrow.vnnlib", bundle)]
    rows.append([*row, repr(timeout)])
    expected.append([*row, "unknown"])
    for name, table in (("instances.csv", rows), ("expected.csv", expected)):
        with (bundle / name).open("w", newline="") as handle:
            csv.writer(handle).writerows(table)


def _expected(folder: Path, onnx: Path, vnnlib: Path) -> str:
    """The benchmark's expected verdict of an instance (``unknown`` without one)."""
    if not (folder / "expected.csv").exists():
        return "unknown"
    for row in csv.DictReader((folder / "expected.csv").open()):
        if folder / row["onnx"].strip() == onnx and folder / row["vnnlib"].strip() == vnnlib:
            return row["expected"].strip()
    return "unknown"


def _instances(root: Path, pattern: str | None) -> list[tuple[str, Path, Path]]:
    """(name, model, spec) to run: every row of ``root/instances.csv`` when there is one (a
    bundle), else the pick of every benchmark folder under ``root``."""
    if (root / "instances.csv").exists():
        rows = [r for r in csv.reader((root / "instances.csv").open()) if len(r) >= 2]
        found = [(Path(r[0]).stem, root / r[0], root / r[1]) for r in rows]
    else:
        found = []
        for folder in sorted(p for p in root.iterdir() if (p / "instances.csv").exists()):
            picked = pick_instance(folder)
            if picked is not None:
                found.append((folder.name, *picked))
    return [item for item in found if not pattern or re.search(pattern, item[0])]


def run_one(onnx: Path, vnnlib: Path, timeout: float) -> dict[str, object]:
    """Runs ``verify --json`` once and returns its verdict, wall time and statistics."""
    command = [sys.executable, "-c", "import sys; from verifier.entry import verify; sys.exit(verify())",
               "--json", "--timeout", repr(timeout), str(onnx), str(vnnlib)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=timeout + 60)
    wall = time.monotonic() - start
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        answer = {"status": f"no JSON (exit {done.returncode})", "stats": {}, "error": done.stderr[-300:]}
    stats = answer.get("stats") or {}
    return {"status": answer.get("status"), "wall": wall, "overshoot": wall - timeout,
            "watchdog": bool(stats.get("watchdog")), "stats": stats, "error": answer.get("error")}


def _row(name: str, onnx: Path, result: dict[str, object]) -> str:
    stats = result["stats"]
    assert isinstance(stats, dict)
    seconds = stats.get("seconds", {})
    stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])[:4])
    return (f"| {name} | {onnx.name} | {result['status']} | {result['wall']:.2f} | {result['overshoot']:+.2f} "
            f"| {'yes' if result['watchdog'] else 'no'} | {stages} |")


def failed(result: dict[str, object]) -> bool:
    """A run that breaks the deadline contract (see the module docstring)."""
    overshoot = result["overshoot"]
    assert isinstance(overshoot, float)
    return overshoot > ALLOWED_OVERSHOOT or bool(result["watchdog"]) or not result["stats"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT.parent / "shared" / "benchmarks")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--filter", help="only benchmarks (bundle rows: networks) whose name matches this regex")
    parser.add_argument("--bundle", type=Path, help="write the picked instances here instead of running them")
    args = parser.parse_args()
    if args.bundle:
        args.bundle.mkdir(parents=True, exist_ok=True)
        write_bundle(args.root, args.bundle.resolve(), args.timeout)
        return 0
    lines = [f"# Deadline probe (--timeout {args.timeout:g})", "",
             f"Machine: {platform.node()}, Python {platform.python_version()}; command: "
             f"`python benchmarks/deadline_probe.py --root {args.root} --timeout {args.timeout:g}`", "",
             "| benchmark | network | verdict | wall s | past limit s | watchdog | longest stages (s) |",
             "|---|---|---|---|---|---|---|"]
    bad = 0
    for name, onnx, vnnlib in _instances(args.root, args.filter):
        result = run_one(onnx, vnnlib, args.timeout)
        bad += failed(result)
        lines.append(_row(name, onnx, result))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
