"""Parse time against file size: VNN-LIB files of 1, 10 and 50 MB of hostile but valid shapes.

Usage (from the repository root)::

    python benchmarks/bench_parse_scaling.py                  # 1, 10 and 50 MB, every shape
    python benchmarks/bench_parse_scaling.py --sizes 1 10     # smaller sizes only

Shapes (each a valid property over 5 inputs and 5 outputs, as ACAS Xu's):

* ``comments``: prop_1-like asserts between long comment lines full of semicolons (the
  shape that made the old version-header regex backtrack exponentially);
* ``nesting``: asserts nested 2000 levels deep, ``(and (and ... (<= Y_0 c)))`` and
  ``(<= Y_1 (+ 1 (+ 1 ...)))``;
* ``bounds``: a CIFAR-like property whose input count grows with the size (one bound
  assert per line);
* ``v2-comments``: a VNN-LIB 2.0 query with the same comment lines.

Prints one row per file: its size, the parse time (median of ``--runs``), seconds per MB and
MB per second. Linear parsing shows as a flat seconds-per-MB column across sizes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    from verifier.spec.vnnlib import parse_vnnlib, read_vnnlib_text
    from verifier.spec.vnnlib2 import parse_query_text
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from verifier.spec.vnnlib import parse_vnnlib, read_vnnlib_text
    from verifier.spec.vnnlib2 import parse_query_text

MB = 1 << 20
_DECLARE = "".join(f"(declare-const X_{i} Real)\n" for i in range(5)) + \
    "".join(f"(declare-const Y_{j} Real)\n" for j in range(5))
_BOX = "".join(f"(assert (>= X_{i} -0.5))\n(assert (<= X_{i} 0.5))\n" for i in range(5))
_COMMENT = "; author: someone; date: 2026-12-02; license: MIT;;;; " + ";" * 200 + " note" * 100 + "\n"


def _fill(head: str, unit: Callable[[int], str], size: int, tail: str = "") -> str:
    """``head``, then ``unit(k)`` for k = 0, 1, ... until the text reaches ``size`` bytes."""
    parts, total, k = [head], len(head) + len(tail), 0
    while total < size:
        part = unit(k)
        parts.append(part)
        total += len(part)
        k += 1
    parts.append(tail)
    return "".join(parts)


def comments(size: int) -> str:
    return _fill(_COMMENT * 20 + _DECLARE + _BOX, lambda k: _COMMENT + f"(assert (<= Y_0 {1000 + k}))\n", size)


def nesting(size: int, depth: int = 2000) -> str:
    def unit(k: int) -> str:
        if k % 2:
            return "(assert " + "(and " * depth + f"(<= Y_0 {1000 + k})" + ")" * depth + ")\n"
        return "(assert (<= Y_1 " + "(+ 1 " * depth + "1" + ")" * depth + "))\n"
    return _fill(_DECLARE + _BOX, unit, size)


def bounds(size: int) -> str:
    line = len("(assert (<= X_100000 0.123456789012345))\n") * 2 + len("(declare-const X_100000 Real)\n")
    n = max(1, size // line)
    declare = "".join(f"(declare-const X_{i} Real)\n" for i in range(n)) + "(declare-const Y_0 Real)\n"
    box = "".join(f"(assert (>= X_{i} {0.1 + i * 1e-7!r}))\n(assert (<= X_{i} {0.2 + i * 1e-7!r}))\n" for i in range(n))
    return declare + box + "(assert (>= Y_0 0.5))\n"


def v2_comments(size: int) -> str:
    head = _COMMENT * 20 + "(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [1,5]) " \
        "(declare-output Y float32 [1,5]))\n" + "".join(f"(assert (<= -0.5 X[0,{i}] 0.5))\n" for i in range(5))
    return _fill(head, lambda k: _COMMENT + f"(assert (<= Y[0,0] {1000 + k}))\n", size)


SHAPES: dict[str, Callable[[int], str]] = {"comments": comments, "nesting": nesting, "bounds": bounds,
                                            "v2-comments": v2_comments}


def parse_file(path: Path, shape: str) -> None:
    """Parses the file as the verifier does (its version decides the parser)."""
    if shape.startswith("v2"):
        parse_query_text(read_vnnlib_text(path), str(path))
    else:
        parse_vnnlib(path)


def time_parse(path: Path, shape: str, runs: int) -> float:
    """Median wall-clock seconds of ``runs`` parses of ``path``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        parse_file(path, shape)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Writes each shape at each size to a temporary file, times the parser, prints a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 50], help="file sizes in MB")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    parser.add_argument("--runs", type=int, default=3, help="timed runs per file (median reported)")
    args = parser.parse_args(argv)
    print("| shape | size (MB) | parse (s) | s per MB | MB per s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes:
            for size in args.sizes:
                path = Path(tmp) / f"{shape}-{size}.vnnlib"
                path.write_text(SHAPES[shape](int(size * MB)))
                megabytes = path.stat().st_size / MB
                seconds = time_parse(path, shape, args.runs)
                print(f"| {shape} | {megabytes:.1f} | {seconds:.3f} | {seconds / megabytes:.3f} | "
                      f"{megabytes / seconds:.2f} |", flush=True)
                path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
