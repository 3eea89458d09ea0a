"""Time the VNN-LIB parser on a CIFAR-size (3072-input) robustness property.

Usage (from the repository root)::

    python benchmarks/bench_parse.py                       # a bundled CIFAR spec, else synthetic
    python benchmarks/bench_parse.py path/to/spec.vnnlib   # any file
    python benchmarks/bench_parse.py --synthetic --runs 9

Prints the time of each run and the median. Without a path it uses the first ``*.vnnlib``
under ``benchmarks/`` whose path mentions cifar or oval21; if there is none it writes a synthetic
spec laid out like VNN-COMP's CIFAR files (6144 single-bound input asserts and a 9-way ``or``
over the outputs) to a temporary file.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from verifier.spec import parse_vnnlib
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from verifier.spec import parse_vnnlib

HERE = Path(__file__).resolve().parent


def synthetic_cifar_spec(num_inputs: int = 3072, num_classes: int = 10, label: int = 0) -> str:
    """The text of a VNN-COMP-style CIFAR robustness spec with random image and eps 2/255."""
    rng = random.Random(0)
    eps = 2.0 / 255.0
    lines = ["; synthetic CIFAR-style adversarial robustness property", ""]
    lines += [f"(declare-const X_{i} Real)" for i in range(num_inputs)]
    lines.append("")
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_classes)]
    lines += ["", "; Input constraints:"]
    for i in range(num_inputs):
        pixel = rng.random()
        lines.append(f"(assert (<= X_{i} {min(pixel + eps, 1.0)!r}))")
        lines.append(f"(assert (>= X_{i} {max(pixel - eps, 0.0)!r}))")
    lines += ["", "; Output constraints (encoding the conditions for a property counter-example):"]
    others = [j for j in range(num_classes) if j != label]
    lines.append("(assert (or")
    lines += [f"\t(and (>= Y_{j} Y_{label}))" for j in others]
    lines.append("))")
    return "\n".join(lines) + "\n"


def default_spec() -> Path | None:
    """A bundled CIFAR spec under benchmarks/, if any."""
    for path in sorted(HERE.rglob("*.vnnlib")):
        if "cifar" in str(path).lower() or "oval21" in str(path).lower():
            return path
    return None


def time_parse(path: Path, runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` parses of ``path`` (after one warm-up parse)."""
    parse_vnnlib(path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        parse_vnnlib(path)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, time the parser, print the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="a .vnnlib file to parse")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--synthetic", action="store_true", help="ignore bundled specs")
    parser.add_argument("--inputs", type=int, default=3072, help="synthetic spec size")
    args = parser.parse_args(argv)
    path = args.path or (None if args.synthetic else default_spec())
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            path = Path(tmp) / f"synthetic_cifar_{args.inputs}.vnnlib"
            path.write_text(synthetic_cifar_spec(args.inputs))
            label = f"synthetic {args.inputs}-input spec"
        else:
            label = str(path)
        spec = parse_vnnlib(path)
        times = time_parse(path, args.runs)
    num_clauses = sum(len(r.clauses) for r in spec.regions)
    print(
        f"{label}: {spec.num_inputs} inputs, {spec.num_outputs} outputs, "
        f"{len(spec.regions)} region(s), {num_clauses} clause(s)"
    )
    print("runs (s): " + " ".join(f"{t:.4f}" for t in times))
    print(f"median parse time: {statistics.median(times):.4f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
