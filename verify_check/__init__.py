"""``verify-check``: an independent checker of the verifier's ``unsat`` certificates.

It reads the ONNX model (:mod:`verify_check.model`), the VNN-LIB property
(:mod:`verify_check.spec`) and a certificate (:mod:`verify_check.certificate`) itself, and
proves the intermediate bounds it claims (:mod:`verify_check.claims`), and re-derives every
refutation the certificate names (:mod:`verify_check.tree`) with its own linear bound rules
(:mod:`verify_check.bounds`). It imports numpy and onnx only, never the verifier, so that
trusting an ``unsat`` answer means trusting this package (about 1,320 lines of code), numpy's
IEEE float64 arithmetic, onnx's protobuf reader and the float32 error model
documented in :mod:`verify_check.bounds`, not the verifier's search and bound code.
"""

from __future__ import annotations

FORMAT = "verifier-certificate"
"""The ``format`` field of a certificate's header."""

VERSION = 1
"""The certificate format version this checker reads."""
