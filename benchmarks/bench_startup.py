"""Start-up and per-instance overhead of ``verify MODEL SPEC``: where a cold run's time goes
before and after the first bound, and what a warm worker saves.

    python benchmarks/bench_startup.py [--repeats 5] [--root CHECKOUT] [--out FILE.md]

Prints (and with ``--out`` writes) four tables:

1. import time by top-level package (``python -X importtime`` of everything a run imports,
   self times summed per package, median over the repeats);
2. a cold run on an instance that CROWN proves at once (ACAS Xu 1_6 prop_3), whole-process
   wall time and the run's own stage times (``stats.seconds``: load, imports, setup, bounds);
3. the same instance through a warm worker (``verify --worker``), whole client-process time;
4. an instance that needs a short input-split search (ACAS Xu 2_1 prop_4), cold and warm.

``--root`` measures another checkout (``git worktree add /tmp/before COMMIT``): its package is
put first on ``PYTHONPATH`` and its ``python -m verifier.cli`` is run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
EASY = ("ACASXU_run2a_1_6_batch_2000.onnx", "prop_3.vnnlib")
SEARCH = ("ACASXU_run2a_2_1_batch_2000.onnx", "prop_4.vnnlib")
IMPORTS = "import verifier.cli, verifier.api, verifier.problem, verifier.graph.loader, verifier.witness"


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def import_times(root: Path) -> dict[str, float]:
    """Self import time in seconds per top-level package (one fresh interpreter)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORTS], cwd=root, env=_env(root),
                         capture_output=True, text=True, check=True).stderr
    totals: dict[str, float] = {}
    for line in err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1e6
    return totals


def timed_run(root: Path, instance: tuple[str, str], worker: Path | None = None) -> tuple[float, dict[str, float]]:
    """Whole-process wall time of ``verify MODEL SPEC --json`` and its stage seconds."""
    acas = HERE / "benchmarks" / "acasxu"
    command = [sys.executable, "-m", "verifier.cli", str(acas / "onnx" / instance[0]),
               str(acas / "vnnlib" / instance[1]), "--json", "--timeout", "60"]
    if worker is not None:
        command[3:3] = ["--worker", str(worker)]
    start = time.monotonic()
    out = subprocess.run(command, cwd=root, env=_env(root), capture_output=True, text=True).stdout
    wall = time.monotonic() - start
    payload = json.loads(out.strip().splitlines()[-1])
    return wall, payload.get("stats", {}).get("seconds", {})


def _median_table(title: str, runs: list[tuple[float, dict[str, float]]]) -> list[str]:
    keys = sorted({k for _, stages in runs for k in stages})
    lines = [f"### {title}", "", "| measure | median s |", "|---|---|",
             f"| whole process (launch to exit) | {statistics.median(w for w, _ in runs):.3f} |"]
    lines += [f"| stage: {k} | {statistics.median(s.get(k, 0.0) for _, s in runs):.3f} |" for k in keys]
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", type=Path, default=HERE, help="the checkout to measure")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.root.resolve()
    samples = [import_times(root) for _ in range(args.repeats)]
    packages = sorted({p for s in samples for p in s}, key=lambda p: -statistics.median(s.get(p, 0) for s in samples))
    total = statistics.median(sum(s.values()) for s in samples)
    lines = [f"# Start-up of {root}", "", f"Machine: {platform.node()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} cores; OMP_NUM_THREADS=1; median of {args.repeats}.", "",
             "### Import time by package (self times)", "", "| package | s |", "|---|---|"]
    lines += [f"| {p} | {statistics.median(s.get(p, 0.0) for s in samples):.3f} |" for p in packages[:12]]
    lines += [f"| **all imports** | {total:.3f} |", ""]
    for label, instance in (("CROWN-proven instance (1_6 prop_3)", EASY), ("short search (2_1 prop_4)", SEARCH)):
        lines += _median_table(f"cold: {label}", [timed_run(root, instance) for _ in range(args.repeats)])
        with tempfile.TemporaryDirectory() as folder:
            socket = Path(folder) / "w.sock"
            server = subprocess.Popen([sys.executable, "-m", "verifier.cli", "worker", str(socket)], cwd=root,
                                      env=_env(root), stdout=subprocess.PIPE, text=True)
            ready = server.stdout.readline().strip() == "ready" if server.stdout else False
            if ready:
                runs = [timed_run(root, instance, socket) for _ in range(args.repeats)]
                lines += _median_table(f"warm worker: {label}", runs)
            else:
                lines += [f"### warm worker: {label}", "", "(this checkout has no warm worker)", ""]
            server.terminate()
            server.wait()
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
