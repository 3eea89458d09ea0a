"""Certificates on the 300 random networks of the complete-method cross-check, in the default mode
and with ReLU splitting: per mode, the unsat answers, their certificates' verdicts
(``verify-check``), and MILP's verdict on every certified one (it must be unsat).

Usage: ``python benchmarks/certificates_random.py [--networks 300] [--layout mlp|leaky|conv|pool|avgpool]
[--out FILE.md]`` (run from the repository root: it builds the networks with the cross-check's
own generators, ``tests/bab/test_cross_check.py`` and, for the LeakyRelu, convolutional and
pooling layouts, ``tests/verify_check/test_checker_cross_check.py``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.verify_check.test_checker_cross_check import LAYOUTS, _milp, write_property  # noqa: E402
from verifier.api import verify  # noqa: E402
from verifier.config import BabMode, VerifierConfig  # noqa: E402
from verify_check.cli import INCOMPLETE, INVALID, VALID, check  # noqa: E402

NAMES = {VALID: "valid", INVALID: "invalid", INCOMPLETE: "incomplete"}


def _one(seed: int, bab: BabMode, folder: Path, layout: str) -> tuple[str, str, str, float]:
    """(the verdict, the certificate's, MILP's on a valid one, seconds checking) for one network."""
    model, spec, proof = folder / "n.onnx", folder / "p.vnnlib", folder / "c.npz"
    region, _ = LAYOUTS[layout][0](seed, model)
    write_property(spec, region)
    result = verify(model, spec, timeout=30, config=VerifierConfig(bab=bab), certificate=proof)
    if result.status.value != "unsat":
        return result.status.value, "", "", 0.0
    began = time.monotonic()
    code, _ = check(str(model), str(spec), str(proof))
    seconds = time.monotonic() - began
    return "unsat", NAMES.get(code, "unreadable"), _milp(model, region) if code == VALID else "", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--networks", type=int, default=300)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="mlp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = ["# Certificates on the cross-check's random networks", "",
             f"Machine: {platform.node()}, {platform.machine()}, Python {platform.python_version()}.",
             f"Command: `python benchmarks/certificates_random.py --networks {args.networks} --layout {args.layout}`",
             "",
             "| mode | answers | unsat | valid | incomplete | invalid | MILP unsat on the valid | check s |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for bab in (BabMode.AUTO, BabMode.RELU):
            found = [_one(seed, bab, Path(tmp), args.layout) for seed in range(args.networks)]
            verdicts, certs = Counter(f[0] for f in found), Counter(f[1] for f in found if f[1])
            milp = sum(1 for f in found if f[2] == "unsat")
            lines.append(f"| {bab.value} | {dict(verdicts)} | {verdicts['unsat']} | {certs['valid']} | "
                         f"{certs['incomplete']} | {certs['invalid']} | {milp} of {certs['valid']} | "
                         f"{sum(f[3] for f in found):.1f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
