"""Checks kept certificates again with ``verify_check`` (one thread), e.g. after a checker change.

    python benchmarks/recheck_certificates.py BENCHMARK_DIR CERT_DIR [--out REPORT.md]

``CERT_DIR`` holds ``NET__PROP.npz`` files as ``benchmarks/certificates.py --keep`` writes them
(``NET.onnx`` under ``onnx/`` and ``PROP.vnnlib`` under ``vnnlib/`` of the benchmark folder).
Prints each verdict with its check time (in-process: interpreter start-up not counted) and
writes the totals to ``REPORT.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> None:
    """The command line (see the module docstring)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    from verify_check.cli import VALID, check

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("certificates", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines, total, valid, count = [], 0.0, 0, 0
    for path in sorted(args.certificates.glob("*.npz")):
        net, prop = path.stem.split("__")
        model, spec = args.benchmark / "onnx" / f"{net}.onnx", args.benchmark / "vnnlib" / f"{prop}.vnnlib"
        began = time.monotonic()
        code, message = check(str(model), str(spec), str(path))
        seconds = time.monotonic() - began
        total, valid, count = total + seconds, valid + (code == VALID), count + 1
        lines.append(f"| {net} {prop} | {path.stat().st_size} | {message} | {seconds:.3f} |")
        print(lines[-1], flush=True)
    summary = f"{count} certificates, {valid} valid, {total:.1f} s checking in all"
    print(summary)
    if args.out:
        args.out.write_text(f"# Re-check of {args.certificates}\n\nCommand: `python {' '.join(sys.argv)}`\n\n"
                            f"{summary}\n\n| instance | bytes | verdict | seconds |\n|---|---|---|---|\n"
                            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
