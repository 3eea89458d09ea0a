"""``verify-check MODEL SPEC CERTIFICATE``: prints ``valid``, ``invalid: ...`` or ``incomplete: ...``.

Exit codes: 0 valid (every region of the property is refuted by the certificate); 1 invalid
(a check failed: the message names the region, the node and the clause); 2 incomplete (the
certificate marks some region uncertified, e.g. decided by an engine that writes no proof;
the other regions were checked); 3 the model, the property or the certificate could not be
read (``unreadable model``/``property``/``certificate``: outside the certified op set or the
supported VNN-LIB subset, or malformed).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from verify_check.bounds import relu_inputs
from verify_check.certificate import CertificateError, CoverageError, read_certificate, region_claims, region_tree
from verify_check.claims import ClaimError, checked_claims
from verify_check.model import Chain, ModelError, read_model
from verify_check.spec import Region, SpecError, read_spec
from verify_check.tree import Invalid, check_region, spec_rows, value_sizes

VALID, INVALID, INCOMPLETE, UNREADABLE = 0, 1, 2, 3


def check(model: str, spec: str, certificate: str) -> tuple[int, str]:
    """Checks ``certificate`` against ``model`` and ``spec``; returns (exit code, message)."""
    try:
        chain = read_model(model)
    except (ModelError, OSError, ValueError) as exc:  # onnx raises its DecodeError as a ValueError
        return UNREADABLE, f"unreadable model: {exc}"
    try:
        text = Path(spec).read_bytes()
        regions = read_spec(text.decode("utf-8"), chain.inputs, chain.outputs)
    except (SpecError, OSError, UnicodeDecodeError) as exc:
        return UNREADABLE, f"unreadable property: {exc}"
    try:
        header, arrays = read_certificate(certificate)
    except CertificateError as exc:
        return UNREADABLE, f"unreadable certificate: {exc}"
    if header.get("model_sha256") != chain.sha256:
        return INVALID, "invalid: the certificate is for another model (SHA-256 differs)"
    if header.get("spec_sha256") != hashlib.sha256(text).hexdigest():
        return INVALID, "invalid: the certificate is for another property (SHA-256 differs)"
    if header.get("float_model") != "float32":
        return INVALID, f"invalid: float model {header.get('float_model')!r}, this checker knows 'float32'"
    marks = header.get("regions", [])
    if len(marks) != len(regions):
        return INVALID, f"invalid: the certificate covers {len(marks)} regions, the property has {len(regions)}"
    sizes = value_sizes(chain)
    relu_sizes = [sizes[i] for i in relu_inputs(chain)]
    leaves, missing = 0, []
    for index, (region, mark) in enumerate(zip(regions, marks, strict=True)):
        if not mark.get("certified"):
            missing.append(f"region {index} ({mark.get('reason', 'no reason given')})")
            continue
        try:
            leaves += _check_region(chain, region, mark, arrays, f"r{index}_", relu_sizes)
        except CoverageError as exc:
            return INVALID, f"invalid: region {index}: {exc}"
        except CertificateError as exc:
            return UNREADABLE, f"unreadable certificate: region {index}: {exc}"
        except Invalid as exc:
            return INVALID, f"invalid: region {index}: {exc}"
    if missing:
        return INCOMPLETE, "incomplete: uncertified " + "; ".join(missing)
    return VALID, f"valid ({len(regions)} regions, {leaves} leaves)"


def _check_region(chain: Chain, region: Region, mark: dict, arrays: dict[str, np.ndarray], prefix: str,
                  relu_sizes: list[int]) -> int:
    """Checks a region's claims and trees (every clause refuted by one); returns the leaves."""
    count = len(region.C)
    trees = mark.get("trees", [list(range(count))])
    if not isinstance(trees, list) or not all(isinstance(t, list) and all(isinstance(k, int) and 0 <= k < count
                                                                           for k in t) for t in trees):
        raise CertificateError("its trees' clause lists are malformed")
    if set().union(*map(set, trees)) != set(range(count)):
        raise Invalid(f"its trees refute clauses {sorted(set().union(*map(set, trees)))} of 0 to {count - 1}")
    claims: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    stage, name = 0, prefix
    while (found := region_claims(arrays, name, chain.inputs, relu_sizes)) is not None:
        try:  # each stage's claims from the bounds the earlier ones proved
            claims = checked_claims(chain, region, found, claims)
        except ClaimError as exc:
            raise Invalid(f"claims of stage {stage}: {exc}") from None
        stage, name = stage + 1, f"{prefix}s{stage + 1}_"
    rows = spec_rows(region).d.size
    return sum(check_region(chain, region, region_tree(arrays, prefix if t == 0 else f"{prefix}t{t}_", chain.inputs,
                                                       rows, relu_sizes, clauses), claims)[0]
               for t, clauses in enumerate(trees))


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="verify-check", description="Check an unsat certificate independently.")
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("spec", help="the VNN-LIB property")
    parser.add_argument("certificate", help="the certificate written by verify --certificate")
    args = parser.parse_args(argv)
    began = time.monotonic()
    code, message = check(args.model, args.spec, args.certificate)
    print(message)
    print(f"checked in {time.monotonic() - began:.2f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
