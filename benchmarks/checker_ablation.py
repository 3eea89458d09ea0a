"""What each of the checker's optional parts buys: kept certificates re-checked with one part off.

    python benchmarks/checker_ablation.py BENCHMARK_DIR CERT_DIR --variant NAME [--out REPORT.md]

``CERT_DIR`` holds ``NET__PROP.npz`` files as ``benchmarks/certificates.py --keep`` writes them.
Variants (each only makes the checker weaker or slower, never unsound: a part turned off
proves less, so a certificate valid with it off is valid with it on):

- ``base``: the checker as it is;
- ``no-forms``: without forward linear forms on small inputs (``bounds.MAX_INPUTS = 0``);
- ``crown-every-neuron``: without forms, but CROWN on every neuron of every ReLU input
  (stable ones too) instead of the unstable ones only: a smaller checker that does more work;
- ``no-slope-skip``: the pass with a node's given lower slopes run on every box (not only where
  they differ from the default ones at an unstable neuron: ``bounds._differs``);
- ``no-hand-on``: halves whose one child re-bounds them bounded fully (not handing intervals
  and forms on: ``tree._passes_on``);
- ``smallest``: ``crown-every-neuron``, ``no-slope-skip`` and ``no-hand-on`` together (the
  checker without all three parts, about 125 lines of code fewer).

Prints each certificate's verdict and check time (in-process, one thread) and the totals; the
question it answers is whether the checker could be smaller at the same verdicts and cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _crown_every_neuron() -> None:
    import numpy as np

    import verify_check.bounds as bounds

    def refine(chain, values, i, given):  # type: ignore[no-untyped-def]
        lo, hi = values.lo[i], values.hi[i]
        every = np.ones_like(lo, dtype=bool)
        lo[:], hi[:] = bounds._refine_group(chain, values, i, every, every.sum(axis=1), given)

    bounds.MAX_INPUTS = 0
    bounds._refine = refine


def _variants() -> dict[str, Callable[[], None]]:
    import numpy as np

    import verify_check.bounds as bounds
    import verify_check.tree as tree

    def no_forms() -> None:
        bounds.MAX_INPUTS = 0

    def no_slope_skip() -> None:
        bounds._differs = lambda chain, values, given, below: np.ones(values.lo[0].shape[0], dtype=bool)

    def no_hand_on() -> None:
        tree._passes_on = lambda tree_, node: False

    def smallest() -> None:
        _crown_every_neuron()
        no_slope_skip()
        no_hand_on()

    return {"base": lambda: None, "no-forms": no_forms, "crown-every-neuron": _crown_every_neuron,
            "no-slope-skip": no_slope_skip, "no-hand-on": no_hand_on, "smallest": smallest}


def main() -> None:
    """The command line (see the module docstring)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    from verify_check.cli import VALID, check

    variants = _variants()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", type=Path)
    parser.add_argument("certificates", type=Path)
    parser.add_argument("--variant", choices=sorted(variants), default="base")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    variants[args.variant]()
    total, failed, count = 0.0, [], 0
    for path in sorted(args.certificates.glob("*.npz")):
        net, prop = path.stem.split("__")
        spec = next(args.benchmark.glob(f"vnnlib/**/{prop}.vnnlib"))
        began = time.monotonic()
        code, message = check(str(args.benchmark / "onnx" / f"{net}.onnx"), str(spec), str(path))
        seconds = time.monotonic() - began
        total, count = total + seconds, count + 1
        if code != VALID:
            failed.append(f"{path.stem}: {message}")
        print(f"{path.stem} {seconds:.3f} {message}", flush=True)
    summary = f"variant {args.variant}: {count} certificates, {count - len(failed)} valid, {total:.1f} s checking"
    print(summary)
    if args.out:
        lines = "".join(f"- {line}\n" for line in failed)
        args.out.write_text(f"# Checker ablation: {args.variant}\n\nCommand: `python {' '.join(sys.argv)}`\n\n"
                            f"{summary}\n\n{lines}")


if __name__ == "__main__":
    main()
